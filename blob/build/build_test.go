package build_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

var srv *miniotest.Server

func TestMain(m *testing.M) { miniotest.Main(m, &srv) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newMinIO(t testing.TB) blob.Store { return srv.Store(t, blob.BackendMinIO, "build") }

func newFS(t testing.TB) *fs.Store {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// eachStore runs fn against the local directory and a real MinIO.
func eachStore(t *testing.T, fn func(t *testing.T, s blob.Store)) {
	t.Run("fs", func(t *testing.T) { fn(t, newFS(t)) })
	t.Run("minio", func(t *testing.T) { fn(t, newMinIO(t)) })
}

// TestFSTestsRunWithoutMinIO runs some of this package's tests on the fs
// store again, in a child with the MinIO binary hidden: the shared server
// starts only for the tests that use it (#19), so these pass.
func TestFSTestsRunWithoutMinIO(t *testing.T) {
	if os.Getenv("BUILD_TEST_NO_MINIO") != "" {
		t.Skip("already the child")
	}
	run := "^Test(Keys|SplitText|LinesCutsStreams|ReaderFallsBackWhenChunksVanish|CloseTimeoutKeepsChunksOnDisk|" +
		"WriterResumesAfterExistingChunks|CompactAndRead|StatusConditionalWrites|Artifacts)$/^fs$"
	cmd := exec.CommandContext(testCtx(t), os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "WHARFJOBS_MINIO_BIN=/nonexistent/minio", "BUILD_TEST_NO_MINIO=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fs tests without MinIO: %v\n%s", err, out)
	}
	if passed := len(regexp.MustCompile(`(?m)^--- PASS: Test`).FindAll(out, -1)); passed != 9 {
		t.Fatalf("%d tests passed without MinIO, want 9:\n%s", passed, out)
	}
}

func fastConfig(t testing.TB) build.WriterConfig {
	return build.WriterConfig{
		FlushInterval: 50 * time.Millisecond,
		ChunkSize:     4 << 10,
		MaxObjectSize: 4 << 10, // one chunk per object, unless a test batches
		MemoryLimit:   16 << 10,
		SpillDir:      t.TempDir(),
		RetryMin:      5 * time.Millisecond,
		RetryMax:      50 * time.Millisecond,
		UploadTimeout: 5 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// readLog returns every record of the build's log in order.
func readLog(t testing.TB, s blob.Store, ref string) []build.Record {
	t.Helper()
	rc, err := build.OpenLog(testCtx(t), s, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []build.Record
	if err := build.ScanRecords(rc, func(r build.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSequence asserts the records are exactly "line 1".."line n" in order.
func checkSequence(t testing.TB, recs []build.Record, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf("line %d", i+1); r.Text != want || r.Line != uint64(i+1) {
			t.Fatalf("record %d = line %d %q, want %q", i, r.Line, r.Text, want)
		}
	}
}

func TestWriterShipsEveryLineInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		w, err := build.NewLogWriter(ctx, s, "7", fastConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		const n = 5000
		for i := 1; i <= n; i++ {
			if err := w.Write(build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		recs := readLog(t, s, "7")
		checkSequence(t, recs, n)
		if recs[0].Build != "7" || recs[0].Stage != "build" || recs[0].Step != "compile" {
			t.Fatalf("record fields: %+v", recs[0])
		}
		chunks, err := build.AllChunks(ctx, s, "7", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 10 {
			t.Fatalf("%d chunks for %d lines at 4 KiB chunks", len(chunks), n)
		}
		for i, c := range chunks {
			if c.Seq != uint64(i+1) {
				t.Fatalf("chunk %d has seq %d: gaps or duplicates", i, c.Seq)
			}
			if c.Size > 4<<10+512 {
				t.Fatalf("chunk %d is %d bytes, over the 4 KiB chunk size plus one record", c.Seq, c.Size)
			}
		}
		if err := w.Write(build.Record{Text: "late"}); !errors.Is(err, build.ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
	})
}

func TestWriterFlushesOnIntervalWithoutClose(t *testing.T) {
	s := newMinIO(t)
	ctx := testCtx(t)
	cfg := fastConfig(t)
	cfg.ChunkSize = 1 << 20 // never full: only the interval can flush
	w, err := build.NewLogWriter(ctx, s, "8", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	if err := w.Write(build.Record{Stream: build.StreamStdout, Line: 1, Time: time.Now(), Text: "line 1"}); err != nil {
		t.Fatal(err)
	}
	// Wait (bounded) for the ticker; this checks that it happens, not how
	// fast: the bound is far above the 50ms interval.
	if err := testenv.WaitFor(ctx, 10*time.Second, 20*time.Millisecond, func() error {
		chunks, err := build.ListChunks(ctx, s, "8", 0, 0)
		if err == nil && len(chunks) != 1 {
			err = fmt.Errorf("%d chunks uploaded without Close, want 1", len(chunks))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, readLog(t, s, "8"), 1)
}

func TestWriterResumesAfterExistingChunks(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		for round := range 2 {
			w, err := build.NewLogWriter(ctx, s, "9", fastConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 100; i++ {
				n := round*100 + i
				_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(n), Time: time.Now(), Text: fmt.Sprintf("line %d", n)})
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		checkSequence(t, readLog(t, s, "9"), 200)
	})
}

func TestTwoWritersNeverOverwriteEachOther(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		var wg sync.WaitGroup
		for wr := range 2 {
			w, err := build.NewLogWriter(ctx, s, "10", fastConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= 2000; i++ {
					_ = w.Write(build.Record{Step: fmt.Sprint("w", wr), Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
				}
				if err := w.Close(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		byStep := map[string][]build.Record{}
		for _, r := range readLog(t, s, "10") {
			byStep[r.Step] = append(byStep[r.Step], r)
		}
		for _, step := range []string{"w0", "w1"} {
			checkSequence(t, byStep[step], 2000)
		}
	})
}

func TestLinesCutsStreams(t *testing.T) {
	s := newFS(t)
	ctx := testCtx(t)
	w, err := build.NewLogWriter(ctx, s, "11", fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var counter atomic.Uint64
	out := w.Lines("test", "unit", build.StreamStdout, &counter)
	errw := w.Lines("test", "unit", build.StreamStderr, &counter)
	out.Mask = replaceMask("hunter2")
	_, _ = io.WriteString(out, "first li")
	_, _ = io.WriteString(out, "ne\r\nsecond with hunter2\n")
	_, _ = io.WriteString(errw, "an error\n")
	long := strings.Repeat("x", build.MaxText*2+100)
	// A long line arriving in small writes with no newline for a while.
	for i := 0; i < len(long); i += 4096 {
		_, _ = io.WriteString(out, long[i:min(i+4096, len(long))])
	}
	_, _ = io.WriteString(out, "\nno newline at end")
	_ = out.Close()
	_ = errw.Close()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	recs := readLog(t, s, "11")
	type row struct {
		stream string
		line   uint64
		part   int
		text   string
	}
	var got []row
	var joined strings.Builder
	for _, r := range recs {
		if r.Line == 4 {
			joined.WriteString(r.Text)
			if len(r.Text) > build.MaxText {
				t.Fatalf("part of %d bytes", len(r.Text))
			}
			continue
		}
		got = append(got, row{r.Stream, r.Line, r.Part, r.Text})
	}
	want := []row{
		{"stdout", 1, 0, "first line"},
		{"stdout", 2, 0, "second with *****"},
		{"stderr", 3, 0, "an error"},
		{"stdout", 5, 0, "no newline at end"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records\n got %v\nwant %v", got, want)
	}
	if joined.String() != long {
		t.Fatalf("long line parts join to %d bytes, want %d", joined.Len(), len(long))
	}
	parts := 0
	for _, r := range recs {
		if r.Line == 4 {
			parts++
			if r.Part != parts {
				t.Fatalf("long line part %d numbered %d", parts, r.Part)
			}
		}
	}
	if parts != 3 {
		t.Fatalf("long line in %d parts, want 3", parts)
	}
}

func TestCompactAndRead(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		if _, err := build.OpenLog(ctx, s, "12"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("log of an unknown build: %v", err)
		}
		if _, err := build.WriteStatus(ctx, s, "12", build.Status{Status: build.Running}, ""); err != nil {
			t.Fatal(err)
		}
		if b := readRaw(t, s, "12"); len(b) != 0 {
			t.Fatalf("known build without lines has log %q", b)
		}
		w, err := build.NewLogWriter(ctx, s, "12", fastConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 1000; i++ {
			_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		before := readRaw(t, s, "12")
		state, err := build.Compact(ctx, s, "12")
		if err != nil {
			t.Fatal(err)
		}
		if state.CompactedSize != int64(len(before)) {
			t.Fatalf("compacted %d bytes, chunks hold %d", state.CompactedSize, len(before))
		}
		if st, _, _ := build.ReadStatus(ctx, s, "12"); st.Log == nil || st.Log.CompactedThrough != state.CompactedThrough || st.Status != build.Running {
			t.Fatalf("status after compaction: %+v", st)
		}
		if err := build.DeleteChunks(ctx, s, "12"); err != nil {
			t.Fatal(err)
		}
		if chunks, _ := build.AllChunks(ctx, s, "12", 0); len(chunks) != 0 {
			t.Fatalf("%d chunks left after DeleteChunks", len(chunks))
		}
		if after := readRaw(t, s, "12"); !bytes.Equal(before, after) {
			t.Fatal("compacted log differs from the chunks")
		}
		checkSequence(t, readLog(t, s, "12"), 1000)

		// A line written after compaction (the aggregator's final word on
		// a lost worker) gets a fresh chunk number, and readers see it
		// after the compacted log.
		w, err = build.NewLogWriter(ctx, s, "12", fastConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = w.Write(build.Record{Stream: build.StreamSystem, Line: 1001, Time: time.Now(), Text: "line 1001"})
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		chunks, err := build.AllChunks(ctx, s, "12", 0)
		if err != nil || len(chunks) != 1 || chunks[0].Seq != state.CompactedThrough+1 {
			t.Fatalf("late chunk: %+v, %v; want seq %d", chunks, err, state.CompactedThrough+1)
		}
		checkSequence(t, readLog(t, s, "12"), 1001)
		// The late chunk is in no compacted log: DeleteAllChunks keeps it.
		if err := build.DeleteAllChunks(ctx, s, "12"); !errors.Is(err, build.ErrNotCompacted) {
			t.Fatalf("DeleteAllChunks with a chunk past the compacted log: %v, want ErrNotCompacted", err)
		}
		if chunks, _ := build.AllChunks(ctx, s, "12", 0); len(chunks) != 1 {
			t.Fatalf("%d chunks after a refused DeleteAllChunks, want the late one", len(chunks))
		}
		if _, err := build.Compact(ctx, s, "12"); err == nil {
			t.Fatal("compaction over deleted chunks succeeded; it would drop lines")
		}
		checkSequence(t, readLog(t, s, "12"), 1001)
	})
}

func readRaw(t testing.TB, s blob.Store, ref string) []byte {
	t.Helper()
	rc, err := build.OpenLog(testCtx(t), s, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReaderFallsBackWhenChunksVanish(t *testing.T) {
	s := newFS(t)
	ctx := testCtx(t)
	if _, err := build.WriteStatus(ctx, s, "13", build.Status{Status: build.Completed}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, "13", fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2000; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rc, err := build.OpenLog(ctx, s, "13")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// Compaction finishes and removes the chunks while the reader is on
	// the first one.
	if _, err := build.Compact(ctx, s, "13"); err != nil {
		t.Fatal(err)
	}
	if err := build.DeleteChunks(ctx, s, "13"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	var recs []build.Record
	if err := build.ScanRecords(strings.NewReader(first+string(rest)), func(r build.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, recs, 2000)
}
