package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

// logsRecords are records of every kind the output formats tell apart.
func logsRecords() []build.Record {
	ts := time.Date(2026, 11, 23, 21, 7, 52, 123456789, time.UTC)
	var recs []build.Record
	add := func(stage, step, stream, text string) {
		recs = append(recs, build.Record{Build: "42", Stage: stage, Step: step, Stream: stream, Line: uint64(len(recs) + 1), Time: ts.Add(time.Duration(len(recs)) * time.Second), Text: text})
	}
	add("", "", build.StreamSystem, "build 42 started")
	add("build", "compile", build.StreamStdout, "go build ./...")
	add("build", "compile", build.StreamStdout, "")
	add("build", "compile", build.StreamStderr, "warning: \"x\" \\ \t tab")
	add("build", "compile", build.StreamStdout, "back on stdout")
	add("test", "unit", build.StreamStdout, "ünïcödé ✓ 日本 \x1b[32mPASS\x1b[0m")
	add("tëst", "ünït", build.StreamStderr, "a source with runes: padded by runes")
	add("a-very-long-stage-name", "and-a-long-step", build.StreamStdout, "longer than 24: not padded")
	add("", "only-step", build.StreamStdout, "a source with no stage")
	add("", "", build.StreamSystem, "build 42 Completed")
	return recs
}

// TestLogPrinterMatchesPrinter: logs formats a line as the printer that
// run and dev use does, byte for byte, colored or not, and --raw and
// --json as before.
func TestLogPrinterMatchesPrinter(t *testing.T) {
	for _, color := range []bool{false, true} {
		for _, raw := range []bool{false, true} {
			var want bytes.Buffer
			old := &printer{w: &want, color: color, raw: raw}
			lp := &logPrinter{color: color, raw: raw}
			var got []byte
			for _, r := range logsRecords() {
				if err := old.record(r); err != nil {
					t.Fatal(err)
				}
				got = lp.appendRecord(got, &r, nil)
			}
			if string(got) != want.String() {
				t.Errorf("color %v raw %v:\n got %q\nwant %q", color, raw, got, want.String())
			}
		}
	}
	lp := &logPrinter{json: true, raw: true}
	var got, want []byte
	for _, r := range logsRecords() {
		got = lp.appendRecord(got, &r, nil)
		want = r.AppendJSON(want)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("json:\n got %q\nwant %q", got, want)
	}
}

