package aggregator

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// Once relays everything pending and returns when no build has anything
// left to relay now (the CronJob or PingSource mode). Builds still running
// are relayed as far as they got. It refuses to start, returning the
// error, when New got a Config that Validate refuses.
func (a *Aggregator) Once(ctx context.Context) error {
	if a.cfgErr != nil {
		return a.cfgErr
	}
	refs, err := a.Pending(ctx)
	if err != nil {
		return err
	}
	return a.relayAll(ctx, refs)
}

func (a *Aggregator) relayAll(ctx context.Context, refs []string) error {
	return a.visitAll(ctx, refs, visitFull)
}

// visitAll visits refs, Workers at a time, and returns the first error.
func (a *Aggregator) visitAll(ctx context.Context, refs []string, mode visitMode) error {
	work := make(chan string)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range work {
				if err := a.pass(ctx, ref, mode); err != nil && !errors.Is(err, errLeaseHeld) {
					a.countError(errRelay)
					a.cfg.Logger.Warn("relay failed", "build", ref, "error", err)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	for _, ref := range refs {
		select {
		case work <- ref:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// Run relays continuously until ctx ends, until IdleExit passed with no
// pending build, or, after Drain, until no build is pending. Like Once, it
// refuses an invalid Config.
//
// Every PollInterval it discovers the pending builds. Without a working
// change stream it then relays each of them (polling); with one
// (changesHealthy) it visits only those that are due: not looked at
// since the stream last became healthy, their safety sweep due
// (SafetySweepInterval), or a lost-build rule holding by what it last read
// of them. Notifications bring the others as they change.
func (a *Aggregator) Run(ctx context.Context) error {
	if a.cfgErr != nil {
		return a.cfgErr
	}
	// Run returns only once its helpers and the relays they started have
	// stopped, so an exiting function leaves no write half done.
	ctx, stop := context.WithCancel(ctx)
	var helpers sync.WaitGroup
	defer func() {
		stop()
		helpers.Wait()
	}()
	if a.changes != nil {
		helpers.Go(func() { a.react(ctx) })
	}
	if w, ok := a.jobs.(refWatcher); ok {
		helpers.Go(func() { a.watchJobs(ctx, w) })
	}
	if a.cfg.HotPollInterval > 0 && a.cfg.HotPollInterval < a.cfg.PollInterval {
		helpers.Go(func() { a.pollHot(ctx) })
	}
	lastCompare := time.Time{}
	idleSince := time.Now()
	started, warnedSilent, wasHealthy := time.Now(), false, false
	// Failed discoveries back off from PollInterval, with jitter, so
	// replicas do not hammer a store that is coming back; the cap (RetryMax,
	// at most ten polls) bounds how late a recovery is noticed.
	failures := 0
	retry := backoff.Policy{Min: a.cfg.PollInterval, Max: max(min(a.cfg.RetryMax, 10*a.cfg.PollInterval), a.cfg.PollInterval)}
	for {
		if remote, ok := a.sink.(Remote); ok && a.cfg.CompareInterval > 0 && time.Since(lastCompare) >= a.cfg.CompareInterval {
			lastCompare = time.Now()
			if err := a.Compare(ctx, remote); err != nil {
				a.countError(errCompare)
				a.cfg.Logger.Warn("compare with wharf-api", "error", err)
			}
		}
		if !warnedSilent && a.silentChanges(started) {
			warnedSilent = true
			a.cfg.Logger.Warn("the store's change notifications delivered nothing, not even for this aggregator's own writes; relaying at polling speed",
				"writes", a.BatchesRelayed.Load()+a.StatusRelayed.Load(), "since", time.Since(started).Round(time.Second),
				"hint", "MinIO built from master after 2025-10-24 (commit 52eee5a2f) does not flush its listen stream; releases up to RELEASE.2025-10-15T17-29-55Z do")
		}
		a.dropWaitingChunks(ctx)
		refs, err := a.Pending(ctx)
		a.mu.Lock()
		a.discoveryErr = err
		a.mu.Unlock()
		if err != nil {
			a.countError(errDiscovery)
			a.cfg.Logger.Warn("discovery failed", "error", err)
		}
		healthy, since := a.changesHealthy(time.Now())
		if healthy != wasHealthy {
			wasHealthy = healthy
			if healthy {
				a.cfg.Logger.Info("the store's change notifications work: builds are relayed as they change, and each is checked anyway every SAFETY_SWEEP_INTERVAL", "sweep", a.cfg.SafetySweepInterval)
			} else {
				a.cfg.Logger.Warn("the store's change notifications broke off: every build is polled every POLL_INTERVAL until they work again", "poll", a.cfg.PollInterval)
			}
		}
		switch {
		case len(refs) > 0 && healthy:
			idleSince = time.Now()
			_ = a.visitAll(ctx, a.dueBuilds(refs, time.Now(), since), visitSweep)
		case len(refs) > 0:
			idleSince = time.Now()
			_ = a.relayAll(ctx, refs)
		case err != nil, failures > 0:
			// Not idle: with the store unreachable, builds may be waiting;
			// idleness counts from the first pass that sees nothing.
			idleSince = time.Now()
		case a.isDraining():
			// Chunks waiting for their compaction are left: they stay
			// beside the compacted log, nothing is lost.
			a.cfg.Logger.Info("drained: nothing left to relay, exiting")
			return nil
		case a.chunksWaiting():
			// Not idle either: chunks waiting for deletion are known to
			// this process only.
			idleSince = time.Now()
		case a.cfg.IdleExit > 0 && time.Since(idleSince) > a.cfg.IdleExit:
			a.cfg.Logger.Info("idle, exiting", "idle", a.cfg.IdleExit)
			return nil
		}
		wait := a.cfg.PollInterval
		if err != nil {
			wait = retry.Delay(failures)
			failures++
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		case <-a.drainStarted():
		}
	}
}

// Drain makes Run return at its first pass that finds no build to relay,
// instead of running until its context ends; the command calls it on
// SIGTERM and cancels Run's context after DrainTimeout.
func (a *Aggregator) Drain() { a.drainOnce.Do(func() { close(a.draining) }) }

// DrainTimeout is how long the command lets Run drain after SIGTERM
// (Config.DrainTimeout with its default); not positive: no drain.
func (a *Aggregator) DrainTimeout() time.Duration { return a.cfg.DrainTimeout }

func (a *Aggregator) isDraining() bool {
	select {
	case <-a.draining:
		return true
	default:
		return false
	}
}

// drainStarted wakes Run's wait when Drain is called during it, so a
// scale-in with nothing pending exits at once; once draining, Run waits
// its whole interval between passes (a nil channel never fires).
func (a *Aggregator) drainStarted() <-chan struct{} {
	if a.isDraining() {
		return nil
	}
	return a.draining
}

// silentChanges is true when a change stream is set up but has delivered
// nothing, although this aggregator wrote cursors for at least ten
// deliveries and ran for SilentChangesAfter: every cursor write is an object
// created, so a working stream would have reported some.
func (a *Aggregator) silentChanges(started time.Time) bool {
	return a.changes != nil && a.notified.Load() == 0 &&
		a.BatchesRelayed.Load()+a.StatusRelayed.Load() >= 10 && time.Since(started) >= a.cfg.SilentChangesAfter
}

// pollHot relays the builds that are writing output every
// HotPollInterval. Without bucket notifications a chunk would otherwise
// wait up to a whole PollInterval after it landed.
func (a *Aggregator) pollHot(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	t := time.NewTicker(a.cfg.HotPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A working change stream brings each new chunk at once: hot
		// builds then cool without being polled.
		healthy, _ := a.changesHealthy(time.Now())
		a.mu.Lock()
		refs := make([]string, 0, len(a.hot))
		for ref, last := range a.hot {
			switch {
			case time.Since(last) > a.cfg.HotPollFor:
				delete(a.hot, ref)
			case !healthy && !a.busy[ref]:
				refs = append(refs, ref)
			}
		}
		a.mu.Unlock()
		for _, ref := range refs {
			if !a.relaySoon(ctx, sem, ref) {
				return
			}
		}
	}
}

// drain waits for the relays holding slots of sem to finish.
func drain(sem chan struct{}) {
	for range cap(sem) {
		sem <- struct{}{}
	}
}

// setHot records that ref delivered something now (hot), or that it is
// done with or not ours to poll (not hot).
func (a *Aggregator) setHot(ref string, hot bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if hot {
		a.hot[ref] = time.Now()
	} else {
		delete(a.hot, ref)
	}
}

// relaySoon relays ref in a goroutine once sem has room (it bounds the
// goroutines); false means ctx ended first.
func (a *Aggregator) relaySoon(ctx context.Context, sem chan struct{}, ref string) bool {
	return a.visitSoon(ctx, sem, ref, visitFull)
}

// visitSoon is relaySoon with a visitMode.
func (a *Aggregator) visitSoon(ctx context.Context, sem chan struct{}, ref string, mode visitMode) bool {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	go func() {
		defer func() { <-sem }()
		err := a.pass(ctx, ref, mode)
		if errors.Is(err, errLeaseHeld) || errors.Is(err, ErrOtherInstance) {
			a.setHot(ref, false) // another replica relays it
		} else if err != nil && ctx.Err() == nil {
			a.countError(errRelay)
			a.cfg.Logger.Warn("relay failed", "build", ref, "error", err)
		}
	}()
	return true
}

// visitMode is how much a visit of a build reads before it relays.
type visitMode int

const (
	// visitFull relays at once (Relay).
	visitFull visitMode = iota
	// visitSweep peeks at the status and the chunks first and relays only
	// when something is new or a lost rule holds.
	visitSweep
	// visitStatus peeks at the status only: a status.json notification,
	// most often a heartbeat, which changes nothing to relay. New chunks
	// come with their own notifications.
	visitStatus
)

// pass visits ref as mode says, unless a goroutine of this replica is
// already at it: then that goroutine makes one more (full) pass, so a
// change is never missed and a build is never relayed twice at once by one
// replica. A sweep that finds the build busy is skipped: the busy pass
// looks at it anyway.
func (a *Aggregator) pass(ctx context.Context, ref string, mode visitMode) error {
	a.mu.Lock()
	if a.busy[ref] {
		if mode != visitSweep {
			a.dirty[ref] = true
		}
		a.mu.Unlock()
		return nil
	}
	a.busy[ref] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.busy, ref)
		a.mu.Unlock()
	}()
	if mode != visitFull {
		need, err := a.peek(ctx, ref, mode)
		if err != nil {
			a.missedVisit(ref)
			return err
		}
		if !need && !a.takeDirty(ref) {
			return nil
		}
	}
	for {
		if err := a.Relay(ctx, ref); err != nil {
			return err
		}
		if !a.takeDirty(ref) || ctx.Err() != nil {
			return nil
		}
	}
}

// takeDirty reports whether ref changed during its pass, and clears that.
func (a *Aggregator) takeDirty(ref string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	again := a.dirty[ref]
	delete(a.dirty, ref)
	return again
}

// The change stream. MinIO's bucket notifications tell of each object
// created, but nothing tells that they stopped: the listen request can
// close, or hang, or reconnect and lose what was created meanwhile. So the
// stream counts as healthy only while it delivers: any key will do (the
// aggregator's own cursor writes included), and while nothing else comes
// the aggregator writes a probe object every half ChangesKeepalive, so a
// healthy stream delivers at least that. After twice that long without a
// key, or when the stream closes (or ChangeStreamFailed is called), it is
// broken: Run polls every build every PollInterval, as without a stream,
// and the stream is subscribed anew. Once it delivers again, every build
// is visited once more before the stream is trusted with it (a change in
// between may have been lost), then Run goes back to sweeping.

// probeKey is the object the aggregator writes to hear from a quiet change
// stream. It is under builds/ (what the stream watches) but names no build:
// a ref never starts with '.'.
var probeKey = build.Root + ".relay-probe"

// watchState is the change stream's health and what the aggregator last
// saw of each build, under a.mu.
type watchState struct {
	// open is set while a subscription runs.
	open bool
	// since is when the stream delivered its first key after it was last
	// subscribed or broken (zero: it has not yet), last its latest key.
	since, last time.Time
	// seen holds, by build, the last visit that read both its status and
	// its chunks, and the last status read.
	seen map[string]seenBuild
	// queue holds the builds notifications named, in order, each once, and
	// how to visit each; wake tells dispatch there is one.
	queue  []string
	queued map[string]visitMode
	wake   chan struct{}
}

func newWatchState() watchState {
	return watchState{seen: map[string]seenBuild{}, queued: map[string]visitMode{}, wake: make(chan struct{}, 1)}
}

// seenBuild is what the aggregator last saw of a build.
type seenBuild struct {
	// at is when the last visit that read the status and the chunks
	// started (zero: due at once, the last visit failed).
	at time.Time
	// status is the last status read, steps left out; known is set once
	// one was read.
	status build.Status
	known  bool
}

// changesHealthy reports whether the change stream works (see above) and
// since when.
func (a *Aggregator) changesHealthy(now time.Time) (bool, time.Time) {
	if a.changes == nil || a.cfg.SafetySweepInterval < 0 {
		return false, time.Time{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := &a.watch
	return w.open && !w.since.IsZero() && now.Sub(w.last) < 2*a.cfg.ChangesKeepalive, w.since
}

// ChangeStreamFailed tells the aggregator that its change stream reported
// an error (minio.Store.Watch's errs callback): notifications may have been
// lost, so it polls every build until the stream delivers again, then
// visits each once more.
func (a *Aggregator) ChangeStreamFailed(err error) {
	a.mu.Lock()
	broken := !a.watch.since.IsZero()
	a.watch.since = time.Time{}
	a.mu.Unlock()
	if broken {
		a.cfg.Logger.Debug("change stream error: polling until it delivers again", "error", err)
	}
}

// streamState records a subscription starting or ending: both mean no
// key has come since.
func (a *Aggregator) streamState(open bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.watch.open, a.watch.since = open, time.Time{}
}

// react follows the change stream and queues the builds it names;
// dispatch relays them. The stream is read without waiting for relays, so
// a busy aggregator neither misses keys nor takes itself for a broken
// stream. A stream that ends or goes quiet is subscribed anew, with
// backoff (RetryMin to RetryMax) while it delivers nothing.
func (a *Aggregator) react(ctx context.Context) {
	var helpers sync.WaitGroup
	defer helpers.Wait()
	helpers.Go(func() { a.dispatch(ctx) })
	retry := backoff.Policy{Min: a.cfg.RetryMin, Max: a.cfg.RetryMax}
	for failures := 0; ; {
		sub, cancel := context.WithCancel(ctx)
		a.streamState(true)
		delivered := a.follow(ctx, a.changes(sub), &helpers)
		cancel()
		a.streamState(false)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			failures = 0
		}
		if retry.Sleep(ctx, failures) != nil {
			return
		}
		failures++
	}
}

// follow reads one subscription until it closes, ctx ends, or (when
// sweeping is on) it stays quiet for twice ChangesKeepalive in spite of
// the probes, written when it has been quiet for half of that; it reports
// whether it delivered anything.
func (a *Aggregator) follow(ctx context.Context, keys <-chan string, probes *sync.WaitGroup) bool {
	sweeping := a.cfg.SafetySweepInterval > 0
	k := a.cfg.ChangesKeepalive
	tick := time.NewTicker(max(k/4, time.Millisecond))
	defer tick.Stop()
	var probing atomic.Bool
	delivered, last := false, time.Now()
	for {
		select {
		case <-ctx.Done():
			return delivered
		case key, ok := <-keys:
			if !ok {
				return delivered
			}
			delivered, last = true, time.Now()
			a.notified.Add(1)
			a.mu.Lock()
			if a.watch.since.IsZero() {
				a.watch.since = last
			}
			a.watch.last = last
			a.mu.Unlock()
			ref, ok := build.RefOfKey(key)
			if !ok || strings.HasPrefix(key, build.Dir(ref)+"relay/") {
				continue // the aggregator's own writes, the probe
			}
			mode := visitFull
			if key == build.StatusKey(ref) && sweeping {
				mode = visitStatus
			}
			a.enqueue(ref, mode)
		case now := <-tick.C:
			if !sweeping {
				continue // the stream is not relied on: no need to know
			}
			quiet := now.Sub(last)
			if quiet >= 2*k {
				a.cfg.Logger.Debug("change stream quiet in spite of probes; subscribing anew", "quiet", quiet.Round(time.Millisecond))
				return delivered
			}
			if quiet >= k/2 && probing.CompareAndSwap(false, true) {
				probes.Go(func() {
					defer probing.Store(false)
					a.probe(ctx)
				})
			}
		}
	}
}

// probe writes probeKey, so that a working change stream has something to
// deliver.
func (a *Aggregator) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ChangesKeepalive)
	defer cancel()
	body := []byte(a.cfg.Holder + " " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	if _, err := a.store.Put(ctx, probeKey, bytes.NewReader(body), int64(len(body)), blob.PutOptions{ContentType: "text/plain"}); err != nil && ctx.Err() == nil {
		a.cfg.Logger.Debug("write the change stream's probe", "error", err)
	}
}

// enqueue queues ref for dispatch; a build already queued stays in its
// place, visited fully if either asks for it.
func (a *Aggregator) enqueue(ref string, mode visitMode) {
	a.mu.Lock()
	w := &a.watch
	if old, ok := w.queued[ref]; !ok {
		w.queue = append(w.queue, ref)
		w.queued[ref] = mode
	} else if mode < old {
		w.queued[ref] = mode
	}
	a.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// dispatch visits the queued builds, Workers at a time.
func (a *Aggregator) dispatch(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	for {
		a.mu.Lock()
		w := &a.watch
		var ref string
		var mode visitMode
		if len(w.queue) > 0 {
			ref, w.queue = w.queue[0], w.queue[1:]
			mode = w.queued[ref]
			delete(w.queued, ref)
			if len(w.queue) == 0 {
				w.queue = nil // let the array go
			}
		}
		a.mu.Unlock()
		if ref == "" {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		if !a.visitSoon(ctx, sem, ref, mode) {
			return
		}
	}
}

// dueBuilds are the refs a healthy stream does not cover by itself: those
// not looked at since the stream became healthy (since), or whose last
// visit failed, or whose sweep is due, or on which a relay pass would act
// by the status last read and the Job states (kept in memory): a lost rule
// holds (a heartbeat too old, a Job gone, failed or stuck), or the worker
// pod's wait has news to tell. So these fire on time without a read per
// build.
func (a *Aggregator) dueBuilds(refs []string, now, since time.Time) []string {
	var due []string
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ref := range refs {
		s, ok := a.watch.seen[ref]
		switch {
		case !ok || s.at.Before(since) || s.at.Before(a.sweepSlot(ref, now)):
		case s.known && a.actOnLocked(ref, s.status, a.jobOfLocked(ref), now):
		default:
			continue
		}
		due = append(due, ref)
	}
	return due
}

// actOnLocked reports whether a relay pass would act on a build with
// status st and Job jv although nothing new was written: a lost rule holds
// (failIfLost), or its worker pod waits for a reason not yet told in its
// log (tellWaiting). The caller holds a.mu.
func (a *Aggregator) actOnLocked(ref string, st build.Status, jv jobView, now time.Time) bool {
	if lostReason(st, jv, now, a.cfg) != "" {
		return true
	}
	return st.Status == build.Scheduling && jv.has && jv.job.Waiting != "" && a.waitTold[ref] != jv.job.Waiting
}

// jobOfLocked is jobOf for a caller holding a.mu.
func (a *Aggregator) jobOfLocked(ref string) jobView {
	b, has := a.states[ref]
	return jobView{listed: a.statesOK && a.jobs != nil, has: has, job: b}
}

// sweepSlot is the latest time, at or before now, at which ref's sweep
// fell due: every SafetySweepInterval, at a phase taken from a hash of the
// ref, so the sweeps of many builds spread evenly instead of coming
// together.
func (a *Aggregator) sweepSlot(ref string, now time.Time) time.Time {
	iv := int64(a.cfg.SafetySweepInterval)
	h := fnv.New64a()
	_, _ = h.Write([]byte(ref))
	phase := int64(h.Sum64() % uint64(iv))
	n := now.UnixNano() - phase
	return time.Unix(0, n-n%iv+phase)
}

// noteVisit records a visit of ref that started at start: with swept, one
// that read its status and its chunks; st is the status it read, if any.
func (a *Aggregator) noteVisit(ref string, start time.Time, st *build.Status, swept bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.watch.seen[ref]
	if swept && start.After(s.at) {
		s.at = start
	}
	if st != nil {
		s.status = build.Status{Ref: st.Ref, Status: st.Status, Reason: st.Reason, UpdatedAt: st.UpdatedAt, Heartbeat: st.Heartbeat}
		s.known = true
	}
	a.watch.seen[ref] = s
}

// missedVisit makes ref due at the next pass of Run: its visit failed.
func (a *Aggregator) missedVisit(ref string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.watch.seen[ref]; ok {
		s.at = time.Time{}
		a.watch.seen[ref] = s
	}
}
