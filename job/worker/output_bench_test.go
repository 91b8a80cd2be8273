package worker

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// BenchmarkStepOutput is the worker's side of a step's output without the
// store: 1M log lines of 100 bytes, as a step's stdout pipe hands them over
// (reads of readsize bytes), cut into lines by build.Lines, masked with
// the build's secrets and written to a LogWriter over a store that
// discards. "writer" writes the same lines as records to the LogWriter
// directly (blob/build's BenchmarkWriterMinIO without MinIO): the
// difference is what the worker adds.
func BenchmarkStepOutput(b *testing.B) {
	const lines = 1_000_000
	// A line of 100 bytes as builds print them (the secrets' letters
	// occur in it; digits alone would make strings.Contains look cheap).
	text := "2026-12-02T22:30:34Z INFO compiling github.com/wharfjobs/wharfjobs/job/worker: ok (12 of 40 package)"
	block := []byte(strings.Repeat(text+"\n", 10_000))
	total := lines * (len(text) + 1)
	newWriter := func(b *testing.B) *build.LogWriter {
		w, err := build.NewLogWriter(context.Background(), blobtest.Discard{}, "bench", build.WriterConfig{SpillDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		return w
	}
	b.Run("writer", func(b *testing.B) {
		b.SetBytes(int64(lines * len(text)))
		for b.Loop() {
			w := newWriter(b)
			rec := build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Text: text}
			for n := 1; n <= lines; n++ {
				rec.Line, rec.Time = uint64(n), time.Now()
				if err := w.Write(rec); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines*b.N), "ns/line")
	})
	secrets := map[string][]string{
		"none":             nil,
		"token":            {"ghp_0123456789abcdefghijABCDEFGHIJ012345"},
		"token+3passwords": {"ghp_0123456789abcdefghijABCDEFGHIJ012345", "hunter2-secret", "p@ss/w+rd?&x", "another-password-value"},
	}
	for _, name := range []string{"none", "token", "token+3passwords"} {
		for _, readSize := range []int{32 << 10, 64 << 10, 256 << 10} {
			b.Run("lines/"+name+"/"+sizeName(readSize), func(b *testing.B) {
				var mask liveMask
				mask.m.Store(newMasker(secrets[name]))
				b.SetBytes(int64(lines * len(text)))
				for b.Loop() {
					w := newWriter(b)
					var counter atomic.Uint64
					out := w.Lines("build", "compile", build.StreamStdout, &counter)
					out.Mask = &mask
					for pos := 0; pos < total; {
						off := pos % len(block)
						n := min(readSize, len(block)-off, total-pos)
						if _, err := out.Write(block[off : off+n]); err != nil {
							b.Fatal(err)
						}
						pos += n
					}
					if err := out.Close(); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(context.Background()); err != nil {
						b.Fatal(err)
					}
					if got := w.Stats().Records; got != lines {
						b.Fatalf("%d records, want %d", got, lines)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines*b.N), "ns/line")
			})
		}
	}
}

func sizeName(n int) string { return strconv.Itoa(n>>10) + "KiB" }
