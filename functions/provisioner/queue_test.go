package provisioner_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job"
)

// fakeQueue is a queue of builds with slots, released in order.
type fakeQueue struct {
	queued    []job.Build
	running   int
	max       int
	cancelled []string
}

func (f *fakeQueue) Queue(context.Context) (job.Queue, error) {
	return job.Queue{Queued: append([]job.Build(nil), f.queued...), Running: f.running, Max: f.max}, nil
}

func (f *fakeQueue) ReleaseQueued(context.Context) ([]string, error) {
	var out []string
	for len(f.queued) > 0 && f.running < f.max {
		out = append(out, f.queued[0].WorkerID)
		f.queued, f.running = f.queued[1:], f.running+1
	}
	return out, nil
}

func (f *fakeQueue) Cancel(_ context.Context, id string) (job.Build, error) {
	f.cancelled = append(f.cancelled, id)
	for i, b := range f.queued {
		if b.WorkerID == id {
			f.queued = append(f.queued[:i], f.queued[i+1:]...)
			return b, nil
		}
	}
	return job.Build{}, job.ErrNotFound
}

func systemLines(t *testing.T, s blob.Store, ref string) []string {
	t.Helper()
	rc, err := build.OpenLog(context.Background(), s, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	if err := build.ScanRecords(rc, func(r build.Record) error { out = append(out, r.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Each queued build's log says where it stands when it is queued and
// again only when that changes; a released build is told so; one queued
// past the timeout is Failed with QueueTimeout and its Job deleted.
func TestQueueTellsPositionsAndTimesOut(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	f := &fakeQueue{running: 2, max: 2}
	for i, ref := range []string{"a", "b", "c"} {
		f.queued = append(f.queued, job.Build{Ref: ref, WorkerID: "wharf-build-" + ref, CreatedAt: now.Add(time.Duration(i) * time.Second), Queued: true})
		if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Scheduling, Reason: "Queued"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	q := &provisioner.Queue{Launcher: f, Store: s, Timeout: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	for _, ref := range []string{"a", "b", "c"} {
		q.Announce(ctx, ref)
	}
	// Nothing changed: no new lines.
	if err := q.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	// A slot frees: a is released, b and c move up.
	f.running = 1
	if err := q.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"a": {"queued: no build ahead of this one, 2 of 2 builds running (WHARFJOBS_MAX_RUNNING_BUILDS)", "released from the queue: starting"},
		"b": {"queued: 1 build ahead of this one, 2 of 2 builds running (WHARFJOBS_MAX_RUNNING_BUILDS)",
			"queued: no build ahead of this one, 2 of 2 builds running (WHARFJOBS_MAX_RUNNING_BUILDS)"},
		"c": {"queued: 2 builds ahead of this one, 2 of 2 builds running (WHARFJOBS_MAX_RUNNING_BUILDS)",
			"queued: 1 build ahead of this one, 2 of 2 builds running (WHARFJOBS_MAX_RUNNING_BUILDS)"},
	}
	for ref, lines := range want {
		if got := systemLines(t, s, ref); strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("build %s lines:\n%s\nwant:\n%s", ref, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}

	// c has waited past the timeout: Failed, told why, its Job deleted;
	// b, within it, waits on.
	q.Timeout = 1500 * time.Millisecond
	f.queued[1].CreatedAt = now.Add(-2 * time.Second)
	if err := q.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	st, _, _ := build.ReadStatus(ctx, s, "c")
	if st.Status != build.Failed || !build.ReasonQueueTimeout.Of(st.Reason) || !strings.Contains(st.Reason, "(1 ahead of it)") {
		t.Errorf("c: %+v", st)
	}
	if got := systemLines(t, s, "c"); !strings.HasPrefix(got[len(got)-1], "build failed: QueueTimeout: waited 2s in the queue") {
		t.Errorf("c lines %q", got)
	}
	if len(f.cancelled) != 1 || f.cancelled[0] != "wharf-build-c" {
		t.Errorf("cancelled %v", f.cancelled)
	}
	if st, _, _ := build.ReadStatus(ctx, s, "b"); st.Status != build.Scheduling {
		t.Errorf("b: %+v", st)
	}
}

// With Kueue the line says the build waits for Kueue's admission.
func TestQueueKueueLine(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx := context.Background()
	f := kueueQueue{&fakeQueue{queued: []job.Build{{Ref: "k", WorkerID: "wharf-build-k", CreatedAt: time.Now(), Queued: true}}}}
	q := &provisioner.Queue{Launcher: f, Store: s, Logger: slog.New(slog.DiscardHandler)}
	q.Announce(ctx, "k")
	if got := systemLines(t, s, "k"); len(got) != 1 || got[0] != "queued: waiting for Kueue to admit the build (queue ci)" {
		t.Errorf("lines %q", got)
	}
}

type kueueQueue struct{ *fakeQueue }

func (k kueueQueue) Queue(ctx context.Context) (job.Queue, error) {
	q, err := k.fakeQueue.Queue(ctx)
	q.Kueue = "ci"
	return q, err
}
