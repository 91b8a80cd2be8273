package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// Pending lists the builds whose relay is not final: those with a Job,
// plus those in the store whose cursor is not final (so logs written after
// a Job disappeared are still relayed).
func (a *Aggregator) Pending(ctx context.Context) ([]string, error) {
	refs := map[string]bool{}
	if a.jobs != nil {
		states, err := a.jobStates(ctx, false)
		if err != nil {
			return nil, err
		}
		for ref := range states {
			refs[ref] = true
		}
	}
	err := blob.ListAll(ctx, a.store, blob.ListOptions{Prefix: build.Root, Delimited: true}, func(info blob.Info) error {
		if ref, ok := build.RefOfKey(info.Key); ok && info.IsPrefix {
			refs[ref] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover builds: %w", err)
	}
	var out []string
	for ref := range refs {
		a.mu.Lock()
		final := a.finals[ref]
		_, held := a.leases[ref]
		a.mu.Unlock()
		if final {
			continue
		}
		if !held {
			c, _, err := readCursor(ctx, a.store, ref)
			if err != nil {
				return nil, err
			}
			if c.Final {
				a.mu.Lock()
				a.finals[ref] = true
				a.mu.Unlock()
				continue
			}
		}
		if ours, err := a.ours(ctx, ref); err != nil {
			return nil, err
		} else if !ours {
			continue // another wharf-api's build: its own aggregator relays it
		}
		out = append(out, ref)
	}
	sort.Strings(out)
	return out, nil
}

// jobStates returns the build Jobs, listing them anew when the last full
// listing is older than DiscoverInterval (or fresh is set: a watch event
// said something changed).
func (a *Aggregator) jobStates(ctx context.Context, fresh bool) (map[string]job.Build, error) {
	a.mu.Lock()
	states, ok := a.states, a.statesOK && time.Since(a.listed) < a.cfg.DiscoverInterval
	a.mu.Unlock()
	if ok && !fresh {
		return states, nil
	}
	states, err := a.jobs.States(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.statesOK = false
		return nil, fmt.Errorf("list build jobs: %w", err)
	}
	a.states, a.statesOK, a.listed = states, true, time.Now()
	return states, nil
}

// refWatcher is a Jobs that can watch (kube.Launcher).
type refWatcher interface {
	WatchRefs(ctx context.Context) <-chan string
}

// watchJobs relays a build as soon as its Job changes (it ended, failed,
// vanished), with the Job states read anew first.
func (a *Aggregator) watchJobs(ctx context.Context, w refWatcher) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	for ref := range w.WatchRefs(ctx) {
		if build.ValidateRef(ref) != nil {
			continue
		}
		if _, err := a.jobStates(ctx, true); err != nil {
			a.countError(errDiscovery)
			a.cfg.Logger.Warn("list build jobs", "error", err)
			continue
		}
		if !a.relaySoon(ctx, sem, ref) {
			return
		}
	}
}

// requestInfo is what the aggregator needs of a build's request.json.
type requestInfo struct {
	id, instance string
}

// buildID is wharf-api's id of a build, from its request.json; the ref
// when there is none.
func (a *Aggregator) buildID(ctx context.Context, ref string) string {
	info, _ := a.request(ctx, ref)
	return info.id
}

// ours reports whether ref is a build of this aggregator's instance, by the
// instance in its request.json (a build without one has no instance).
func (a *Aggregator) ours(ctx context.Context, ref string) (bool, error) {
	info, err := a.request(ctx, ref)
	if err != nil {
		return false, err
	}
	return info.instance == a.cfg.WharfInstance, nil
}

// request reads the build's request.json once (it never changes) and
// caches what the relay needs of it.
func (a *Aggregator) request(ctx context.Context, ref string) (requestInfo, error) {
	a.mu.Lock()
	info, ok := a.ids[ref]
	a.mu.Unlock()
	if ok {
		return info, nil
	}
	info = requestInfo{id: ref}
	raw, _, err := blob.ReadAll(ctx, a.store, build.RequestKey(ref), 1<<20)
	switch {
	case err == nil:
		var req job.Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return info, fmt.Errorf("decode request of build %s: %w", ref, err)
		}
		if req.BuildRef != "" {
			info.id = req.BuildRef
		}
		info.instance = req.Instance
	case !errors.Is(err, blob.ErrNotFound):
		return info, fmt.Errorf("read request of build %s: %w", ref, err)
	}
	a.mu.Lock()
	a.ids[ref] = info
	a.mu.Unlock()
	return info, nil
}
