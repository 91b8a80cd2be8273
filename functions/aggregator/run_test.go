package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// TestJobWatchReactsWithoutPolling: with polling and re-listing an hour
// apart, a Job that fails its deadline still fails its build at once,
// through the watch.
func TestJobWatchReactsWithoutPolling(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := fake.NewClientset()
	l := &kube.Launcher{Client: cs, Config: kube.Config{Namespace: "b"}}
	b, _, err := l.Launch(ctx, job.Request{BuildRef: "3", GitFullURL: "https://g/x.git"})
	if err != nil {
		t.Fatal(err)
	}
	writeBuild(t, s, "3", 2, "", nil)
	sink := aggregatortest.NewMemorySink()
	a := aggregator.New(s, sink, l, aggregator.Config{PollInterval: time.Hour, DiscoverInterval: time.Hour, Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }() // no write into TempDir after the test
	if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, statuses(sink, "3", 1)); err != nil {
		t.Fatalf("the first pass did not relay Running: %v", err)
	}
	j, err := cs.BatchV1().Jobs("b").Get(ctx, b.WorkerID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded"}}
	if _, err := cs.BatchV1().Jobs("b").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		_, statuses, _ := sink.Received("3")
		if n := len(statuses); n != 2 || statuses[1].Status != build.Failed || statuses[1].Reason != string(build.ReasonDeadlineExceeded) {
			return fmt.Errorf("statuses relayed %+v, want Running then Failed %s", statuses, build.ReasonDeadlineExceeded)
		}
		return nil
	}); err != nil {
		t.Fatalf("the Job's failure was not relayed through the watch: %v", err)
	}
}

// TestHotBuildsArePolledOften: with polling an hour apart, a build that is
// writing output still has each new chunk relayed within HotPollInterval,
// and stops being polled HotPollFor after it last delivered something.
func TestHotBuildsArePolledOften(t *testing.T) {
	for _, hot := range []time.Duration{50 * time.Millisecond, -1} {
		s, _ := fs.Open(t.TempDir())
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := build.WriteStatus(ctx, s, "5", build.Status{Status: build.Running}, ""); err != nil {
			t.Fatal(err)
		}
		w, err := build.NewLogWriter(ctx, s, "5", build.WriterConfig{SpillDir: t.TempDir(), FlushInterval: time.Hour, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		line := func(n int) {
			if err := w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(n), Time: time.Now(), Text: "x"}); err != nil {
				t.Fatal(err)
			}
			w.Flush()
		}
		ms := aggregatortest.NewMemorySink()
		waitLines := func(n int, within time.Duration) bool {
			return testenv.WaitFor(ctx, within, 10*time.Millisecond, func() error {
				if recs, _, _ := ms.Received("5"); len(recs) < n {
					return fmt.Errorf("%d lines relayed, want %d", len(recs), n)
				}
				return nil
			}) == nil
		}
		line(1)
		// The first chunk is in the store before the first pass.
		if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, func() error {
			if c, err := build.AllChunks(ctx, s, "5", 0); len(c) != 1 {
				return fmt.Errorf("%d chunks in the store (%v), want 1", len(c), err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		a := aggregator.New(s, ms, nil, aggregator.Config{PollInterval: time.Hour, HotPollInterval: hot, HotPollFor: 500 * time.Millisecond, Logger: quiet})
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		stop := func() { cancel(); <-done }
		if !waitLines(1, 10*time.Second) {
			t.Fatal("the first pass relayed nothing")
		}
		line(2)
		got := waitLines(2, 3*time.Second)
		if hot > 0 && !got {
			t.Fatal("a build writing output waited for the hour-long poll")
		}
		if hot < 0 {
			if got {
				t.Fatal("with hot polling off the second line came before the next poll: the test proves nothing")
			}
			stop()
			continue
		}
		// Nothing new: the build cools after HotPollFor.
		if err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() error {
			if n := a.HotBuilds(); n != 0 {
				return fmt.Errorf("%d builds hot", n)
			}
			return nil
		}); err != nil {
			t.Fatalf("an idle build stayed hot: %v", err)
		}
		_ = w.Close(ctx)
		stop()
	}
}

// TestNotificationsRelayWithoutPolling: with polling an hour apart and hot
// polling off, a build that appears after the first pass, and each of its
// chunks, are relayed through MinIO's bucket notification stream alone.
func TestNotificationsRelayWithoutPolling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ms, err := minio.Open(ctx, srv.Config(blob.BackendMinIO, miniotest.BucketName("notify")))
	if err != nil {
		t.Fatal(err)
	}
	sink := aggregatortest.NewMemorySink()
	a := aggregator.New(ms, sink, nil, aggregator.Config{PollInterval: time.Hour, HotPollInterval: -1, Logger: quiet})
	a.WatchChanges(func(ctx context.Context) <-chan string { return ms.Watch(ctx, build.Root, nil) })
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The stream subscribes after Run starts: a build written before that
	// would wait for the hour-long poll. Probe until a throwaway build is
	// relayed, so the test knows the stream is up.
	for i := 0; ; i++ {
		probe := fmt.Sprintf("probe-%d", i)
		if _, err := build.WriteStatus(ctx, ms, probe, build.Status{Status: build.Running}, ""); err != nil {
			t.Fatal(err)
		}
		if testenv.WaitFor(ctx, 200*time.Millisecond, 10*time.Millisecond, statuses(sink, probe, 1)) == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no build relayed through notifications within 60 s")
		}
	}

	const ref = "n1"
	etag, err := build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Running}, "")
	if err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, ms, ref, build.WriterConfig{SpillDir: t.TempDir(), FlushInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 5; n++ {
		if err := w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(n), Time: time.Now(), Text: fmt.Sprintf("line %d", n)}); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		start := time.Now()
		if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, func() error {
			if recs, _, _ := sink.Received(ref); len(recs) != n {
				return fmt.Errorf("sink has %d lines, want %d", len(recs), n)
			}
			return nil
		}); err != nil {
			t.Fatalf("chunk %d: notifications did not drive the relay: %v", n, err)
		}
		t.Logf("chunk %d relayed %v after it was flushed", n, time.Since(start).Round(time.Millisecond))
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Completed}, etag); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, statuses(sink, ref, 2)); err != nil {
		t.Fatalf("final status not relayed through notifications: %v", err)
	}
	if _, st, _ := sink.Received(ref); st[1].Status != build.Completed {
		t.Fatalf("second status relayed is %q, want %q", st[1].Status, build.Completed)
	}
}

