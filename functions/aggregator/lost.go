package aggregator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// ReasonTriggerLost is the reason of a build wharf-api started but
// wharfjobs never received (rule 7 below).
const ReasonTriggerLost = build.ReasonTriggerLost

// Lost builds. A build is lost when its status is not final but nothing
// will ever finish it: a worker that is gone cannot write Completed or
// Failed, and wharf-api would show the build running for ever. The
// aggregator is the one component that sees both the Jobs and the store,
// so it fails such a build itself (failIfLost: status Failed, its
// unfinished steps Failed too, and a last log line saying why), and the
// relay then sends that status like any other.
//
// The rules, checked on every relay pass of a build in Scheduling or
// Running, in this order (the first that holds gives the reason):
//
//  1. Job gone. The Jobs were listed successfully, this build has none,
//     and its status has not changed for MissingGrace (the provisioner
//     writes the status just before it creates the Job, so a young
//     build may not have one yet).
//     Reason: "WorkerLost: the build's Job is gone".
//  2. Deadline. The Job failed with DeadlineExceeded (its
//     activeDeadlineSeconds passed).
//     Reason: "DeadlineExceeded".
//  3. Worker failed. The Job failed for another reason (back-off limit,
//     the pod was killed).
//     Reason: "WorkerLost: the worker failed (<the Job's reason>)".
//  4. Worker exited. The Job completed, yet the status is not final:
//     the worker ended without writing its last status.
//     Reason: "WorkerLost: the worker exited without recording a final
//     status".
//  5. Stuck. The Job's pod cannot start and will not by waiting (image
//     pull error, an invalid spec; job.Build.Stuck, set by the launcher).
//     Reason: the launcher's own, e.g. "ImagePullBackOff: <image>".
//  6. Silent. The build is Running and its worker's heartbeat is older
//     than HeartbeatTimeout. The only rule that needs no Jobs, so the one
//     that catches a lost worker without a cluster (Jobs nil).
//     Reason: "WorkerLost: no heartbeat since <time>".
//
// One more rule looks from wharf-api's side (Compare, every
// CompareInterval, when the sink can list wharf-api's active builds):
//
//  7. Trigger lost. wharf-api has had the build in Scheduling or Running
//     for TriggerGrace and the store has no status for it: its trigger
//     never reached wharfjobs, so no worker will ever report on it.
//     Reason: "TriggerLost: wharf-api has had this build in <status>
//     since <time>, but its trigger never reached wharfjobs".
//
// lostReason and triggerLostReason are these rules, without I/O, so that
// lost_rules_test.go can go through them one by one.

// jobView is what the aggregator knows of a build's Job for rules 1-5.
type jobView struct {
	// listed is set when the Jobs came from a successful listing, so a
	// build without one really has no Job (not merely an API outage).
	listed bool
	has    bool
	job    job.Build
}

// jobOf returns what the last Job listing said of ref.
func (a *Aggregator) jobOf(ref string) jobView {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, has := a.states[ref]
	return jobView{listed: a.statesOK && a.jobs != nil, has: has, job: b}
}

// lostReason applies rules 1-6: why a build whose status is not final will
// never finish, or "" when it may still.
func lostReason(st build.Status, j jobView, now time.Time, cfg Config) string {
	if st.Status.Final() || st.Status == "" {
		return ""
	}
	b := j.job
	switch {
	case j.listed && !j.has && now.Sub(st.UpdatedAt) > cfg.MissingGrace: // 1
		return build.ReasonWorkerLost.With("the build's Job is gone")
	case j.has && b.Phase == "Failed":
		if b.Reason == string(build.ReasonDeadlineExceeded) { // 2
			return build.ReasonDeadlineExceeded.String()
		}
		return build.ReasonWorkerLost.With("the worker failed (" + b.Reason + ")") // 3
	case j.has && b.Phase == "Completed": // 4
		return build.ReasonWorkerLost.With("the worker exited without recording a final status")
	case j.has && b.Stuck != "": // 5
		return b.Stuck
	case st.Status == build.Running && st.Heartbeat != nil && now.Sub(*st.Heartbeat) > cfg.HeartbeatTimeout: // 6
		return fmt.Sprintf("%s: no heartbeat since %s", build.ReasonWorkerLost, st.Heartbeat.UTC().Format(time.RFC3339))
	}
	return ""
}

// triggerLostReason applies rule 7 to a build wharf-api lists as active
// and the store has no status for: the reason to fail it with, or "" while
// it is within TriggerGrace (its trigger may still be on the way).
func triggerLostReason(rb RemoteBuild, now time.Time, grace time.Duration) string {
	if now.Sub(rb.ScheduledOn) < grace {
		return ""
	}
	return fmt.Sprintf("%s: wharf-api has had this build in %s since %s, but its trigger never reached wharfjobs", ReasonTriggerLost, rb.Status, rb.ScheduledOn.UTC().Format(time.RFC3339))
}

