package aggregator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
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
	work := make(chan string)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range work {
				if err := a.relayOnce(ctx, ref); err != nil && !errors.Is(err, errLeaseHeld) {
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

// Run relays continuously until ctx ends, or until IdleExit passed with no
// pending build. Like Once, it refuses an invalid Config.
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
	started, warnedSilent := time.Now(), false
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
		switch {
		case len(refs) > 0:
			idleSince = time.Now()
			_ = a.relayAll(ctx, refs)
		case err != nil, failures > 0, a.chunksWaiting():
			// Not idle: with the store unreachable, builds may be waiting;
			// idleness counts from the first pass that sees nothing. Chunks
			// waiting for deletion are known to this process only.
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
		}
	}
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
		a.mu.Lock()
		refs := make([]string, 0, len(a.hot))
		for ref, last := range a.hot {
			switch {
			case time.Since(last) > a.cfg.HotPollFor:
				delete(a.hot, ref)
			case !a.busy[ref]:
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

// react relays builds as their objects appear. Workers bounds the
// goroutines; a build already being relayed gets one more pass instead.
func (a *Aggregator) react(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	for key := range a.changes(ctx) {
		a.notified.Add(1)
		ref, ok := build.RefOfKey(key)
		if !ok || strings.HasPrefix(key, build.Dir(ref)+"relay/") {
			continue // the aggregator's own writes
		}
		if !a.relaySoon(ctx, sem, ref) {
			return
		}
	}
}

// relaySoon relays ref in a goroutine once sem has room (it bounds the
// goroutines); false means ctx ended first.
func (a *Aggregator) relaySoon(ctx context.Context, sem chan struct{}, ref string) bool {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	go func() {
		defer func() { <-sem }()
		err := a.relayOnce(ctx, ref)
		if errors.Is(err, errLeaseHeld) || errors.Is(err, ErrOtherInstance) {
			a.setHot(ref, false) // another replica relays it
		} else if err != nil && ctx.Err() == nil {
			a.countError(errRelay)
			a.cfg.Logger.Warn("relay failed", "build", ref, "error", err)
		}
	}()
	return true
}

// relayOnce relays ref unless a goroutine of this replica already is; then
// that goroutine makes one more pass, so a change is never missed and a
// build is never relayed twice at once by one replica.
func (a *Aggregator) relayOnce(ctx context.Context, ref string) error {
	a.mu.Lock()
	if a.busy[ref] {
		a.dirty[ref] = true
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
	for {
		if err := a.Relay(ctx, ref); err != nil {
			return err
		}
		a.mu.Lock()
		again := a.dirty[ref]
		delete(a.dirty, ref)
		a.mu.Unlock()
		if !again || ctx.Err() != nil {
			return nil
		}
	}
}
