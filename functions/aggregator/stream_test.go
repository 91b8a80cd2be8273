package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
)

// notifyingStore is a store that tells its subscribers the key of each
// object created, as MinIO's bucket notifications do, and lets a test
// break that: drop loses what is created (a lost notification, or a
// stream gone silent), disconnect closes every subscription.
type notifyingStore struct {
	blob.Store
	drop       atomic.Bool
	subscribed atomic.Int32
	mu         sync.Mutex
	subs       map[chan string]bool
}

func newNotifyingStore(t testing.TB) *notifyingStore {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &notifyingStore{Store: s, subs: map[chan string]bool{}}
}

func (n *notifyingStore) Put(ctx context.Context, key string, r io.Reader, size int64, o blob.PutOptions) (blob.Info, error) {
	info, err := n.Store.Put(ctx, key, r, size, o)
	if err == nil && !n.drop.Load() {
		n.mu.Lock()
		for ch := range n.subs {
			select {
			case ch <- key:
			default: // a listener that does not keep up loses keys, as with MinIO
			}
		}
		n.mu.Unlock()
	}
	return info, err
}

// Watch is the aggregator's change stream.
func (n *notifyingStore) Watch(ctx context.Context) <-chan string {
	ch := make(chan string, 4096)
	n.mu.Lock()
	n.subs[ch] = true
	n.mu.Unlock()
	n.subscribed.Add(1)
	go func() {
		<-ctx.Done()
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.subs[ch] {
			delete(n.subs, ch)
			close(ch)
		}
	}()
	return ch
}

// disconnect closes every subscription.
func (n *notifyingStore) disconnect() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		delete(n.subs, ch)
		close(ch)
	}
}