// failIfLost marks a lost build Failed, with a last log line saying why,
// so the status reaches the sink like any other. It returns the status as
// it is afterwards.
func (a *Aggregator) failIfLost(ctx context.Context, ref string, st build.Status) (build.Status, error) {
	jv := a.jobOf(st.Ref)
	reason := lostReason(st, jv, time.Now(), a.cfg)
	if reason == "" {
		a.tellWaiting(ctx, ref, st, jv)
		return st, nil
	}
	if err := build.WriteSystemLine(ctx, a.store, ref, "build failed: "+reason, a.cfg.Logger); err != nil {
		return st, err
	}
	if summary := a.diagnoseLost(ctx, ref, jv, reason); summary != "" {
		line := "diagnosis: " + summary + " (wharfjobs status " + ref + " shows the pods, Events and nodes)"
		if err := build.WriteSystemLine(ctx, a.store, ref, line, a.cfg.Logger); err != nil {
			return st, err
		}
	}
	now := time.Now().UTC()
	st, err := build.UpdateStatus(ctx, a.store, ref, func(st *build.Status) error {
		if st.Status.Final() {
			return build.ErrNoChange // the worker finished after all
		}
		st.Status, st.Reason, st.FinishedAt = build.Failed, reason, &now
		// Its steps that were running ended with it: none stays Running
		// in a build that is over.
		for i := range st.Steps {
			if !st.Steps[i].Status.Final() {
				st.Steps[i].Status, st.Steps[i].Reason, st.Steps[i].FinishedAt = build.Failed, reason, &now
			}
		}
		return nil
	})
	if err == nil {
		a.cfg.Logger.Warn("build lost, marked Failed", "build", ref, "reason", reason)
	}
	return st, err
}

// Compare fails the builds wharf-api has in Scheduling or Running, for
// longer than TriggerGrace, that wharfjobs has never heard of: it records
// them in the store (request, a log line, status Failed with reason
// TriggerLost), and the relay sends that status to wharf-api like any
// other.
func (a *Aggregator) Compare(ctx context.Context, remote Remote) error {
	builds, err := remote.ActiveBuilds(ctx)
	if err != nil {
		return err
	}
	for _, rb := range builds {
		reason := triggerLostReason(rb, time.Now(), a.cfg.TriggerGrace)
		if reason == "" {
			continue
		}
		req := job.Request{BuildRef: rb.ID, Instance: a.cfg.WharfInstance}
		ref := req.Ref()
		if build.ValidateRef(ref) != nil {
			continue
		}
		if _, err := a.store.Stat(ctx, build.StatusKey(ref)); err == nil || !errors.Is(err, blob.ErrNotFound) {
			continue // known, or the store cannot tell now
		}
		body, err := req.MarshalPublic()
		if err != nil {
			return err
		}
		if _, err := a.store.Put(ctx, build.RequestKey(ref), bytes.NewReader(body), int64(len(body)), blob.PutOptions{ContentType: "application/json", IfNoneMatch: true}); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
			return err
		}
		if err := build.WriteSystemLine(ctx, a.store, ref, "build failed: "+reason, a.cfg.Logger); err != nil {
			return err
		}
		now := time.Now().UTC()
		if _, err := build.WriteStatus(ctx, a.store, ref, build.Status{Status: build.Failed, Reason: reason, FinishedAt: &now}, ""); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
			return err
		}
		a.cfg.Logger.Warn("build unknown to wharfjobs, marked Failed", "build", ref, "reason", reason)
	}
	return nil
}

// diagnoseLost records diagnosis.json for a lost build whose Job the
// cluster knew, while its pods and Events are still there, and returns
// its summary ("" when there is nothing to record or it failed: the build
// is failed all the same).
func (a *Aggregator) diagnoseLost(ctx context.Context, ref string, jv jobView, reason string) string {
	dg, ok := a.jobs.(Diagnoser)
	if !ok || !jv.has {
		return ""
	}
	d := dg.Diagnose(ctx, ref, jv.job.WorkerID)
	d.Summary = reason
	for _, p := range d.Pods {
		if c := p.Cause(); c != "" && p.Role == "worker" {
			d.Summary = "worker: " + c
			break
		}
	}
	d.Reason, d.RecordedBy = reason, "aggregator"
	if err := build.WriteDiagnosis(ctx, a.store, ref, d); err != nil {
		a.cfg.Logger.Warn("cannot record the diagnosis of a lost build", "build", ref, "error", err)
		return ""
	}
	return d.Summary
}

// tellWaiting writes why a Scheduling build's worker pod waits ("worker
// pod waiting for a node: ...", "worker pod pulling image ...") into its
// log when that changes, as the kube runner does for step pods: wharf-web
// shows the log, and a build that never starts says why. The texts told
// are remembered per replica; a restarted aggregator may tell the current
// one once more.
func (a *Aggregator) tellWaiting(ctx context.Context, ref string, st build.Status, jv jobView) {
	if st.Status != build.Scheduling || !jv.has || jv.job.Waiting == "" {
		if st.Status != build.Scheduling {
			a.mu.Lock()
			delete(a.waitTold, ref)
			a.mu.Unlock()
		}
		return
	}
	a.mu.Lock()
	if a.waitTold == nil {
		a.waitTold = map[string]string{}
	}
	told := a.waitTold[ref] == jv.job.Waiting
	a.waitTold[ref] = jv.job.Waiting
	a.mu.Unlock()
	if told {
		return
	}
	if err := build.WriteSystemLine(ctx, a.store, ref, "worker pod "+jv.job.Waiting, a.cfg.Logger); err != nil {
		a.cfg.Logger.Warn("cannot write why a build waits", "build", ref, "error", err)
	}
}