// TestLogsCommandOutput runs `wharfjobs logs` on a compacted log with
// chunks after it, in each format and with the filters, and compares its
// output with the printer's for the records the filters keep.
func TestLogsCommandOutput(t *testing.T) {
	root := t.TempDir()
	store, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := "logs-1"
	if _, err := build.WriteStatus(ctx, store, ref, build.Status{Status: build.Running}, ""); err != nil {
		t.Fatal(err)
	}
	recs := logsRecords()
	writeRecords := func(recs []build.Record) {
		w, err := build.NewLogWriter(ctx, store, ref, build.WriterConfig{SpillDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			r.Build = ref
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	writeRecords(recs[:6])
	if _, err := build.UpdateStatus(ctx, store, ref, func(st *build.Status) error { st.Status = build.Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := build.Compact(ctx, store, ref); err != nil {
		t.Fatal(err)
	}
	writeRecords(recs[6:]) // late lines, in chunks after the compacted log
	for i := range recs {
		recs[i].Build = ref
	}
	since := recs[3].Time.Format(time.RFC3339Nano)
	for _, c := range []struct {
		name string
		args []string
		keep func(build.Record) bool
		raw  bool
		json bool
	}{
		{"text", nil, func(build.Record) bool { return true }, false, false},
		{"raw", []string{"--raw"}, func(build.Record) bool { return true }, true, false},
		{"json", []string{"--json"}, func(build.Record) bool { return true }, false, true},
		{"step NAME", []string{"--raw", "--step", "compile"}, func(r build.Record) bool { return r.Step == "compile" }, true, false},
		{"step STAGE/NAME", []string{"--step", "tëst/ünït"}, func(r build.Record) bool { return r.Stage == "tëst" && r.Step == "ünït" }, false, false},
		{"step /NAME", []string{"--step", "/only-step"}, func(r build.Record) bool { return r.Step == "only-step" }, false, false},
		{"step no match", []string{"--step", "build/"}, func(r build.Record) bool { return false }, false, false},
		{"since", []string{"--since", since}, func(r build.Record) bool { return r.Time.After(recs[3].Time) }, false, false},
		{"follow", []string{"-f", "--interval", "10ms"}, func(build.Record) bool { return true }, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want bytes.Buffer
			p := &printer{w: &want, raw: c.raw}
			for _, r := range recs {
				if !c.keep(r) {
					continue
				}
				if c.json {
					want.Write(r.AppendJSON(nil))
				} else if err := p.record(r); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := runCLI(t, append(append([]string{"logs", "--fs-root", root}, c.args...), ref)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if out != want.String() {
				t.Fatalf("output:\n%s\nwant:\n%s", out, want.String())
			}
		})
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, fmt.Errorf("broken pipe")
	}
	w.n -= len(p)
	return len(p), nil
}

// TestLogsCommandWriteError: a failing output (a closed pipe) ends logs
// with an error, buffered or not.
func TestLogsCommandWriteError(t *testing.T) {
	root := t.TempDir()
	store, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, store, "big", build.Status{Status: build.Completed}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, store, "big", build.WriterConfig{SpillDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20000; i++ { // 2 MB: more than the output buffer
		if err := w.Write(build.Record{Stage: "s", Step: "t", Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: strings.Repeat("x", 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"logs", "--fs-root", root, "big"}, {"logs", "-f", "--fs-root", root, "big"}} {
		var errb bytes.Buffer
		if code := run(ctx, args, &failWriter{n: 1000}, &errb); code == 0 || !strings.Contains(errb.String(), "broken pipe") {
			t.Errorf("%v: exit %d, %q", args, code, errb.String())
		}
	}
}

// notTerminal hides that a writer is a file, so logs does not color its
// output.
type notTerminal struct{ io.Writer }

// BenchmarkLogsCommand: `wharfjobs logs REF > /dev/null` on a compacted
// 100 MB log in a real MinIO on loopback, in each format, against a plain
// GET of the same object in the same run. text-MB/s counts the lines'
// text (as BenchmarkReadLogMinIO/records does), log-MB/s the stored JSON.
// (/dev/null is a character device, so logs colors its output to it as to
// a terminal: text-color is that case, text the same without color.)
func BenchmarkLogsCommand(b *testing.B) {
	srv, err := miniotest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cfg := srv.Config(blob.BackendMinIO, miniotest.BucketName("logs-bench"))
	ctx := context.Background()
	store, err := backend.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	const ref = "bench-logs"
	textBytes, logBytes := writeBenchLog(b, store, ref, 100<<20)
	for k, v := range map[string]string{
		"WHARFJOBS_STORE": cfg.Backend, "WHARFJOBS_STORE_ENDPOINT": cfg.Endpoint, "WHARFJOBS_STORE_BUCKET": cfg.Bucket,
		"WHARFJOBS_STORE_ACCESS_KEY": cfg.AccessKey, "WHARFJOBS_STORE_SECRET_KEY": cfg.SecretKey,
	} {
		b.Setenv(k, v)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	report := func(b *testing.B) {
		b.SetBytes(textBytes)
		b.ReportMetric(float64(logBytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "log-MB/s")
	}
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			rc, err := build.OpenLog(ctx, store, ref)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(devNull, rc)
			rc.Close()
			if err != nil || n != logBytes {
				b.Fatalf("%d bytes, %v", n, err)
			}
		}
		report(b)
	})
	for _, c := range []struct {
		name string
		out  io.Writer
		args []string
	}{
		{"text", notTerminal{devNull}, nil},
		{"text-color", devNull, nil},
		{"raw", devNull, []string{"--raw"}},
		{"json", devNull, []string{"--json"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			args := append(append([]string{"logs"}, c.args...), ref)
			for b.Loop() {
				var errb bytes.Buffer
				if code := run(ctx, args, c.out, &errb); code != 0 {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
			report(b)
		})
	}
}

// writeBenchLog stores a compacted log of about size bytes of 100-byte
// lines for ref and returns its bytes of text and of JSON.
func writeBenchLog(b *testing.B, s blob.Store, ref string, size int64) (text, log int64) {
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Running}, ""); err != nil {
		b.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, build.WriterConfig{SpillDir: filepath.Join(b.TempDir())})
	if err != nil {
		b.Fatal(err)
	}
	line := strings.Repeat("0123456789", 10)
	for n := 1; int64(w.Stats().Bytes)+int64(w.Stats().PendingMemory) < size || n%10000 != 0; n++ {
		stream := build.StreamStdout
		if n%10 == 0 {
			stream = build.StreamStderr
		}
		if err := w.Write(build.Record{Stage: "build", Step: "compile", Stream: stream, Line: uint64(n), Time: time.Now(), Text: line}); err != nil {
			b.Fatal(err)
		}
		text += int64(len(line))
		if n%10000 == 0 {
			w.Flush()
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Status = build.Completed; return nil }); err != nil {
		b.Fatal(err)
	}
	state, err := build.Compact(ctx, s, ref)
	if err != nil {
		b.Fatal(err)
	}
	return text, state.CompactedSize
}