// runningBuilds writes n Running builds with a fresh heartbeat, no output.
func runningBuilds(t testing.TB, s blob.Store, n int) []string {
	t.Helper()
	now := time.Now()
	var refs []string
	for i := range n {
		ref := fmt.Sprint("run-", i)
		if _, err := build.WriteStatus(context.Background(), s, ref, build.Status{Status: build.Running, Heartbeat: &now}, ""); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	return refs
}

// startWatching runs a with ns as its change stream until the test ends,
// and waits until every one of refs had its status relayed and the stream
// carries the relay (every build visited since it became healthy).
func startWatching(t *testing.T, a *aggregator.Aggregator, ns *notifyingStore, sink *aggregatortest.MemorySink, refs []string) context.Context {
	t.Helper()
	a.WatchChanges(ns.Watch)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := testenv.WaitFor(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		for _, ref := range refs {
			if _, st, _ := sink.Received(ref); len(st) == 0 {
				return fmt.Errorf("build %s: no status relayed", ref)
			}
		}
		if !a.CaughtUp() {
			return fmt.Errorf("stream healthy %v, but not every build visited since", a.ChangesHealthy())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// writeLine writes one log line of ref as a worker does.
func writeLine(t *testing.T, s blob.Store, ref string, n int) {
	t.Helper()
	ctx := context.Background()
	w, err := build.NewLogWriter(ctx, s, ref, build.WriterConfig{SpillDir: t.TempDir(), FlushInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(n), Time: time.Now(), Text: fmt.Sprint("line ", n)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// lines is a check that ref has had n lines relayed to sink.
func lines(sink *aggregatortest.MemorySink, ref string, n int) func() error {
	return func() error {
		if recs, _, _ := sink.Received(ref); len(recs) != n {
			return fmt.Errorf("build %s: %d lines relayed, want %d", ref, len(recs), n)
		}
		return nil
	}
}

// TestHealthyStreamBoundsStoreRequests: while the change stream works,
// builds with no output cost at most two store requests each (status and
// chunk listing) per SafetySweepInterval, not two per PollInterval; the
// rest is one discovery listing per PollInterval and the stream's probes.
// And the sweep does happen: every build is read in the window.
func TestHealthyStreamBoundsStoreRequests(t *testing.T) {
	ns := newNotifyingStore(t)
	refs := runningBuilds(t, ns, 40)
	cs := &countingStore{Store: ns}
	sink := aggregatortest.NewMemorySink()
	const (
		poll      = 20 * time.Millisecond
		sweep     = 500 * time.Millisecond
		keepalive = 500 * time.Millisecond
		sweeps    = 4
		perSweep  = 2 // status and chunk listing
	)
	a := aggregator.New(cs, sink, nil, aggregator.Config{PollInterval: poll, SafetySweepInterval: sweep, ChangesKeepalive: keepalive, HeartbeatTimeout: time.Hour, Logger: quiet})
	startWatching(t, a, ns, sink, refs)

	cs.reset()
	start := time.Now()
	// Time passing is what is measured: requests made while nothing
	// changes.
	time.Sleep(sweeps * sweep)
	counts := cs.reset()
	window := time.Since(start)
	if !a.ChangesHealthy() {
		t.Fatal("the stream broke off during the measurement: the test proves nothing")
	}
	// The window may hold one sweep more than it lasts, cut at both ends.
	bound := perSweep * (int(window/sweep) + 1)
	total := 0
	for _, ref := range refs {
		n := counts[ref]
		total += n
		if n > bound {
			t.Errorf("build %s: %d store requests in %v, at most %d allowed (%d per sweep of %v; polling every %v would be %d)",
				ref, n, window.Round(time.Millisecond), bound, perSweep, sweep, poll, perSweep*int(window/poll))
		}
		if n < perSweep {
			t.Errorf("build %s: %d store requests in %v: not swept (every %v)", ref, n, window.Round(time.Millisecond), sweep)
		}
	}
	// Discovery (one listing per pass) and the probes (at most one per
	// half keepalive: the stream is quiet).
	if n, most := counts[""], int(window/poll)+int(2*window/keepalive)+2; n > most {
		t.Errorf("%d requests for no build in %v, at most %d allowed", n, window.Round(time.Millisecond), most)
	}
	t.Logf("%d builds: %d requests for them in %v (%.1f per build per sweep), %d others",
		len(refs), total, window.Round(time.Millisecond), float64(total)/float64(len(refs))/(float64(window)/float64(sweep)), counts[""])
	for ref := range maps.Keys(counts) {
		if ref != "" && !slices.Contains(refs, ref) {
			t.Errorf("requests for %q, which is no build of the test", ref)
		}
	}
}

// TestBrokenStreamResumesPolling: with the sweep an hour apart and hot
// polling off, a line written while the change stream is broken (its
// notification lost) is relayed within a few PollIntervals all the same,
// however the stream broke: it closed, it went silent (noticed after twice
// ChangesKeepalive), or it reported an error. Once it delivers again, it
// carries the relay again.
func TestBrokenStreamResumesPolling(t *testing.T) {
	const (
		poll      = 100 * time.Millisecond
		keepalive = 500 * time.Millisecond
	)
	for _, how := range []string{"closed", "silent", "error"} {
		t.Run(how, func(t *testing.T) {
			ns := newNotifyingStore(t)
			refs := runningBuilds(t, ns, 5)
			sink := aggregatortest.NewMemorySink()
			a := aggregator.New(ns, sink, nil, aggregator.Config{PollInterval: poll, HotPollInterval: -1, SafetySweepInterval: time.Hour,
				ChangesKeepalive: keepalive, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Logger: quiet})
			ctx := startWatching(t, a, ns, sink, refs)

			// Healthy: a line is relayed through its notification.
			writeLine(t, ns, "run-3", 1)
			if err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, lines(sink, "run-3", 1)); err != nil {
				t.Fatalf("healthy stream: %v", err)
			}

			ns.drop.Store(true) // from now on nothing is told
			// Keys told before are on their way, and a key delivered after
			// an error shows the stream working again: let them land. No
			// signal marks the last one.
			time.Sleep(100 * time.Millisecond)
			within := 2 * time.Second
			switch how {
			case "closed":
				ns.disconnect()
			case "silent":
				within += 2 * keepalive
			case "error":
				a.ChangeStreamFailed(errors.New("listen: connection reset"))
			}
			if how != "silent" {
				if err := testenv.WaitFor(ctx, time.Second, time.Millisecond, func() error {
					if a.ChangesHealthy() {
						return errors.New("the stream still counts as healthy")
					}
					return nil
				}); err != nil {
					t.Fatalf("stream %s: %v", how, err)
				}
			}
			writeLine(t, ns, "run-3", 2)
			start := time.Now()
			if err := testenv.WaitFor(ctx, within, 10*time.Millisecond, lines(sink, "run-3", 2)); err != nil {
				t.Fatalf("stream %s: a line whose notification was lost waited for the hour-long sweep: %v", how, err)
			}
			t.Logf("stream %s: the line was relayed %v after it was written (poll %v)", how, time.Since(start).Round(time.Millisecond), poll)
			if a.ChangesHealthy() {
				t.Fatal("the stream counts as healthy while it delivers nothing")
			}

			// The stream works again: it carries the relay again, after
			// every build was looked at once more.
			ns.drop.Store(false)
			if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, func() error {
				if !a.CaughtUp() {
					return errors.New("not healthy again, or not every build visited since")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			writeLine(t, ns, "run-1", 1)
			if err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, lines(sink, "run-1", 1)); err != nil {
				t.Fatalf("stream back: %v", err)
			}
			if how == "closed" && ns.subscribed.Load() < 2 {
				t.Fatalf("%d subscriptions: the closed stream was not subscribed anew", ns.subscribed.Load())
			}
		})
	}
}

// TestLostNotificationIsSwept: a chunk whose notification the stream lost,
// while the stream as such keeps working, is relayed by the safety sweep.
func TestLostNotificationIsSwept(t *testing.T) {
	ns := newNotifyingStore(t)
	refs := runningBuilds(t, ns, 5)
	sink := aggregatortest.NewMemorySink()
	const sweep = 500 * time.Millisecond
	a := aggregator.New(ns, sink, nil, aggregator.Config{PollInterval: 20 * time.Millisecond, HotPollInterval: -1, SafetySweepInterval: sweep,
		ChangesKeepalive: 500 * time.Millisecond, Logger: quiet})
	ctx := startWatching(t, a, ns, sink, refs)
	ns.drop.Store(true)
	writeLine(t, ns, "run-2", 1)
	ns.drop.Store(false)
	start := time.Now()
	if err := testenv.WaitFor(ctx, sweep+2*time.Second, 10*time.Millisecond, lines(sink, "run-2", 1)); err != nil {
		t.Fatalf("a chunk whose notification was lost is not relayed within the sweep (%v): %v", sweep, err)
	}
	t.Logf("relayed %v after it was written (sweep %v)", time.Since(start).Round(time.Millisecond), sweep)
	if !a.ChangesHealthy() {
		t.Fatal("the stream broke off: polling, not the sweep, may have relayed the line")
	}
}

// lockedJobs is fakeJobs safe for a running aggregator.
type lockedJobs struct {
	mu   sync.Mutex
	jobs map[string]job.Build
}

func (l *lockedJobs) States(context.Context) (map[string]job.Build, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.jobs), nil
}

func (l *lockedJobs) Cancel(context.Context, string) (job.Build, error) {
	return job.Build{}, job.ErrNotFound
}

// TestLostRulesOnTimeWithHealthyStream: with the sweep an hour apart, a
// silent worker's build still fails once its heartbeat is HeartbeatTimeout
// old, a build whose Job is gone once MissingGrace has passed, and a
// Scheduling build's log says why its worker pod waits as soon as the Job
// states say so: the rules are checked against what the aggregator last
// read and the Job states, not by reading every build.
func TestLostRulesOnTimeWithHealthyStream(t *testing.T) {
	ns := newNotifyingStore(t)
	refs := []string{"run-1", "run-2", "run-3"} // run-1 loses its Job, run-2 stays healthy, run-3 waits for a node
	start := time.Now()
	for _, ref := range refs {
		st := build.Status{Status: build.Running, Heartbeat: &start}
		if ref == "run-3" {
			st = build.Status{Status: build.Scheduling}
		}
		if _, err := build.WriteStatus(context.Background(), ns, ref, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	jobs := &lockedJobs{jobs: map[string]job.Build{}}
	for _, ref := range []string{"run-0", "run-1", "run-2", "run-3"} {
		jobs.jobs[ref] = job.Build{Ref: ref, Phase: "Running"}
	}
	jobs.jobs["run-3"] = job.Build{Ref: "run-3", Phase: "Pending"}
	sink := aggregatortest.NewMemorySink()
	const (
		timeout = 1500 * time.Millisecond
		grace   = 300 * time.Millisecond
	)
	a := aggregator.New(ns, sink, jobs, aggregator.Config{PollInterval: 20 * time.Millisecond, DiscoverInterval: 50 * time.Millisecond, SafetySweepInterval: time.Hour,
		ChangesKeepalive: 500 * time.Millisecond, HeartbeatTimeout: timeout, MissingGrace: grace, Logger: quiet})
	ctx := startWatching(t, a, ns, sink, refs)
	// run-0 starts now, and its worker goes silent at once (it starts now
	// so that a slow start of the aggregator does not fail it early).
	now := time.Now()
	if _, err := build.WriteStatus(ctx, ns, "run-0", build.Status{Status: build.Running, Heartbeat: &now}, ""); err != nil {
		t.Fatal(err)
	}
	// run-2's worker keeps its heartbeat fresh; run-1's Job goes.
	go func() {
		for ctx.Err() == nil {
			now := time.Now()
			_, _ = build.UpdateStatus(ctx, ns, "run-2", func(st *build.Status) error { st.Heartbeat = &now; return nil })
			time.Sleep(200 * time.Millisecond)
		}
	}()
	const waiting = "waiting for a node: 0/3 nodes are available: 3 Insufficient cpu"
	jobs.mu.Lock()
	delete(jobs.jobs, "run-1")
	jobs.jobs["run-3"] = job.Build{Ref: "run-3", Phase: "Pending", Waiting: waiting}
	jobs.mu.Unlock()
	gone := time.Now()

	failed := func(ref string) func() error {
		return func() error {
			_, st, _ := sink.Received(ref)
			if len(st) < 2 || st[len(st)-1].Status != build.Failed {
				return fmt.Errorf("build %s: statuses relayed %+v, want Running then Failed", ref, st)
			}
			return nil
		}
	}
	st, _, err := build.ReadStatus(ctx, ns, "run-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, time.Until(st.Heartbeat.Add(timeout+2*time.Second)), 10*time.Millisecond, failed("run-0")); err != nil {
		t.Fatalf("a build without heartbeat for HeartbeatTimeout (%v) was not failed in time: %v", timeout, err)
	}
	if _, sts, _ := sink.Received("run-0"); sts[1].FinishedAt.Sub(*st.Heartbeat) < timeout {
		t.Fatalf("run-0 failed %v after its heartbeat, before HeartbeatTimeout %v", sts[1].FinishedAt.Sub(*st.Heartbeat), timeout)
	}
	if err := testenv.WaitFor(ctx, time.Until(gone.Add(grace+2*time.Second)), 10*time.Millisecond, failed("run-1")); err != nil {
		t.Fatalf("a build without its Job for MissingGrace (%v) was not failed in time: %v", grace, err)
	}
	if err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() error {
		recs, _, _ := sink.Received("run-3")
		for _, r := range recs {
			if r.Text == "worker pod "+waiting {
				return nil
			}
		}
		return fmt.Errorf("build run-3: lines relayed %+v, none says why its worker pod waits", recs)
	}); err != nil {
		t.Fatalf("the waiting worker pod was not told: %v", err)
	}
	if _, sts, _ := sink.Received("run-2"); len(sts) != 1 {
		t.Fatalf("the healthy build had statuses %+v relayed, want Running only", sts)
	}
	if !a.ChangesHealthy() {
		t.Fatal("the stream broke off: polling, not the rules, may have failed the builds")
	}
}
