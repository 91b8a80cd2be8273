package build_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
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
	benchWriterText(b, s, lines, func(int) string { return line100 }, benchConfig(b))
}

// benchWriterText writes lines records of text(n) through a LogWriter and
// Close, per iteration, into a fresh build. Besides the speed it reports
// the bytes stored per byte of text (stored/text, the chunk objects as
// listed in the store), what plain NDJSON would take (ndjson/text) and
// their ratio (stored/ndjson).
func benchWriterText(b *testing.B, s blob.Store, lines int, text func(n int) string, cfg build.WriterConfig) {
	var textBytes int64
	for n := 1; n <= lines; n++ {
		textBytes += int64(len(text(n)))
	}
	b.SetBytes(textBytes)
	var jsonBytes, storedBytes uint64
	i := 0
	var ref string
	for b.Loop() {
		i++
		ctx := context.Background()
		ref = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		w, err := build.NewLogWriter(ctx, s, ref, cfg)
		if err != nil {
			b.Fatal(err)
		}
		rec := build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout}
		for n := 1; n <= lines; n++ {
			rec.Line, rec.Time, rec.Text = uint64(n), time.Now(), text(n)
			if err := w.Write(rec); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			b.Fatal(err)
		}
		jsonBytes += w.Stats().Bytes
		storedBytes += w.Stats().StoredBytes
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(lines*i)/sec, "lines/s")
	b.ReportMetric(float64(jsonBytes)/sec/1e6, "json-MB/s")
	// What the store holds for the last build, as it lists it.
	chunks, err := build.AllChunks(context.Background(), s, ref, 0)
	if err != nil {
		b.Fatal(err)
	}
	var listed uint64
	for _, c := range chunks {
		listed += uint64(c.Size)
	}
	if want := storedBytes / uint64(i); listed != want {
		b.Fatalf("the store lists %d bytes of chunks, the writer counted %d", listed, want)
	}
	total := float64(textBytes) * float64(i)
	b.ReportMetric(float64(storedBytes)/total, "stored/text")
	b.ReportMetric(float64(jsonBytes)/total, "ndjson/text")
	b.ReportMetric(float64(storedBytes)/float64(jsonBytes), "stored/ndjson")
}

// BenchmarkWriterMinIO: 1M lines of 100 bytes (100 MB of text) into a real
// MinIO on loopback, compressed (the default).
func BenchmarkWriterMinIO(b *testing.B) { benchWriter(b, newMinIO(b), 1_000_000) }

// BenchmarkWriterMinIOPlain: the same with WHARFJOBS_LOG_COMPRESSION=none.
func BenchmarkWriterMinIOPlain(b *testing.B) {
	cfg := benchConfig(b)
	cfg.Compression = build.CompressionNone
	benchWriterText(b, newMinIO(b), 1_000_000, func(int) string { return line100 }, cfg)
}

// BenchmarkWriterMinIOText: 1M lines of other text than line100 (which
// zstd compresses to almost nothing) into a real MinIO, compressed and
// plain: ci, lines like a build's output (compiler, tests, package
// downloads: words, paths, numbers, hex ids; 85 bytes on average), and
// random, 100 bytes of random base64, which no compressor shrinks below 6
// bits a byte (the worst case).
func BenchmarkWriterMinIOText(b *testing.B) {
	s := newMinIO(b)
	for _, c := range []struct {
		name  string
		lines []string
	}{{"ci", ciLines(50_000)}, {"random", randomLines(50_000)}} {
		for _, comp := range []string{build.CompressionZstd, build.CompressionNone} {
			b.Run(c.name+"/"+comp, func(b *testing.B) {
				cfg := benchConfig(b)
				cfg.Compression = comp
				benchWriterText(b, s, 1_000_000, func(n int) string { return c.lines[n%len(c.lines)] }, cfg)
			})
		}
	}
}

// ciLines returns n lines of made-up build output, the same every time.
func ciLines(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields(`api auth billing cache client cmd config core crypto db deploy docs events gateway
		grpc handler http internal jobs kube log metrics middleware migrate model net orders payments proto
		queue render runner scheduler search server service session storage sync telemetry template token
		util validate worker widget`)
	w := func() string { return words[r.IntN(len(words))] }
	Camel := func() string { s := w(); return strings.ToUpper(s[:1]) + s[1:] }
	out := make([]string, n)
	for i := range out {
		var l string
		switch r.IntN(9) {
		case 0:
			l = fmt.Sprintf("#%d %.3f go build -trimpath -o /out/%s ./cmd/%s/%s (%d packages)", r.IntN(40), r.Float64()*90, w(), w(), w(), r.IntN(300))
		case 1:
			l = fmt.Sprintf("internal/%s/%s_%s.go:%d:%d: warning: %s declared and not used (%s)", w(), w(), w(), r.IntN(900), r.IntN(80), w(), w())
		case 2:
			l = fmt.Sprintf("=== RUN   Test%s%s/%s_%s_%d (parallel, seed %d)", Camel(), Camel(), w(), w(), r.IntN(100), r.Uint32())
		case 3:
			l = fmt.Sprintf("--- PASS: Test%s%s/%s_%d (%d.%02ds) [%s/%s]", Camel(), Camel(), w(), r.IntN(100), r.IntN(10), r.IntN(100), w(), w())
		case 4:
			l = fmt.Sprintf("ok  	github.com/acme/%s/internal/%s/%s	%d.%03ds	coverage: %d.%d%% of statements", w(), w(), w(), r.IntN(20), r.IntN(1000), r.IntN(100), r.IntN(10))
		case 5:
			l = fmt.Sprintf("npm WARN deprecated %s-%s@%d.%d.%d: this version is no longer supported, use %s %d", w(), w(), r.IntN(9), r.IntN(30), r.IntN(20), w(), r.IntN(9))
		case 6:
			l = fmt.Sprintf("2026-11-23T21:%02d:%02d.%03dZ INFO  [%s-%d] %s.%s took %dms id=%016x", r.IntN(60), r.IntN(60), r.IntN(1000), w(), r.IntN(8), w(), Camel(), r.IntN(5000), r.Uint64())
		case 7:
			l = fmt.Sprintf("Downloading https://registry.example.com/%s/%s/-/%s-%d.%d.%d.tgz (%d kB)", w(), w(), w(), r.IntN(9), r.IntN(30), r.IntN(20), r.IntN(900))
		default:
			l = fmt.Sprintf("Step %d/%d : COPY --from=%s /src/%s/%s /app/%s   ---> %012x", r.IntN(30), 30, w(), w(), w(), w(), r.Uint64()>>16)
		}
		out[i] = l
	}
	return out
}

// randomLines returns n lines of 100 random base64 characters.
func randomLines(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([]string, n)
	b := make([]byte, 75)
	for i := range out {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

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
