package build_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

// line100 is a 100-byte line of output.
var line100 = strings.Repeat("0123456789", 10)

func benchConfig(b *testing.B) build.WriterConfig {
	cfg := build.WriterConfig{SpillDir: b.TempDir()} // production defaults otherwise
	return cfg
}

// benchWriter writes lines 100-byte lines through a LogWriter and Close,
// per iteration, into a fresh build.
func benchWriter(b *testing.B, s blob.Store, lines int) {
	b.SetBytes(int64(lines * len(line100)))
	var jsonBytes uint64
	i := 0
	for b.Loop() {
		i++
		ctx := context.Background()
		w, err := build.NewLogWriter(ctx, s, fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), benchConfig(b))
		if err != nil {
			b.Fatal(err)
		}
		rec := build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Text: line100}
		for n := 1; n <= lines; n++ {
			rec.Line, rec.Time = uint64(n), time.Now()
			if err := w.Write(rec); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
		jsonBytes += w.Stats().Bytes
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(lines*i)/sec, "lines/s")
	b.ReportMetric(float64(jsonBytes)/sec/1e6, "json-MB/s")
}

// BenchmarkWriterMinIO: 1M lines of 100 bytes (100 MB of text) into a real
// MinIO on loopback.
func BenchmarkWriterMinIO(b *testing.B) { benchWriter(b, newMinIO(b), 1_000_000) }

// BenchmarkWriterMinIOUnsigned: the same with UNSIGNED-PAYLOAD requests.
func BenchmarkWriterMinIOUnsigned(b *testing.B) {
	cfg := srv.Config(blob.BackendMinIO, miniotest.BucketName("unsigned"))
	cfg.UnsignedPayload = true
	s, err := minio.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	benchWriter(b, s, 1_000_000)
}

// BenchmarkWriterFS: the same into the local directory store (with fsync).
func BenchmarkWriterFS(b *testing.B) { benchWriter(b, newFS(b), 1_000_000) }

// writeLog stores a log of about size bytes for build ref and compacts it.
func writeLog(b *testing.B, s blob.Store, ref string, size int) {
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Completed}, ""); err != nil {
		b.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, benchConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	rec := build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Text: line100}
	for n := 1; w.Stats().Bytes+uint64(w.Stats().PendingMemory) < uint64(size) || n%10000 != 0; n++ {
		rec.Line, rec.Time = uint64(n), time.Now()
		_ = w.Write(rec)
		if n%10000 == 0 {
			w.Flush()
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// benchReader reads a 100 MB log as raw bytes (MB/s of JSON) and as
// decoded records (MB/s of text).
func benchReader(b *testing.B, s blob.Store, compacted bool) {
	ctx := context.Background()
	ref := fmt.Sprintf("read-%d", time.Now().UnixNano())
	writeLog(b, s, ref, 100<<20)
	if compacted {
		if _, err := build.Compact(ctx, s, ref); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			rc, err := build.OpenLog(ctx, s, ref)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(n)
		}
	})
	b.Run("records", func(b *testing.B) {
		for b.Loop() {
			rc, err := build.OpenLog(ctx, s, ref)
			if err != nil {
				b.Fatal(err)
			}
			var bytes int64
			err = build.ScanRecords(rc, func(r build.Record) error { bytes += int64(len(r.Text)); return nil })
			rc.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(bytes)
		}
	})
	// views: the records lent by a RecordScanner, as `wharfjobs logs`
	// reads them.
	b.Run("views", func(b *testing.B) {
		for b.Loop() {
			rc, err := build.OpenLog(ctx, s, ref)
			if err != nil {
				b.Fatal(err)
			}
			var bytes int64
			sc := build.NewRecordScanner(rc)
			for sc.Scan() {
				bytes += int64(len(sc.Record().Text))
			}
			rc.Close()
			if sc.Err() != nil {
				b.Fatal(sc.Err())
			}
			b.SetBytes(bytes)
		}
	})
}

// BenchmarkReadLogMinIO: reading a 100 MB log from chunks and compacted.
func BenchmarkReadLogMinIO(b *testing.B) {
	s := newMinIO(b)
	b.Run("chunks", func(b *testing.B) { benchReader(b, s, false) })
	b.Run("compacted", func(b *testing.B) { benchReader(b, s, true) })
}

// BenchmarkReadLogFS: the same on the local directory store.
func BenchmarkReadLogFS(b *testing.B) {
	s := newFS(b)
	b.Run("chunks", func(b *testing.B) { benchReader(b, s, false) })
	b.Run("compacted", func(b *testing.B) { benchReader(b, s, true) })
}

// BenchmarkWriterMemoryBurst writes a 50 MB burst as fast as possible and
// samples the heap meanwhile: the peak must stay near the configured
// memory limit (8 MiB of pending chunks) plus the current chunk, not grow
// with the burst.
func BenchmarkWriterMemoryBurst(b *testing.B) {
	for _, st := range []struct {
		name string
		s    blob.Store
	}{{"minio", newMinIO(b)}, {"fs", newFS(b)}} {
		b.Run(st.name, func(b *testing.B) {
			var peakHeap, peakPending atomic.Int64
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				ctx := context.Background()
				w, err := build.NewLogWriter(ctx, st.s, fmt.Sprintf("burst-%d", time.Now().UnixNano()), benchConfig(b))
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				go func() {
					var ms runtime.MemStats
					for {
						select {
						case <-done:
							return
						case <-time.After(20 * time.Millisecond):
						}
						runtime.ReadMemStats(&ms)
						if d := int64(ms.HeapInuse) - int64(base.HeapInuse); d > peakHeap.Load() {
							peakHeap.Store(d)
						}
						if p := int64(w.Stats().PendingMemory); p > peakPending.Load() {
							peakPending.Store(p)
						}
					}
				}()
				rec := build.Record{Stage: "build", Step: "burst", Stream: build.StreamStdout, Text: line100}
				for n := 1; n <= 500_000; n++ { // 50 MB of text
					rec.Line, rec.Time = uint64(n), time.Now()
					_ = w.Write(rec)
				}
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
				close(done)
			}
			b.ReportMetric(float64(peakHeap.Load())/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(peakPending.Load())/(1<<20), "peak-pending-MiB")
		})
	}
}
