package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

func newMinIO(t testing.TB) blob.Store { return srv.Store(t, blob.BackendMinIO, "agg") }

var quiet = slog.New(slog.DiscardHandler)

// writeBuild writes a finished build the way a worker does: lines through
// the chunk writer, then the final status.
func writeBuild(t testing.TB, s blob.Store, ref string, lines int, final build.Phase, artifacts map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Running}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, build.WriterConfig{ChunkSize: 2 << 10, MaxObjectSize: 2 << 10, FlushInterval: time.Hour, SpillDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= lines; i++ {
		_ = w.Write(build.Record{Stage: "s", Step: "x", Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for name, body := range artifacts {
		if _, err := build.PutArtifact(ctx, s, ref, name, strings.NewReader(body), int64(len(body)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if final != "" {
		if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Status = final; return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRelayLinesArtifactsThenStatus(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeBuild(t, s, "1", 1000, "", nil)
	sink := NewMemorySink()
	a := New(s, sink, nil, Config{BatchLines: 300, Logger: quiet})
	ctx := context.Background()
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	lines, statuses, _ := sink.Received("1")
	if len(lines) != 1000 || len(statuses) != 1 || statuses[0].Status != build.Running {
		t.Fatalf("running build: %d lines, statuses %+v", len(lines), statuses)
	}
	// Nothing new: nothing sent again.
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if lines, statuses, _ = sink.Received("1"); len(lines) != 1000 || len(statuses) != 1 {
		t.Fatalf("second pass resent: %d lines, %d statuses", len(lines), len(statuses))
	}
	// More lines, an artifact and the final status arrive.
	w, _ := build.NewLogWriter(ctx, s, "1", build.WriterConfig{SpillDir: t.TempDir(), Logger: quiet})
	_ = w.Write(build.Record{Stream: build.StreamStdout, Line: 1001, Time: time.Now(), Text: "line 1001"})
	_ = w.Close(ctx)
	build.PutArtifact(ctx, s, "1", "report.trx", strings.NewReader("<TestRun/>"), 10, "")
	s.Put(ctx, build.TestResultPrefix("1")+"test/unit/results.trx", strings.NewReader("<TestRun>1</TestRun>"), 20, blob.PutOptions{})
	build.UpdateStatus(ctx, s, "1", func(st *build.Status) error {
		st.Status, st.Reason = build.Failed, "StepFailed: s/x exit 1"
		return nil
	})
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	lines, statuses, arts := sink.Received("1")
	if len(lines) != 1001 || lines[1000].Text != "line 1001" {
		t.Fatalf("%d lines after the second batch", len(lines))
	}
	if len(statuses) != 2 || statuses[1].Status != build.Failed || string(arts["report.trx"]) != "<TestRun/>" {
		t.Fatalf("statuses %+v artifacts %v", statuses, arts)
	}
	if tr := sink.TestResults("1"); len(tr) != 1 || string(tr["test/unit/results.trx"]) != "<TestRun>1</TestRun>" {
		t.Fatalf("test results %q", tr)
	}
	if refs, _ := a.Pending(ctx); len(refs) != 0 {
		t.Fatalf("a finished relay is still pending: %v", refs)
	}
}

// A file the sink refuses for good is counted and skipped: the build's
// other files and its final status still go, and it is not sent again.
func TestRefusedFileDoesNotHoldTheBuild(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeBuild(t, s, "1", 10, build.Completed, map[string]string{"b/s/bad.bin": "x", "b/s/good.bin": "y"})
	sink := NewMemorySink()
	tries := 0
	sink.Fail = func(_ Build, what string) error {
		if what == "artifact" {
			if tries++; tries == 1 {
				return fmt.Errorf("wharf-api: 413 too large: %w", ErrRefused)
			}
		}
		return nil
	}
	a := New(s, sink, nil, Config{Logger: quiet})
	ctx := context.Background()
	for range 2 {
		if err := a.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, statuses, arts := sink.Received("1")
	if len(statuses) != 1 || statuses[0].Status != build.Completed {
		t.Fatalf("statuses %+v", statuses)
	}
	if len(arts) != 1 || string(arts["b/s/good.bin"]) != "y" || tries != 2 {
		t.Fatalf("artifacts %q after %d tries: want the refused one skipped, never retried", arts, tries)
	}
	if a.FilesRefused.Load() != 1 || a.FilesRelayed.Load() != 1 {
		t.Fatalf("counted %d refused, %d relayed", a.FilesRefused.Load(), a.FilesRelayed.Load())
	}
}

func TestPermanentRejectionParksTheBuild(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	writeBuild(t, s, "404", 10, build.Completed, nil)
	writeBuild(t, s, "ok", 10, build.Completed, nil)
	sink := NewMemorySink()
	calls := 0
	sink.Fail = func(b Build, _ string) error {
		if b.Ref == "404" {
			calls++
			return fmt.Errorf("wharf-api: build unknown: %w", ErrPermanent)
		}
		return nil
	}
	a := New(s, sink, nil, Config{Logger: quiet})
	for range 3 {
		if err := a.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("a parked build was tried %d times", calls)
	}
	if lines, _, _ := sink.Received("ok"); len(lines) != 10 {
		t.Fatal("the other build was not relayed")
	}
}

func TestTransientSinkErrorsAreRetried(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	writeBuild(t, s, "7", 50, build.Completed, nil)
	sink := NewMemorySink()
	fails := 3
	sink.Fail = func(Build, string) error {
		if fails > 0 {
			fails--
			return errors.New("wharf-api: database is locked")
		}
		return nil
	}
	a := New(s, sink, nil, Config{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: quiet})
	if err := a.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines, statuses, _ := sink.Received("7")
	if len(lines) != 50 || len(statuses) != 1 {
		t.Fatalf("%d lines %d statuses after retries", len(lines), len(statuses))
	}
}

func TestLeaseRaceHasOneWinner(t *testing.T) {
	s := newMinIO(t)
	var wg sync.WaitGroup
	wins := make([]bool, 10)
	for i := range wins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := acquire(context.Background(), s, "race", fmt.Sprint("r", i), time.Minute, time.Now())
			wins[i] = err == nil
		}()
	}
	wg.Wait()
	n := 0
	for _, w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas hold the lease", n)
	}
	// An expired lease can be taken over; a live one cannot.
	if _, err := acquire(context.Background(), s, "race", "late", time.Minute, time.Now()); !errors.Is(err, errLeaseHeld) {
		t.Fatalf("took a live lease: %v", err)
	}
	if _, err := acquire(context.Background(), s, "race", "late", time.Minute, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatalf("could not take an expired lease: %v", err)
	}
}

// TestThreeReplicasTwoHundredBuilds runs three aggregators against a real
// MinIO, kills one mid-way, and checks that every line of 200 builds was
// delivered, no build was relayed by two holders at once, and a build got
// at most one batch twice (the one its dead relayer had not acknowledged).
func TestThreeReplicasTwoHundredBuilds(t *testing.T) {
	s := newMinIO(t)
	const builds, lines, batch = 200, 400, 100
	for i := range builds {
		writeBuild(t, s, fmt.Sprint("b", i), lines, build.Completed, nil)
	}
	sink := NewMemorySink()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var aggs []*Aggregator
	var cancels []context.CancelFunc
	var wg sync.WaitGroup
	for i := range 3 {
		a := New(s, sink, nil, Config{Holder: fmt.Sprint("replica-", i), LeaseDuration: time.Second, PollInterval: 50 * time.Millisecond,
			BatchLines: batch, Workers: 4, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: quiet})
		rctx, rcancel := context.WithCancel(ctx)
		aggs, cancels = append(aggs, a), append(cancels, rcancel)
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(rctx) }()
	}
	// Kill replica 0 once it has done some of the work.
	for aggs[0].LinesRelayed.Load() < builds*lines/10 {
		time.Sleep(5 * time.Millisecond)
	}
	cancels[0]()
	for {
		refs, err := aggs[1].Pending(ctx)
		if err == nil && len(refs) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("relay not finished: %d builds pending", len(refs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range cancels {
		c()
	}
	wg.Wait()
	if sink.Concurrent != 0 {
		t.Fatalf("%d deliveries overlapped another holder's for the same build", sink.Concurrent)
	}
	// Batches end at chunk boundaries (about 20 lines here).
	if sink.MaxBatch < batch || sink.MaxBatch > 2*batch {
		t.Fatalf("largest batch %d lines, want %d rounded up to whole chunks", sink.MaxBatch, batch)
	}
	resent := 0
	for i := range builds {
		recs, statuses, _ := sink.Received(fmt.Sprint("b", i))
		seen := map[uint64]int{}
		for _, r := range recs {
			seen[r.Line]++
		}
		if len(seen) != lines {
			t.Fatalf("build b%d: %d distinct lines of %d", i, len(seen), lines)
		}
		if extra := len(recs) - lines; extra > sink.MaxBatch {
			t.Fatalf("build b%d: %d lines sent twice, more than one batch (at most %d lines)", i, extra, sink.MaxBatch)
		} else if extra > 0 {
			resent++
		}
		if len(statuses) == 0 || statuses[len(statuses)-1].Status != build.Completed {
			t.Fatalf("build b%d: statuses %+v", i, statuses)
		}
	}
	total := aggs[0].LinesRelayed.Load() + aggs[1].LinesRelayed.Load() + aggs[2].LinesRelayed.Load()
	t.Logf("lines relayed by replica: %d, %d, %d (total %d); builds with a resent batch: %d",
		aggs[0].LinesRelayed.Load(), aggs[1].LinesRelayed.Load(), aggs[2].LinesRelayed.Load(), total, resent)
}

func TestWriterSink(t *testing.T) {
	var b strings.Builder
	ws := &WriterSink{W: &b}
	ctx := context.Background()
	_ = ws.Lines(ctx, Build{Ref: "5"}, []build.Record{{Stage: "build", Step: "go", Text: "ok"}})
	_ = ws.Status(ctx, Build{Ref: "5"}, build.Status{Status: build.Failed, Reason: "Cancelled"})
	_ = ws.Artifact(ctx, Build{Ref: "5"}, "a.txt", io.NopCloser(strings.NewReader("abc")))
	want := "[5] build/go             | ok\n[5] status Failed (Cancelled)\n[5] artifact a.txt (3 bytes)\n"
	if b.String() != want {
		t.Fatalf("got %q", b.String())
	}
}

func TestMetrics(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	writeBuild(t, s, "m", 20, build.Completed, nil)
	writeBuild(t, s, "r", 5, "", nil) // still running: its lease stays held
	sink := NewMemorySink()
	failed := false
	sink.Fail = func(b Build, what string) error {
		if b.Ref == "m" && what == "lines" && !failed {
			failed = true
			return errors.New("sink down")
		}
		return nil
	}
	a := New(s, sink, nil, Config{RetryMin: time.Millisecond, RetryMax: time.Millisecond, Logger: quiet})
	if err := a.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"wharfjobs_relay_lines_total 25\n",
		"wharfjobs_relay_batches_total 2\n",
		"wharfjobs_relay_statuses_total 2\n", // m: Completed; r: Running
		"# TYPE wharfjobs_relay_parked_builds gauge\n",
		"wharfjobs_relay_builds_owned 1\n",
		`wharfjobs_relay_errors_total{kind="sink"} 1` + "\n",
		`wharfjobs_relay_errors_total{kind="relay"} 0` + "\n",
		"# TYPE wharfjobs_relay_lag_seconds histogram\n",
		`wharfjobs_relay_lag_seconds_bucket{le="+Inf"} 2` + "\n",
		"wharfjobs_relay_lag_seconds_count 2\n",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
	// The lines were written just before: both batches are in the 5 s
	// bucket or below, and the buckets are cumulative.
	if !strings.Contains(body, `wharfjobs_relay_lag_seconds_bucket{le="5"} 2`+"\n") {
		t.Fatalf("lag of lines written a moment ago not within 5 s:\n%s", body)
	}
}

// TestStoreOutageMidRelay: MinIO goes away while builds are being relayed
// and comes back; every line arrives, none more than one batch twice, and
// the statuses follow.
func TestStoreOutageMidRelay(t *testing.T) {
	own, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	s := own.Store(t, blob.BackendMinIO, "outage")
	const builds, lines = 20, 400
	for i := range builds {
		writeBuild(t, s, fmt.Sprint("o", i), lines, build.Completed, nil)
	}
	sink := NewMemorySink()
	var slow atomic.Bool
	slow.Store(true)
	sink.Fail = func(Build, string) error {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond) // so the outage lands mid-relay
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := New(s, sink, nil, Config{PollInterval: 100 * time.Millisecond, BatchLines: 50, RetryMin: 10 * time.Millisecond, RetryMax: 500 * time.Millisecond, Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for a.LinesRelayed.Load() < builds*lines/4 {
		time.Sleep(5 * time.Millisecond)
	}
	own.Stop()
	time.Sleep(2 * time.Second)
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	slow.Store(false)
	for {
		refs, err := a.Pending(ctx)
		if err == nil && len(refs) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("relay not finished after the outage: %d builds pending (%v)", len(refs), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
	if a.Errors.Load() == 0 {
		t.Fatal("no error counted: the outage did not hit the relay, the test proves nothing")
	}
	for i := range builds {
		ref := fmt.Sprint("o", i)
		recs, statuses, _ := sink.Received(ref)
		seen := map[uint64]bool{}
		for _, r := range recs {
			seen[r.Line] = true
		}
		if len(seen) != lines {
			t.Fatalf("build %s: %d distinct lines of %d", ref, len(seen), lines)
		}
		if extra := len(recs) - lines; extra > sink.MaxBatch {
			t.Fatalf("build %s: %d lines sent twice, more than one batch (%d)", ref, extra, sink.MaxBatch)
		}
		if len(statuses) == 0 || statuses[len(statuses)-1].Status != build.Completed {
			t.Fatalf("build %s: statuses %+v", ref, statuses)
		}
	}
	t.Logf("errors counted during the outage: %d", a.Errors.Load())
}

// TestChunksDeletedAfterTheFinalRelay: once a build's relay is final its
// chunks go, and the compacted log still holds every line: at once when
// the worker already compacted, after CompactWait (the aggregator
// compacting itself) when it did not, never with KeepChunks.
func TestChunksDeletedAfterTheFinalRelay(t *testing.T) {
	for _, tc := range []struct {
		name            string
		compacted, keep bool
		wantChunks      bool
	}{
		{"worker compacted", true, false, false},
		{"worker did not compact", false, false, false},
		{"keep chunks", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := fs.Open(t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			writeBuild(t, s, "c", 300, build.Completed, nil)
			// An archive a step uploaded, which a lost worker never removed.
			staged := build.StagingKey("c", "b", "s", "artifacts")
			if _, err := s.Put(ctx, staged, strings.NewReader("archive"), 7, blob.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if tc.compacted {
				if _, err := build.Compact(ctx, s, "c"); err != nil {
					t.Fatal(err)
				}
			}
			sink := NewMemorySink()
			a := New(s, sink, nil, Config{PollInterval: 20 * time.Millisecond, CompactWait: 300 * time.Millisecond, KeepChunks: tc.keep, Logger: quiet})
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); <-done }()
			chunksLeft := func() int {
				c, err := build.AllChunks(ctx, s, "c", 0)
				if err != nil {
					t.Fatal(err)
				}
				return len(c)
			}
			if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, statuses(sink, "c", 1)); err != nil { // Completed: written before Run started
				t.Fatal(err)
			}
			relayedAt := time.Now()
			if !tc.compacted && !tc.keep && chunksLeft() == 0 {
				t.Fatal("chunks deleted before the worker had its CompactWait to compact")
			}
			err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() error {
				if n := chunksLeft(); n != 0 {
					return fmt.Errorf("%d chunks left", n)
				}
				return nil
			})
			if _, err := s.Stat(ctx, staged); !tc.wantChunks && !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("the steps' archive is still there: %v", err)
			}
			switch {
			case tc.wantChunks && err == nil:
				t.Fatal("chunks deleted although KeepChunks is set")
			case !tc.wantChunks && err != nil:
				t.Fatalf("chunks of a finished, relayed build: %v", err)
			case !tc.wantChunks && !tc.compacted:
				t.Logf("chunks deleted %v after the final relay (CompactWait 300ms)", time.Since(relayedAt).Round(time.Millisecond))
			}
			rc, err := build.OpenLog(ctx, s, "c")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n := 0
			if err := build.ScanRecords(rc, func(r build.Record) error {
				n++
				if r.Line != uint64(n) {
					return fmt.Errorf("line %d where %d was expected", r.Line, n)
				}
				return nil
			}); err != nil || n != 300 {
				t.Fatalf("log after the chunks went: %d of 300 lines, %v", n, err)
			}
			if recs, _, _ := sink.Received("c"); len(recs) != 300 {
				t.Fatalf("relayed %d of 300 lines", len(recs))
			}
		})
	}
}
