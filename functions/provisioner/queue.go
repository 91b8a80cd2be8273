package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// Queuer is what a launcher that queues builds offers (kube.Launcher):
// its queue, and the release of builds into free slots.
type Queuer interface {
	Queue(ctx context.Context) (job.Queue, error)
	ReleaseQueued(ctx context.Context) ([]string, error)
	Cancel(ctx context.Context, workerID string) (job.Build, error)
}

// Queue releases queued builds and tells each one, in its log, where it
// stands: wharf-web shows the log, so people waiting see why ("queued: 2
// builds ahead"), as it changes. A build that waits longer than Timeout is
// failed with reason QueueTimeout and its Job deleted.
type Queue struct {
	Launcher Queuer
	Store    blob.Store
	// Timeout bounds the wait in the queue; 0 is no bound.
	Timeout time.Duration
	// StoreTimeout bounds each store call.
	StoreTimeout time.Duration
	Logger       *slog.Logger

	mu sync.Mutex
	// told is the last position written to each queued build's log, so
	// a line is written only when it changes.
	told map[string]int
}

// Pass releases what can run, then writes the position of every build
// still queued whose position changed and fails those past Timeout.
func (q *Queue) Pass(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	before, err := q.Launcher.Queue(ctx)
	if err != nil {
		return err
	}
	released, err := q.Launcher.ReleaseQueued(ctx)
	for _, id := range released {
		for _, b := range before.Queued {
			if b.WorkerID == id {
				q.line(ctx, b.Ref, "released from the queue: starting")
				delete(q.told, b.Ref)
			}
		}
		q.logger().Info("queued build released", "workerId", id)
	}
	if err != nil {
		return err
	}
	if len(released) == 0 && len(before.Queued) == 0 {
		return nil
	}
	after, err := q.Launcher.Queue(ctx)
	if err != nil {
		return err
	}
	q.tell(ctx, after, "")
	return nil
}

// Announce writes the position of one build just queued, so its log says
// why it waits from its first line.
func (q *Queue) Announce(ctx context.Context, ref string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	state, err := q.Launcher.Queue(ctx)
	if err != nil {
		q.logger().Warn("cannot read the queue", "build", ref, "error", err)
		return
	}
	q.tell(ctx, state, ref)
}

// tell writes the changed positions (of only ref, when it is set) and
// fails the builds that waited too long.
func (q *Queue) tell(ctx context.Context, state job.Queue, ref string) {
	if q.told == nil {
		q.told = map[string]int{}
	}
	queued := map[string]bool{}
	now := time.Now()
	for i, b := range state.Queued {
		queued[b.Ref] = true
		if ref != "" && b.Ref != ref {
			continue
		}
		waited := now.Sub(b.CreatedAt)
		if q.Timeout > 0 && waited > q.Timeout {
			q.expire(ctx, b, waited, i)
			continue
		}
		if told, ok := q.told[b.Ref]; ok && told == i {
			continue
		}
		q.told[b.Ref] = i
		q.line(ctx, b.Ref, position(state, i))
	}
	if ref == "" {
		for r := range q.told {
			if !queued[r] {
				delete(q.told, r)
			}
		}
	}
}

// position is the line that tells a build at index i where it stands.
func position(state job.Queue, i int) string {
	if state.Kueue != "" {
		return fmt.Sprintf("queued: waiting for Kueue to admit the build (queue %s)", state.Kueue)
	}
	ahead := "no build ahead of this one"
	switch i {
	case 0:
	case 1:
		ahead = "1 build ahead of this one"
	default:
		ahead = fmt.Sprintf("%d builds ahead of this one", i)
	}
	return fmt.Sprintf("queued: %s, %d of %d builds running (WHARFJOBS_MAX_RUNNING_BUILDS)", ahead, state.Running, state.Max)
}

// expire fails a build that waited past Timeout: status first (so the
// aggregator never sees its Job gone while the build is not final), then
// its Job.
func (q *Queue) expire(ctx context.Context, b job.Build, waited time.Duration, i int) {
	reason := build.ReasonQueueTimeout.Withf("waited %s in the queue (%d ahead of it), longer than WHARFJOBS_QUEUE_TIMEOUT=%s",
		waited.Round(time.Second), i, q.Timeout)
	sctx, cancel := context.WithTimeout(ctx, q.storeTimeout())
	defer cancel()
	q.line(ctx, b.Ref, "build failed: "+reason)
	now := time.Now().UTC()
	_, err := build.UpdateStatus(sctx, q.Store, b.Ref, func(st *build.Status) error {
		if st.Status.Final() {
			return build.ErrNoChange
		}
		st.Status, st.Reason, st.FinishedAt = build.Failed, reason, &now
		return nil
	})
	if err != nil {
		q.logger().Error("cannot record a queue timeout", "build", b.Ref, "error", err)
		return
	}
	if _, err := q.Launcher.Cancel(ctx, b.WorkerID); err != nil && !errors.Is(err, job.ErrNotFound) {
		q.logger().Warn("cannot delete the Job of a build that timed out in the queue", "build", b.Ref, "error", err)
	}
	delete(q.told, b.Ref)
	q.logger().Info("queued build timed out", "build", b.Ref, "waited", waited.Round(time.Second))
}

func (q *Queue) line(ctx context.Context, ref, text string) {
	sctx, cancel := context.WithTimeout(ctx, q.storeTimeout())
	defer cancel()
	if err := build.WriteSystemLine(sctx, q.Store, ref, text, q.logger()); err != nil {
		q.logger().Warn("cannot write a queue line", "build", ref, "error", err)
	}
}

func (q *Queue) storeTimeout() time.Duration {
	if q.StoreTimeout > 0 {
		return q.StoreTimeout
	}
	return 30 * time.Second
}

func (q *Queue) logger() *slog.Logger {
	if q.Logger != nil {
		return q.Logger
	}
	return slog.Default()
}
