package build_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// flaky wraps a store: while down, every put fails; with lostAnswers set,
// a put is stored but reported failed, as when the connection drops after
// the server committed; delay slows every put down.
type flaky struct {
	blob.Store
	down        atomic.Bool
	lostAnswers atomic.Int32
	puts        atomic.Int32
	delay       time.Duration
}

var errDown = fmt.Errorf("injected outage: %w", blob.ErrUnreachable)

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	f.puts.Add(1)
	time.Sleep(f.delay) // the slow store under test, not a wait for a condition
	if f.down.Load() {
		_, _ = io.Copy(io.Discard, r)
		return blob.Info{}, errDown
	}
	info, err := f.Store.Put(ctx, key, r, size, opts)
	if err == nil && f.lostAnswers.Load() > 0 {
		f.lostAnswers.Add(-1)
		return blob.Info{}, errors.New("injected: connection reset after commit")
	}
	return info, err
}

func (f *flaky) List(ctx context.Context, opts blob.ListOptions) ([]blob.Info, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.List(ctx, opts)
}

func TestWriterSpillsDuringOutageAndLosesNothing(t *testing.T) {
	ctx := testCtx(t)
	f := &flaky{Store: newFS(t)}
	cfg := fastConfig(t)
	w, err := build.NewLogWriter(ctx, f, "20", cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	const n = 20000 // ~2.4 MB of records against a 16 KiB memory budget
	for i := 1; i <= n; i++ {
		if err := w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	st := w.Stats()
	if st.PendingMemory > cfg.MemoryLimit {
		t.Fatalf("%d bytes pending in memory during the outage, budget %d", st.PendingMemory, cfg.MemoryLimit)
	}
	if st.Spilled == 0 || st.Chunks != 0 {
		t.Fatalf("during the outage: spilled %d, uploaded %d", st.Spilled, st.Chunks)
	}
	spillFiles := countFiles(t, cfg.SpillDir)
	if spillFiles == 0 {
		t.Fatal("no spill files on disk during the outage")
	}
	// Let a few retries fail, then bring the store back.
	waitStats(t, ctx, w, "3 failed uploads", func(st build.WriterStats) bool { return st.FailedUploads >= 3 })
	f.down.Store(false)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, readLog(t, f.Store, "20"), n)
	if left := countFiles(t, cfg.SpillDir); left != 0 {
		t.Fatalf("%d spill files left after a clean close", left)
	}
}

// waitStats waits until w's stats satisfy ok, named want in the failure.
func waitStats(t *testing.T, ctx context.Context, w *build.LogWriter, want string, ok func(build.WriterStats) bool) {
	t.Helper()
	if err := testenv.WaitFor(ctx, 30*time.Second, 5*time.Millisecond, func() error {
		if st := w.Stats(); !ok(st) {
			return fmt.Errorf("want %s, stats %+v", want, st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			sub, _ := os.ReadDir(dir + "/" + e.Name())
			n += len(sub)
		}
	}
	return n
}

func TestWriterLostAnswerDoesNotDuplicate(t *testing.T) {
	ctx := testCtx(t)
	f := &flaky{Store: newMinIO(t)}
	f.lostAnswers.Store(5)
	w, err := build.NewLogWriter(ctx, f, "21", fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3000; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if f.lostAnswers.Load() != 0 {
		t.Fatal("the injected lost answers were not all used")
	}
	checkSequence(t, readLog(t, f.Store, "21"), 3000)
}

func TestCloseTimeoutKeepsChunksOnDisk(t *testing.T) {
	f := &flaky{Store: newFS(t)}
	cfg := fastConfig(t)
	w, err := build.NewLogWriter(testCtx(t), f, "22", cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	for i := 1; i <= 100; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = w.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "not uploaded") || !strings.Contains(err.Error(), cfg.SpillDir) {
		t.Fatalf("close during an outage: %v", err)
	}
	if countFiles(t, cfg.SpillDir) == 0 {
		t.Fatal("unsent chunks were not kept on disk")
	}
}

// TestMinIORestartMidBurst kills a real MinIO while a burst of lines is
// being written, starts it again, and checks every line arrived exactly
// once, in order.
func TestMinIORestartMidBurst(t *testing.T) {
	own, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	ctx := testCtx(t)
	cfg := own.Config(blob.BackendMinIO, miniotest.BucketName("outage"))
	cfg.Timeout = 2 * time.Second
	s, err := minio.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wcfg := fastConfig(t)
	wcfg.UploadTimeout = 2 * time.Second
	w, err := build.NewLogWriter(ctx, s, "23", wcfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
			if i%2000 == 0 {
				// A burst spread over time: the pause is the load's shape,
				// not a wait for a condition.
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	// Stop once some chunks are in, keep it down while lines keep coming.
	waitStats(t, ctx, w, "5 chunks", func(st build.WriterStats) bool { return st.Chunks >= 5 })
	own.Stop()
	waitStats(t, ctx, w, "2 failed uploads", func(st build.WriterStats) bool { return st.FailedUploads >= 2 })
	wg.Wait()
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	t.Logf("chunks %d, failed uploads %d, spilled %d", st.Chunks, st.FailedUploads, st.Spilled)
	checkSequence(t, readLog(t, s, "23"), n)
}

// TestSlowStoreBatchesQueuedChunks: chunks that queue behind a slow upload
// go out together, up to MaxObjectSize, still in order and exactly once.
func TestSlowStoreBatchesQueuedChunks(t *testing.T) {
	ctx := testCtx(t)
	f := &flaky{Store: newFS(t), delay: 20 * time.Millisecond}
	cfg := fastConfig(t)
	cfg.MaxObjectSize = 32 << 10
	cfg.MemoryLimit = 1 << 20
	f.lostAnswers.Store(2)
	w, err := build.NewLogWriter(ctx, f, "24", cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := 1; i <= n; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, readLog(t, f.Store, "24"), n)
	chunks, err := build.AllChunks(ctx, f.Store, "24", 0)
	if err != nil {
		t.Fatal(err)
	}
	// MaxObjectSize counts NDJSON, what a reader gets from the object,
	// not the compressed bytes stored.
	var sealed, stored, biggest int64
	for _, c := range chunks {
		b, err := build.ReadChunk(ctx, f.Store, "24", c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		size := int64(len(b))
		sealed += size
		stored += c.Size
		biggest = max(biggest, size)
		if size > 32<<10 {
			t.Fatalf("chunk %d holds %d bytes, over MaxObjectSize", c.Seq, size)
		}
	}
	if biggest <= 4<<10+512 {
		t.Fatalf("largest object holds %d bytes: queued chunks were not batched", biggest)
	}
	if f.lostAnswers.Load() != 0 {
		t.Fatal("the injected lost answers were not all used")
	}
	t.Logf("%d objects for %d bytes of NDJSON (%d stored), largest %d", len(chunks), sealed, stored, biggest)
}

// A writer whose spill directory cannot be made (a read-only root
// filesystem, as the aggregator's pod has) still writes its log, and
// keeps its chunks in memory during an outage rather than lose them; it
// makes no directory until it has to spill.
func TestWriterWithoutASpillDirectory(t *testing.T) {
	ctx := testCtx(t)
	file := t.TempDir() + "/not-a-directory"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unusable := file + "/spill"

	s := newFS(t)
	if err := build.WriteSystemLine(ctx, s, "30", "build failed: WorkerLost: gone", nil); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(t)
	cfg.SpillDir = unusable
	w, err := build.NewLogWriter(ctx, s, "31", cfg)
	if err != nil {
		t.Fatalf("a writer that has not spilled needs no spill directory: %v", err)
	}
	if err := w.Write(build.Record{Stream: build.StreamSystem, Time: time.Now(), Text: "written"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if recs := readLog(t, s, "31"); len(recs) != 1 || recs[0].Text != "written" {
		t.Fatalf("the store has %+v, want the one line", recs)
	}
	if recs := readLog(t, s, "30"); len(recs) != 1 || !strings.HasPrefix(recs[0].Text, "build failed") {
		t.Fatalf("WriteSystemLine stored %+v", recs)
	}

	// During an outage, past the memory budget: no spill, nothing lost.
	f := &flaky{Store: newFS(t)}
	cfg = fastConfig(t)
	spillDir := cfg.SpillDir
	cfg.SpillDir = unusable
	w, err = build.NewLogWriter(ctx, f, "32", cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	const n = 5000
	for i := 1; i <= n; i++ {
		if err := w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	waitStats(t, ctx, w, "2 failed uploads", func(st build.WriterStats) bool { return st.FailedUploads >= 2 })
	if st := w.Stats(); st.Spilled != 0 {
		t.Fatalf("spilled %d chunks into an unusable directory", st.Spilled)
	}
	f.down.Store(false)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, readLog(t, f.Store, "32"), n)
	if left := countFiles(t, spillDir); left != 0 {
		t.Fatalf("%d files in the test's own spill directory", left)
	}
}
