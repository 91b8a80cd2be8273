package aggregator

import (
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// TestLostRules goes through the rules listed in lost.go, each with the
// case that triggers it and the nearest case that must not.
func TestLostRules(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{MissingGrace: time.Minute, HeartbeatTimeout: 2 * time.Minute}
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	running := func(updated time.Duration, heartbeat *time.Time) build.Status {
		return build.Status{Ref: "1", Status: build.Running, UpdatedAt: now.Add(-updated), Heartbeat: heartbeat}
	}
	listed := func(b *job.Build) jobView {
		if b == nil {
			return jobView{listed: true}
		}
		return jobView{listed: true, has: true, job: *b}
	}
	for _, tc := range []struct {
		name string
		st   build.Status
		job  jobView
		want string // "" means not lost; otherwise the reason's prefix
	}{
		{"1 job gone", running(2*time.Minute, nil), listed(nil), "WorkerLost: the build's Job is gone"},
		{"1 job not created yet", running(30*time.Second, nil), listed(nil), ""},
		{"1 jobs not listed", running(time.Hour, nil), jobView{}, ""},
		{"1 scheduling too", build.Status{Status: build.Scheduling, UpdatedAt: now.Add(-time.Hour)}, listed(nil), "WorkerLost: the build's Job is gone"},
		{"2 deadline", running(0, nil), listed(&job.Build{Phase: "Failed", Reason: "DeadlineExceeded"}), "DeadlineExceeded"},
		{"3 worker failed", running(0, nil), listed(&job.Build{Phase: "Failed", Reason: "BackoffLimitExceeded"}), "WorkerLost: the worker failed (BackoffLimitExceeded)"},
		{"4 worker exited", running(0, nil), listed(&job.Build{Phase: "Completed"}), "WorkerLost: the worker exited without recording a final status"},
		{"5 stuck", build.Status{Status: build.Scheduling, UpdatedAt: now}, listed(&job.Build{Phase: "Scheduling", Stuck: "ImagePullBackOff: nope:1"}), "ImagePullBackOff: nope:1"},
		{"5 scheduling, not stuck", build.Status{Status: build.Scheduling, UpdatedAt: now.Add(-time.Hour)}, listed(&job.Build{Phase: "Scheduling"}), ""},
		{"6 silent", running(0, ago(3*time.Minute)), listed(&job.Build{Phase: "Running"}), "WorkerLost: no heartbeat since 2026-01-02T03:01:05Z"},
		{"6 silent without a cluster", running(time.Hour, ago(3*time.Minute)), jobView{}, "WorkerLost: no heartbeat since"},
		{"6 heartbeat fresh", running(0, ago(time.Minute)), listed(&job.Build{Phase: "Running"}), ""},
		{"6 no heartbeat yet", running(0, nil), listed(&job.Build{Phase: "Running"}), ""},
		{"final status", build.Status{Status: build.Completed, UpdatedAt: now.Add(-time.Hour)}, listed(nil), ""},
		{"no status", build.Status{}, listed(&job.Build{Phase: "Failed"}), ""},
		// Order: a Job's own verdict goes before the heartbeat's.
		{"2 before 6", running(0, ago(time.Hour)), listed(&job.Build{Phase: "Failed", Reason: "DeadlineExceeded"}), "DeadlineExceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lostReason(tc.st, tc.job, now, cfg)
			if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("lostReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTriggerLostRule(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rb := RemoteBuild{ID: "5", Status: "Running", ScheduledOn: now.Add(-10 * time.Minute)}
	if got := triggerLostReason(rb, now, 11*time.Minute); got != "" {
		t.Fatalf("within the grace: %q", got)
	}
	want := "TriggerLost: wharf-api has had this build in Running since 2026-01-02T02:54:05Z, but its trigger never reached wharfjobs"
	if got := triggerLostReason(rb, now, 5*time.Minute); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
