package aggregator

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

// ackSink records, per line, how long after the step wrote it the sink
// acknowledged it.
type ackSink struct {
	*MemorySink
	mu  sync.Mutex
	lat []time.Duration
}

func (s *ackSink) Lines(ctx context.Context, b Build, recs []build.Record) error {
	now := time.Now()
	s.mu.Lock()
	for _, r := range recs {
		s.lat = append(s.lat, now.Sub(r.Time))
	}
	s.mu.Unlock()
	return s.MemorySink.Lines(ctx, b, recs)
}

// BenchmarkLineLatency: from a line written by a step (default 1s flush
// interval) to the sink's acknowledgment, p50 and p99, with MinIO's
// bucket notifications and with polling (1s) only.
func BenchmarkLineLatency(b *testing.B) {
	for _, notify := range []bool{true, false} {
		name := "poll"
		if notify {
			name = "notify"
		}
		b.Run(name, func(b *testing.B) {
			ms, err := minio.Open(context.Background(), srv.Config(blob.BackendMinIO, miniotest.BucketName("lat")))
			if err != nil {
				b.Fatal(err)
			}
			sink := &ackSink{MemorySink: NewMemorySink()}
			a := New(ms, sink, nil, Config{PollInterval: time.Second, Logger: quiet})
			if notify {
				a.WatchChanges(func(ctx context.Context) <-chan string { return ms.Watch(ctx, build.Root, nil) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go a.Run(ctx)
			time.Sleep(300 * time.Millisecond) // let the notification stream connect
			for b.Loop() {
				ref := fmt.Sprintf("lat-%d", time.Now().UnixNano())
				build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Running}, "")
				w, err := build.NewLogWriter(ctx, ms, ref, build.WriterConfig{SpillDir: b.TempDir(), Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				for i := range 300 { // 3 s of output, a line every 10 ms
					_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i + 1), Time: time.Now(), Text: "x"})
					time.Sleep(10 * time.Millisecond)
				}
				_ = w.Close(ctx)
				for {
					if lines, _, _ := sink.Received(ref); len(lines) == 300 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			sink.mu.Lock()
			lat := append([]time.Duration(nil), sink.lat...)
			sink.mu.Unlock()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
		})
	}
}
