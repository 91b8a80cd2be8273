package aggregator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
)

type fakeJobs map[string]job.Build

func (f fakeJobs) States(context.Context) (map[string]job.Build, error) { return f, nil }

func (f fakeJobs) Cancel(_ context.Context, id string) (job.Build, error) {
	for ref, b := range f {
		if b.WorkerID == id {
			delete(f, ref)
			return b, nil
		}
	}
	return job.Build{}, job.ErrNotFound
}

func TestMissingBuildsAreFailedWithAReason(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx := context.Background()
	for _, ref := range []string{"gone", "stuck", "deadline", "healthy", "exited"} {
		writeBuild(t, s, ref, 5, "", nil)
	}
	stale := time.Now().Add(-10 * time.Minute)
	writeBuild(t, s, "silent", 5, "", nil)
	build.UpdateStatus(ctx, s, "silent", func(st *build.Status) error { st.Heartbeat = &stale; return nil })
	fresh := time.Now()
	build.UpdateStatus(ctx, s, "healthy", func(st *build.Status) error { st.Heartbeat = &fresh; return nil })
	// A step was running when the worker went: it must not stay Running.
	build.UpdateStatus(ctx, s, "exited", func(st *build.Status) error {
		st.Steps = []build.StepStatus{{Stage: "build", Step: "compile", Status: build.Running}, {Stage: "build", Step: "lint", Status: build.Completed}}
		return nil
	})
	jobs := fakeJobs{
		"stuck":    {Ref: "stuck", Phase: "Scheduling", Stuck: "ImagePullBackOff: wharfjobs:nope"},
		"deadline": {Ref: "deadline", Phase: "Failed", Reason: "DeadlineExceeded"},
		"exited":   {Ref: "exited", Phase: "Completed"},
		"healthy":  {Ref: "healthy", Phase: "Running"},
		"silent":   {Ref: "silent", Phase: "Running"},
	}
	sink := aggregatortest.NewMemorySink()
	// Rule 1 fails a build without a Job once its status is older than
	// MissingGrace: wait for that age, read from the status itself.
	const grace = 10 * time.Millisecond
	if err := testenv.WaitFor(ctx, 5*time.Second, 5*time.Millisecond, func() error {
		st, _, err := build.ReadStatus(ctx, s, "gone")
		if err != nil {
			return err
		}
		if age := time.Since(st.UpdatedAt); age <= grace {
			return fmt.Errorf("build gone: status %v old, not past MissingGrace %v", age, grace)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a := aggregator.New(s, sink, jobs, aggregator.Config{MissingGrace: grace, HeartbeatTimeout: time.Minute, Logger: quiet})
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"gone":     "WorkerLost: the build's Job is gone",
		"stuck":    "ImagePullBackOff: wharfjobs:nope",
		"deadline": "DeadlineExceeded",
		"exited":   "WorkerLost: the worker exited without recording a final status",
		"silent":   "WorkerLost: no heartbeat since",
	}
	for ref, reason := range want {
		st, _, _ := build.ReadStatus(ctx, s, ref)
		if st.Status != build.Failed || !strings.HasPrefix(st.Reason, reason) {
			t.Errorf("%s: status %s reason %q, want Failed %q", ref, st.Status, st.Reason, reason)
		}
		lines, statuses, _ := sink.Received(ref)
		if len(statuses) == 0 || statuses[len(statuses)-1].Status != build.Failed {
			t.Errorf("%s: sink statuses %+v", ref, statuses)
		}
		if last := lines[len(lines)-1]; last.Stream != build.StreamSystem || !strings.Contains(last.Text, reason) {
			t.Errorf("%s: last line %+v does not say why", ref, last)
		}
	}
	if st, _, _ := build.ReadStatus(ctx, s, "exited"); st.Steps[0].Status != build.Failed || !strings.HasPrefix(st.Steps[0].Reason, "WorkerLost") || st.Steps[1].Status != build.Completed {
		t.Errorf("steps of a lost build: %+v", st.Steps)
	}
	if st, _, _ := build.ReadStatus(ctx, s, "healthy"); st.Status != build.Running {
		t.Fatalf("a healthy build was failed: %+v", st)
	}
}

// remoteSink is a memory sink that also lists wharf-api's active builds.
type remoteSink struct {
	*aggregatortest.MemorySink
	active []aggregator.RemoteBuild
}

func (r remoteSink) ActiveBuilds(context.Context) ([]aggregator.RemoteBuild, error) {
	return r.active, nil
}

func TestCompareFailsBuildsWharfAPIStartedButWeNeverGot(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx := context.Background()
	writeBuild(t, s, "prod-6", 2, "", nil)
	old := time.Now().Add(-time.Hour)
	sink := remoteSink{MemorySink: aggregatortest.NewMemorySink(), active: []aggregator.RemoteBuild{
		{ID: "5", Status: "Scheduling", ScheduledOn: old},
		{ID: "6", Status: "Running", ScheduledOn: old},
		{ID: "7", Status: "Scheduling", ScheduledOn: time.Now()},
	}}
	a := aggregator.New(s, sink, nil, aggregator.Config{WharfInstance: "prod", TriggerGrace: time.Minute, Logger: quiet})
	if err := a.Compare(ctx, sink); err != nil {
		t.Fatal(err)
	}
	st, _, err := build.ReadStatus(ctx, s, "prod-5")
	if err != nil || st.Status != build.Failed || !aggregator.ReasonTriggerLost.Of(st.Reason) {
		t.Fatalf("lost trigger: %+v %v", st, err)
	}
	if st, _, _ := build.ReadStatus(ctx, s, "prod-6"); st.Status != build.Running {
		t.Fatalf("a known build was touched: %+v", st)
	}
	if _, _, err := build.ReadStatus(ctx, s, "prod-7"); err == nil {
		t.Fatal("a build within the grace period was failed")
	}
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	lines, statuses, _ := sink.Received("prod-5")
	if len(statuses) != 1 || statuses[0].Status != build.Failed || len(lines) != 1 || !strings.Contains(lines[0].Text, "never reached wharfjobs") {
		t.Fatalf("relayed %v %+v", lines, statuses)
	}
	if id := a.BuildID(ctx, "prod-5"); id != "5" {
		t.Fatalf("wharf-api id %q", id)
	}
}

// diagnosingJobs are Jobs that can also describe a build, as
// kube.Launcher does from the cluster.
type diagnosingJobs struct {
	fakeJobs
	asked []string
}

func (d *diagnosingJobs) Diagnose(_ context.Context, ref, workerID string) build.Diagnosis {
	d.asked = append(d.asked, ref+"/"+workerID)
	code := int32(137)
	return build.Diagnosis{Pods: []build.PodDiagnosis{{Name: workerID + "-abcde", Role: "worker", Phase: "Failed",
		Containers: []build.ContainerDiagnosis{{Name: "worker", State: "terminated", Reason: "OOMKilled", ExitCode: &code, MemoryLimit: "512Mi"}}}}}
}

// A lost build whose Job the cluster still has gets diagnosis.json from
// the aggregator, its summary from the worker pod's state and a log line
// with it after the reason's; a build whose Job is gone gets none.
func TestLostBuildIsDiagnosed(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx := context.Background()
	writeBuild(t, s, "oom", 3, "", nil)
	writeBuild(t, s, "gone", 3, "", nil)
	jobs := &diagnosingJobs{fakeJobs: fakeJobs{"oom": {Ref: "oom", WorkerID: "wharf-build-oom", Phase: "Failed", Reason: "PodFailurePolicy"}}}
	sink := aggregatortest.NewMemorySink()
	time.Sleep(20 * time.Millisecond) // past MissingGrace for "gone"
	a := aggregator.New(s, sink, jobs, aggregator.Config{MissingGrace: 10 * time.Millisecond, HeartbeatTimeout: time.Minute, Logger: quiet})
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := build.ReadDiagnosis(ctx, s, "oom")
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := build.ReadStatus(ctx, s, "oom")
	if d.Summary != "worker: OOMKilled at 512Mi limit" || d.RecordedBy != "aggregator" || d.Reason != st.Reason || st.Status != build.Failed {
		t.Errorf("diagnosis %+v, status %+v", d, st)
	}
	lines, _, _ := sink.Received("oom")
	if n := len(lines); n < 2 || !strings.HasPrefix(lines[n-2].Text, "build failed: WorkerLost") ||
		lines[n-1].Text != "diagnosis: worker: OOMKilled at 512Mi limit (wharfjobs status oom shows the pods, Events and nodes)" {
		t.Errorf("last lines %+v", lines)
	}
	if _, err := build.ReadDiagnosis(ctx, s, "gone"); err == nil {
		t.Error("a build whose Job is gone was diagnosed")
	}
	if len(jobs.asked) != 1 || jobs.asked[0] != "oom/wharf-build-oom" {
		t.Errorf("Diagnose asked for %v", jobs.asked)
	}
}

// A Scheduling build's log says why its worker pod waits, once per
// change of the reason, and nothing once it runs.
func TestWorkerPodWaitingLines(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, "w", build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	jobs := fakeJobs{"w": {Ref: "w", WorkerID: "wharf-build-w", Phase: "Scheduling", Waiting: "waiting for a node: 0/1 nodes are available: 1 Insufficient memory."}}
	sink := aggregatortest.NewMemorySink()
	a := aggregator.New(s, sink, jobs, aggregator.Config{HeartbeatTimeout: time.Minute, Logger: quiet})
	pass := func() {
		t.Helper()
		if err := a.Once(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	pass()
	jobs["w"] = job.Build{Ref: "w", WorkerID: "wharf-build-w", Phase: "Scheduling", Waiting: `pulling image "wharfjobs:1.2"`}
	pass()
	pass()
	build.UpdateStatus(ctx, s, "w", func(st *build.Status) error { st.Status = build.Running; return nil })
	jobs["w"] = job.Build{Ref: "w", WorkerID: "wharf-build-w", Phase: "Running", Waiting: `pulling image "wharfjobs:1.2"`}
	pass()
	lines, _, _ := sink.Received("w")
	var got []string
	for _, l := range lines {
		got = append(got, l.Text)
	}
	want := []string{"worker pod waiting for a node: 0/1 nodes are available: 1 Insufficient memory.", `worker pod pulling image "wharfjobs:1.2"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines %q, want %q", got, want)
	}
}
