package aggregator

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// cleanup deletes the Job of a build whose relay is final, when asked to.
func (a *Aggregator) cleanup(ctx context.Context, ref string) {
	if !a.cfg.CleanupJobs || a.jobs == nil {
		return
	}
	a.mu.Lock()
	b, ok := a.states[ref]
	a.mu.Unlock()
	if !ok {
		return
	}
	if _, err := a.jobs.Cancel(ctx, b.WorkerID); err != nil && !errors.Is(err, job.ErrNotFound) {
		a.countError(errCleanup)
		a.cfg.Logger.Warn("clean up the job of a relayed build", "build", ref, "error", err)
	}
}

// chunkWait is a finished build whose chunks are not deleted yet.
type chunkWait struct {
	since    time.Time // when its relay went final
	failures int
}

// dropChunks deletes the log chunks of ref, whose relay is final, once
// log.ndjson holds every one of them; until CompactWait has passed it
// leaves the compaction to the worker and tries again at a later pass.
func (a *Aggregator) dropChunks(ctx context.Context, ref string, w chunkWait) {
	// A worker that was lost never removed its steps' archives.
	if err := build.DeleteStaging(ctx, a.store, ref); err != nil {
		a.cfg.Logger.Warn("cannot delete the steps' archives of a relayed build", "build", ref, "error", err)
	}
	if a.cfg.KeepChunks {
		return
	}
	err := build.DeleteAllChunks(ctx, a.store, ref)
	if errors.Is(err, build.ErrNotCompacted) {
		if time.Since(w.since) < a.cfg.CompactWait {
			err = errNotYet
		} else if _, err = build.Compact(ctx, a.store, ref); err == nil {
			err = build.DeleteAllChunks(ctx, a.store, ref)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil || ctx.Err() != nil:
		delete(a.chunked, ref)
	case errors.Is(err, errNotYet):
		a.chunked[ref] = w
	case w.failures < 2:
		w.failures++
		a.chunked[ref] = w
		a.countError(errCleanup)
	default:
		delete(a.chunked, ref)
		a.countError(errCleanup)
		a.cfg.Logger.Warn("cannot delete the log chunks of a relayed build; they stay beside the compacted log", "build", ref, "error", err)
	}
}

var errNotYet = errors.New("not compacted yet")

func (a *Aggregator) chunksWaiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.chunked) > 0
}

// dropWaitingChunks retries dropChunks for the builds waiting for it.
func (a *Aggregator) dropWaitingChunks(ctx context.Context) {
	a.mu.Lock()
	waiting := make(map[string]chunkWait, len(a.chunked))
	maps.Copy(waiting, a.chunked)
	a.mu.Unlock()
	for ref, w := range waiting {
		if ctx.Err() != nil {
			return
		}
		a.dropChunks(ctx, ref, w)
	}
}
