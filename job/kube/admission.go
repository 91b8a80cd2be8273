package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/backoff"
)

// AdmissionLease names the Lease, in the build namespace, that provisioner
// replicas take in turn while they decide against MaxRunning (count the
// running builds, then create or release a Job): with several replicas
// (Knative scaling out) two of them would otherwise count the same free
// slot.
const AdmissionLease = "wharfjobs-admission"

// ErrAdmissionBusy is returned when the admission Lease stayed held by
// another replica for longer than its duration.
var ErrAdmissionBusy = errors.New("admission lease held by another provisioner")

// admission polls a held Lease quickly: it is held for a few API calls.
var admission = backoff.Policy{Min: 10 * time.Millisecond, Max: 500 * time.Millisecond}

// lockAdmission serialises the decisions against MaxRunning: in this
// process with admit, across replicas with the admission Lease. The
// returned func gives both up.
func (l *Launcher) lockAdmission(ctx context.Context) (func(), error) {
	l.admit.Lock()
	if l.holder == "" {
		l.holder = holderIdentity()
	}
	release, err := l.takeLease(ctx)
	if err != nil {
		l.admit.Unlock()
		return nil, err
	}
	return func() {
		release()
		l.admit.Unlock()
	}, nil
}

// takeLease takes the admission Lease, creating it if there is none and
// taking it over when its holder let it expire; the Lease's
// resourceVersion makes exactly one of two racing replicas win. It gives
// up after the Lease's duration and a request timeout.
func (l *Launcher) takeLease(ctx context.Context) (func(), error) {
	cfg := l.Config.withDefaults()
	leases := l.Client.CoordinationV1().Leases(cfg.Namespace)
	seconds := int32(max(1, cfg.AdmissionLease.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, cfg.AdmissionLease+cfg.RequestTimeout)
	defer cancel()
	holder := "" // the other replica last seen holding the Lease
	// fail wraps err; once the wait for a held Lease has run out (in a
	// sleep or in the call that was under way), ErrAdmissionBusy instead.
	fail := func(what string, err error) error {
		if holder != "" && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("lease %s/%s: %w (%s)", cfg.Namespace, AdmissionLease, ErrAdmissionBusy, holder)
		}
		return fmt.Errorf("%s lease %s/%s: %w", what, cfg.Namespace, AdmissionLease, err)
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := admission.Sleep(ctx, attempt-1); err != nil {
				return nil, fail("take", err)
			}
		}
		now := metav1.NowMicro()
		cctx, ccancel := l.ctx(ctx)
		lease, err := leases.Get(cctx, AdmissionLease, metav1.GetOptions{})
		ccancel()
		create := apierrors.IsNotFound(err)
		switch {
		case create:
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: AdmissionLease, Namespace: cfg.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "wharfjobs"}}}
		case err != nil:
			return nil, fail("get", err)
		default:
			if h := heldBy(lease, now.Time); h != "" && h != l.holder {
				holder = h
				continue
			}
		}
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &l.holder, &seconds
		lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
		var taken *coordinationv1.Lease
		cctx, ccancel = l.ctx(ctx)
		if create {
			taken, err = leases.Create(cctx, lease, metav1.CreateOptions{})
		} else {
			taken, err = leases.Update(cctx, lease, metav1.UpdateOptions{})
		}
		ccancel()
		switch {
		case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
			continue // another replica wrote it first
		case err != nil && create:
			return nil, fail("create", err)
		case err != nil:
			return nil, fail("take", err)
		}
		return l.giveBack(taken), nil
	}
}

// giveBack returns the func that empties the Lease's holder, if the Lease
// is still as this replica wrote it, so the next replica need not wait for
// it to expire. A failure only costs the others that wait.
func (l *Launcher) giveBack(held *coordinationv1.Lease) func() {
	return func() {
		ctx, cancel := l.ctx(context.Background())
		defer cancel()
		held.Spec.HolderIdentity = nil
		_, _ = l.Client.CoordinationV1().Leases(held.Namespace).Update(ctx, held, metav1.UpdateOptions{})
	}
}

// heldBy is the Lease's holder while its time has not run out, else "".
func heldBy(lease *coordinationv1.Lease, now time.Time) string {
	s := lease.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return ""
	}
	if now.After(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)) {
		return ""
	}
	return *s.HolderIdentity
}

// holderIdentity names this process in the Lease: its pod's name (the
// host name) and a random suffix, as two processes may share a host.
func holderIdentity() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}