// statuses is a check that ref has had n statuses relayed to sink.
func statuses(sink *aggregatortest.MemorySink, ref string, n int) func() error {
	return func() error {
		if _, st, _ := sink.Received(ref); len(st) != n {
			return fmt.Errorf("build %s: %d statuses relayed, want %d", ref, len(st), n)
		}
		return nil
	}
}

// TestSilentChangeStreamIsReported: a change stream that delivers nothing,
// not even the aggregator's own cursor writes, is reported once, so an
// operator learns the relay runs at polling speed; one that delivers is not.
func TestSilentChangeStreamIsReported(t *testing.T) {
	for _, delivers := range []bool{false, true} {
		s, _ := fs.Open(t.TempDir())
		for i := range 6 {
			writeBuild(t, s, fmt.Sprint("s", i), 3, build.Completed, nil) // a batch and a status each
		}
		var warnings atomic.Int32
		sink := aggregatortest.NewMemorySink()
		a := aggregator.New(s, sink, nil, aggregator.Config{PollInterval: 20 * time.Millisecond, SilentChangesAfter: 100 * time.Millisecond,
			Logger: slog.New(countingHandler{Handler: slog.DiscardHandler, msg: "change notifications delivered nothing", n: &warnings})})
		a.WatchChanges(func(ctx context.Context) <-chan string {
			ch := make(chan string, 1)
			if delivers {
				ch <- build.Dir("s0") + "relay/cursor"
			}
			go func() { <-ctx.Done(); close(ch) }()
			return ch
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		if err := testenv.WaitFor(ctx, 5*time.Second, 20*time.Millisecond, statuses(sink, "s5", 1)); err != nil {
			cancel()
			<-done
			t.Fatal(err)
		}
		if !delivers {
			if err := testenv.WaitFor(ctx, 5*time.Second, 20*time.Millisecond, func() error {
				if warnings.Load() == 0 {
					return errors.New("a silent stream was not reported")
				}
				return nil
			}); err != nil {
				cancel()
				<-done
				t.Fatal(err)
			}
		}
		// Time passing is what is checked here: several more passes past
		// SilentChangesAfter, in which the report must not come again (or,
		// for a stream that delivered, at all). No signal marks a report
		// that did not happen.
		time.Sleep(300 * time.Millisecond)
		cancel()
		<-done
		switch n := warnings.Load(); {
		case !delivers && n != 1:
			t.Fatalf("silent stream reported %d times, want once", n)
		case delivers && n != 0:
			t.Fatalf("a stream that delivered was reported silent %d times", n)
		}
	}
}

// countingHandler counts the log records whose message contains msg.
type countingHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int32
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.n.Add(1)
	}
	return nil
}

// TestDrainRelaysPendingBuildsThenReturns: after Drain (the command's
// SIGTERM), Run goes on relaying a build that is still pending and returns
// once its final status is relayed; with nothing pending it returns at
// once, although its poll interval is an hour.
func TestDrainRelaysPendingBuildsThenReturns(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etag, err := build.WriteStatus(ctx, s, "7", build.Status{Status: build.Running}, "")
	if err != nil {
		t.Fatal(err)
	}
	sink := aggregatortest.NewMemorySink()
	a := aggregator.New(s, sink, nil, aggregator.Config{PollInterval: 20 * time.Millisecond, HotPollInterval: -1, Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, statuses(sink, "7", 1)); err != nil {
		t.Fatal(err)
	}
	a.Drain()
	select {
	case err := <-done:
		done <- err
		t.Fatalf("Run returned (%v) while build 7 was still Running", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := build.WriteStatus(ctx, s, "7", build.Status{Status: build.Completed}, etag); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("Run after Drain: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return once nothing was pending")
	}
	if _, st, _ := sink.Received("7"); len(st) != 2 || st[1].Status != build.Completed {
		t.Fatalf("drained with statuses %+v relayed, want Running, Completed", st)
	}

	idle := aggregator.New(s, aggregatortest.NewMemorySink(), nil, aggregator.Config{PollInterval: time.Hour, Logger: quiet})
	idleDone := make(chan error, 1)
	go func() { idleDone <- idle.Run(ctx) }()
	time.Sleep(50 * time.Millisecond) // into its hour-long wait (or before it: either way)
	idle.Drain()
	select {
	case err := <-idleDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle aggregator did not return at Drain")
	}
}
