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
// wharfjobs never received.
const ReasonTriggerLost = build.ReasonTriggerLost

// lostReason says why a build whose status is not final will never finish,
// or "" when it may still.
func (a *Aggregator) lostReason(st build.Status, now time.Time) string {
	if st.Status.Final() || st.Status == "" {
		return ""
	}
	a.mu.Lock()
	b, hasJob := a.states[st.Ref]
	known := a.statesOK && a.jobs != nil
	a.mu.Unlock()
	switch {
	case known && !hasJob && now.Sub(st.UpdatedAt) > a.cfg.MissingGrace:
		return build.ReasonWorkerLost + ": the build's Job is gone"
	case hasJob && b.Phase == "Failed":
		if b.Reason == "DeadlineExceeded" {
			return build.ReasonDeadlineExceeded
		}
		return build.ReasonWorkerLost + ": the worker failed (" + b.Reason + ")"
	case hasJob && b.Phase == "Completed":
		return build.ReasonWorkerLost + ": the worker exited without recording a final status"
	case hasJob && b.Stuck != "":
		return b.Stuck
	case st.Status == build.Running && st.Heartbeat != nil && now.Sub(*st.Heartbeat) > a.cfg.HeartbeatTimeout:
		return fmt.Sprintf("%s: no heartbeat since %s", build.ReasonWorkerLost, st.Heartbeat.UTC().Format(time.RFC3339))
	}
	return ""
}

// failIfLost marks a lost build Failed, with a last log line saying why,
// so the status reaches the sink like any other. It returns the status as
// it is afterwards.
func (a *Aggregator) failIfLost(ctx context.Context, ref string, st build.Status) (build.Status, error) {
	reason := a.lostReason(st, time.Now())
	if reason == "" {
		return st, nil
	}
	if err := build.WriteSystemLine(ctx, a.store, ref, "build failed: "+reason, a.cfg.Logger); err != nil {
		return st, err
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
		if time.Since(rb.ScheduledOn) < a.cfg.TriggerGrace {
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
		reason := fmt.Sprintf("%s: wharf-api has had this build in %s since %s, but its trigger never reached wharfjobs", ReasonTriggerLost, rb.Status, rb.ScheduledOn.UTC().Format(time.RFC3339))
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
