package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

func TestRelayLinesArtifactsThenStatus(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeBuild(t, s, "1", 1000, "", nil)
	sink := aggregatortest.NewMemorySink()
	a := aggregator.New(s, sink, nil, aggregator.Config{BatchLines: 300, Logger: quiet})
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
	sink := aggregatortest.NewMemorySink()
	tries := 0
	sink.Fail = func(_ aggregator.Build, what string) error {
		if what == "artifact" {
			if tries++; tries == 1 {
				return fmt.Errorf("wharf-api: 413 too large: %w", aggregator.ErrRefused)
			}
		}
		return nil
	}
	a := aggregator.New(s, sink, nil, aggregator.Config{Logger: quiet})
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
	sink := aggregatortest.NewMemorySink()
	calls := 0
	sink.Fail = func(b aggregator.Build, _ string) error {
		if b.Ref == "404" {
			calls++
			return fmt.Errorf("wharf-api: build unknown: %w", aggregator.ErrPermanent)
		}
		return nil
	}
	a := aggregator.New(s, sink, nil, aggregator.Config{Logger: quiet})
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
	sink := aggregatortest.NewMemorySink()
	fails := 3
	sink.Fail = func(aggregator.Build, string) error {
		if fails > 0 {
			fails--
			return errors.New("wharf-api: database is locked")
		}
		return nil
	}
	a := aggregator.New(s, sink, nil, aggregator.Config{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: quiet})
	if err := a.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines, statuses, _ := sink.Received("7")
	if len(lines) != 50 || len(statuses) != 1 {
		t.Fatalf("%d lines %d statuses after retries", len(lines), len(statuses))
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
	sink := aggregatortest.NewMemorySink()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var aggs []*aggregator.Aggregator
	var cancels []context.CancelFunc
	var wg sync.WaitGroup
	for i := range 3 {
		a := aggregator.New(s, sink, nil, aggregator.Config{Holder: fmt.Sprint("replica-", i), LeaseDuration: time.Second, PollInterval: 50 * time.Millisecond,
			BatchLines: batch, Workers: 4, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: quiet})
		rctx, rcancel := context.WithCancel(ctx)
		aggs, cancels = append(aggs, a), append(cancels, rcancel)
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(rctx) }()
	}
	// Kill replica 0 once it has done some of the work.
	if err := testenv.WaitFor(ctx, time.Minute, 5*time.Millisecond, func() error {
		if n := aggs[0].LinesRelayed.Load(); n < builds*lines/10 {
			return fmt.Errorf("replica 0 relayed %d lines, want %d before it is killed", n, builds*lines/10)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cancels[0]()
	if err := testenv.WaitFor(ctx, 3*time.Minute, 100*time.Millisecond, nothingPending(ctx, aggs[1])); err != nil {
		t.Fatalf("relay not finished: %v", err)
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
	sink := aggregatortest.NewMemorySink()
	var slow atomic.Bool
	slow.Store(true)
	sink.Fail = func(aggregator.Build, string) error {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond) // a slow sink (simulated), so the outage lands mid-relay
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := aggregator.New(s, sink, nil, aggregator.Config{PollInterval: 100 * time.Millisecond, BatchLines: 50, RetryMin: 10 * time.Millisecond, RetryMax: 500 * time.Millisecond, Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if err := testenv.WaitFor(ctx, time.Minute, 5*time.Millisecond, func() error {
		if n := a.LinesRelayed.Load(); n < builds*lines/4 {
			return fmt.Errorf("%d lines relayed, want %d before the outage", n, builds*lines/4)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	own.Stop()
	down := time.Now()
	// The store stays down until the relay has seen it: a relay pass failed
	// and discovery failed twice, so the poll loop backed off and retried
	// against a store that was still down.
	relayErrs, discoveryErrs := a.ErrorsOf("relay"), a.ErrorsOf("discovery")
	if err := testenv.WaitFor(ctx, time.Minute, 10*time.Millisecond, func() error {
		r, d := a.ErrorsOf("relay")-relayErrs, a.ErrorsOf("discovery")-discoveryErrs
		if r < 1 || d < 2 {
			return fmt.Errorf("the outage did not hit the relay: %d relay and %d discovery errors counted during it, want 1 and 2", r, d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("store down for %v", time.Since(down).Round(time.Millisecond))
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	slow.Store(false)
	if err := testenv.WaitFor(ctx, 2*time.Minute, 100*time.Millisecond, nothingPending(ctx, a)); err != nil {
		t.Fatalf("relay not finished after the outage: %v", err)
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

// nothingPending is a check that a has no build left to relay.
func nothingPending(ctx context.Context, a *aggregator.Aggregator) func() error {
	return func() error {
		refs, err := a.Pending(ctx)
		if err != nil {
			return err
		}
		if len(refs) > 0 {
			return fmt.Errorf("%d builds pending", len(refs))
		}
		return nil
	}
}
