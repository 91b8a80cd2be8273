package aggregator_test

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
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// ackSink records, per line, how long after the step wrote it the sink
// acknowledged it, and per batch how long after its newest line: with a line
// every 10 ms that is about the time from the chunk landing in the store to
// the acknowledgment, the relay's own share of the latency.
type ackSink struct {
	*aggregatortest.MemorySink
	mu    sync.Mutex
	lat   []time.Duration
	batch []time.Duration
}

func (s *ackSink) Lines(ctx context.Context, b aggregator.Build, recs []build.Record) error {
	now := time.Now()
	s.mu.Lock()
	var newest time.Time
	for _, r := range recs {
		s.lat = append(s.lat, now.Sub(r.Time))
		if r.Time.After(newest) {
			newest = r.Time
		}
	}
	if len(recs) > 0 {
		s.batch = append(s.batch, now.Sub(newest))
	}
	s.mu.Unlock()
	return s.MemorySink.Lines(ctx, b, recs)
}

// BenchmarkLineLatency: from a line written by a step (the log writer's
// default flush settings) to the sink's acknowledgment, p50 and p99, with
// MinIO's bucket notifications and with polling (1 s, hot 250 ms) only; the
// same for the newest line of each batch (chunk-p50-ms, chunk-p99-ms); the
// chunk PUTs per second per build while the step writes (puts/s: Close's
// last PUT, at the end of the output, is not counted there) and all of a
// build's chunk PUTs (puts/build, Close's included).
//
// notify and poll are steady output, a line every 10 ms for 3 s: what the
// writer's batching costs. notify-sparse is a line every 700 ms for 7 s, each
// one after a quiet spell (the first too: the step waits before its lines):
// how soon a lone line is shipped.
func BenchmarkLineLatency(b *testing.B) {
	for _, tc := range []struct {
		name   string
		notify bool
		lines  int
		every  time.Duration
		sparse bool
	}{
		{"notify", true, 300, 10 * time.Millisecond, false},
		{"poll", false, 300, 10 * time.Millisecond, false},
		{"notify-sparse", true, 10, 700 * time.Millisecond, true},
	} {
		notify := tc.notify
		b.Run(tc.name, func(b *testing.B) {
			ms, err := minio.Open(context.Background(), srv.Config(blob.BackendMinIO, miniotest.BucketName("lat")))
			if err != nil {
				b.Fatal(err)
			}
			sink := &ackSink{MemorySink: aggregatortest.NewMemorySink()}
			a := aggregator.New(ms, sink, nil, aggregator.Config{PollInterval: time.Second, Logger: quiet})
			if notify {
				a.WatchChanges(func(ctx context.Context) <-chan string { return ms.Watch(ctx, build.Root, nil) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go a.Run(ctx)
			// Wait until the relay is up: a probe build (final, so it is not
			// polled again) is relayed and, with notifications, the stream
			// has delivered a key. Its subscription is made after Run starts
			// and the relay's cursor write is an object created, so each
			// probe relayed before the stream is up gets another one.
			probes := 0
			probe := func() string { return fmt.Sprint("probe-", probes) }
			writeProbe := func() error {
				_, err := build.WriteStatus(ctx, ms, probe(), build.Status{Status: build.Completed}, "")
				return err
			}
			if err := writeProbe(); err != nil {
				b.Fatal(err)
			}
			if err := testenv.WaitFor(ctx, 60*time.Second, 10*time.Millisecond, func() error {
				if _, st, _ := sink.Received(probe()); len(st) == 0 {
					return fmt.Errorf("probe build %s not relayed", probe())
				}
				if notify && a.Notified() == 0 {
					probes++
					if err := writeProbe(); err != nil {
						return err
					}
					return fmt.Errorf("the change stream delivered nothing for %d probe builds relayed", probes)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			var puts, steadyPuts uint64
			var output time.Duration
			for b.Loop() {
				ref := fmt.Sprintf("lat-%d", time.Now().UnixNano())
				build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Running}, "")
				w, err := build.NewLogWriter(ctx, ms, ref, build.WriterConfig{SpillDir: b.TempDir(), Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for i := range tc.lines {
					if tc.sparse {
						time.Sleep(tc.every)
					}
					_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i + 1), Time: time.Now(), Text: "x"})
					if !tc.sparse {
						time.Sleep(tc.every) // the step's output rate: what is measured
					}
				}
				output += time.Since(start)
				steadyPuts += w.Stats().Chunks
				_ = w.Close(ctx)
				puts += w.Stats().Chunks
				if err := testenv.WaitFor(ctx, time.Minute, 10*time.Millisecond, func() error {
					if lines, _, _ := sink.Received(ref); len(lines) != tc.lines {
						return fmt.Errorf("build %s: %d of %d lines relayed", ref, len(lines), tc.lines)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			reportPercentiles(b, sink.lat, "")
			reportPercentiles(b, sink.batch, "chunk-")
			b.ReportMetric(float64(steadyPuts)/output.Seconds(), "puts/s")
			b.ReportMetric(float64(puts)/float64(b.N), "puts/build")
		})
	}
}

func reportPercentiles(b *testing.B, d []time.Duration, prefix string) {
	if len(d) == 0 {
		b.Fatalf("no %slatencies recorded", prefix)
	}
	d = append([]time.Duration(nil), d...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Milliseconds()), prefix+"p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Milliseconds()), prefix+"p99-ms")
}
