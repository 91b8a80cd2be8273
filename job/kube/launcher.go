package kube

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// Launcher creates, lists and deletes build Jobs.
type Launcher struct {
	Client kubernetes.Interface
	Config Config

	// admit serialises this process's decisions against MaxRunning
	// (count, then create or unsuspend), and the admission Lease those of
	// all replicas: without them, builds triggered at once each count the
	// same free slots and all start.
	admit sync.Mutex
	// holder names this process in the admission Lease.
	holder string
}

func (l *Launcher) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, l.Config.withDefaults().RequestTimeout)
}

// Launch creates the build's Job and Secret. When the Job exists already
// (a repeated trigger) it returns the existing build and created=false,
// and creates nothing.
func (l *Launcher) Launch(ctx context.Context, req job.Request) (job.Build, bool, error) {
	suspend := false
	if l.Config.MaxRunning > 0 && l.Config.KueueQueue == "" {
		unlock, err := l.lockAdmission(ctx)
		if err != nil {
			return job.Build{}, false, err
		}
		defer unlock()
		q, err := l.Queue(ctx)
		if err != nil {
			return job.Build{}, false, err
		}
		// Behind any build already queued, even with a slot free: the
		// release pass takes the oldest first.
		suspend = q.Running >= l.Config.MaxRunning || len(q.Queued) > 0
	}
	j, secret, err := Render(req, l.Config, suspend)
	if err != nil {
		return job.Build{}, false, err
	}
	jobs := l.Client.BatchV1().Jobs(l.ns())
	cctx, cancel := l.ctx(ctx)
	created, err := jobs.Create(cctx, j, metav1.CreateOptions{})
	cancel()
	if apierrors.IsAlreadyExists(err) {
		b, gerr := l.Get(ctx, j.Name)
		return b, false, gerr
	}
	if err != nil {
		return job.Build{}, false, fmt.Errorf("create job %s: %w", j.Name, err)
	}
	secret.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: created.Name, UID: created.UID,
	}}
	cctx, cancel = l.ctx(ctx)
	_, err = l.Client.CoreV1().Secrets(l.ns()).Create(cctx, secret, metav1.CreateOptions{})
	cancel()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		// Without its Secret the worker cannot start: take the Job back so
		// a retried trigger starts clean.
		l.deleteJob(context.WithoutCancel(ctx), created.Name)
		return job.Build{}, false, fmt.Errorf("create secret of job %s: %w", created.Name, err)
	}
	return toBuild(created), true, nil
}

// selector matches build Jobs, optionally of one wharf instance.
func selector(instance string) string {
	set := labels.Set{job.LabelManagedBy: "wharfjobs", job.LabelComponent: ComponentBuild}
	if instance != "" {
		set[job.LabelInstance] = LabelValue(instance)
	}
	return labels.SelectorFromSet(set).String()
}

// List returns the build Jobs, newest first, of one instance or all.
func (l *Launcher) List(ctx context.Context, instance string) ([]job.Build, error) {
	cctx, cancel := l.ctx(ctx)
	defer cancel()
	list, err := l.Client.BatchV1().Jobs(l.ns()).List(cctx, metav1.ListOptions{LabelSelector: selector(instance)})
	if err != nil {
		return nil, fmt.Errorf("list build jobs: %w", err)
	}
	out := make([]job.Build, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, toBuild(&list.Items[i]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Get returns one build by its worker id.
func (l *Launcher) Get(ctx context.Context, workerID string) (job.Build, error) {
	cctx, cancel := l.ctx(ctx)
	defer cancel()
	j, err := l.Client.BatchV1().Jobs(l.ns()).Get(cctx, workerID, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && j.Labels[job.LabelManagedBy] != "wharfjobs" {
		return job.Build{}, fmt.Errorf("job %s: %w", workerID, job.ErrNotFound)
	}
	if err != nil {
		return job.Build{}, fmt.Errorf("get job %s: %w", workerID, err)
	}
	return toBuild(j), nil
}

// Cancel deletes the build's Job with background propagation: its pods,
// step pods and Secret go with it; its data in the store stays.
func (l *Launcher) Cancel(ctx context.Context, workerID string) (job.Build, error) {
	b, err := l.Get(ctx, workerID)
	if err != nil {
		return job.Build{}, err
	}
	if err := l.deleteJob(ctx, workerID); err != nil {
		return job.Build{}, err
	}
	return b, nil
}

func (l *Launcher) deleteJob(ctx context.Context, name string) error {
	cctx, cancel := l.ctx(ctx)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := l.Client.BatchV1().Jobs(l.ns()).Delete(cctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("job %s: %w", name, job.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", name, err)
	}
	return nil
}

// Queue returns the queued builds (suspended Jobs), oldest first, and
// how many builds hold a slot.
func (l *Launcher) Queue(ctx context.Context) (job.Queue, error) {
	q := job.Queue{Max: l.Config.MaxRunning, Kueue: l.Config.KueueQueue}
	builds, err := l.List(ctx, "")
	if err != nil {
		return q, err
	}
	for _, b := range builds {
		switch {
		case b.Queued:
			q.Queued = append(q.Queued, b)
		case b.Phase != "Completed" && b.Phase != "Failed":
			q.Running++
		}
	}
	sort.Slice(q.Queued, func(i, j int) bool {
		if q.Queued[i].CreatedAt.Equal(q.Queued[j].CreatedAt) {
			return q.Queued[i].WorkerID < q.Queued[j].WorkerID
		}
		return q.Queued[i].CreatedAt.Before(q.Queued[j].CreatedAt)
	})
	return q, nil
}

// ReleaseQueued unsuspends queued Jobs, oldest first, while fewer than
// MaxRunning builds run. It returns the worker ids released. With Kueue
// configured it does nothing: Kueue admits.
func (l *Launcher) ReleaseQueued(ctx context.Context) ([]string, error) {
	if l.Config.MaxRunning <= 0 || l.Config.KueueQueue != "" {
		return nil, nil
	}
	// Most passes find nothing to release: they need not take the Lease.
	q, err := l.Queue(ctx)
	if err != nil || len(q.Queued) == 0 || q.Running >= l.Config.MaxRunning {
		return nil, err
	}
	unlock, err := l.lockAdmission(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if q, err = l.Queue(ctx); err != nil {
		return nil, err
	}
	running := q.Running
	var released []string
	patch := []byte(`{"spec":{"suspend":false}}`)
	for _, b := range q.Queued {
		if running >= l.Config.MaxRunning {
			break
		}
		cctx, cancel := l.ctx(ctx)
		_, err := l.Client.BatchV1().Jobs(l.ns()).Patch(cctx, b.WorkerID, types.MergePatchType, patch, metav1.PatchOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			return released, fmt.Errorf("release job %s: %w", b.WorkerID, err)
		}
		running++
		released = append(released, b.WorkerID)
	}
	return released, nil
}

// Ready reports whether the Kubernetes API answers.
func (l *Launcher) Ready(ctx context.Context) error {
	cctx, cancel := l.ctx(ctx)
	defer cancel()
	_, err := l.Client.BatchV1().Jobs(l.ns()).List(cctx, metav1.ListOptions{Limit: 1, LabelSelector: selector("")})
	if err != nil {
		return fmt.Errorf("kubernetes API: %w", err)
	}
	return nil
}

// toBuild reads a build from its Job.
func toBuild(j *batchv1.Job) job.Build {
	b := job.Build{
		WorkerID:  j.Name,
		BuildRef:  j.Annotations[AnnotationBuildRef],
		Ref:       j.Labels[job.LabelBuildRef],
		Instance:  j.Labels[job.LabelInstance],
		CreatedAt: j.CreationTimestamp.Time,
		Phase:     "Scheduling",
	}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			b.Phase, b.Reason = "Completed", ""
			return b
		case batchv1.JobFailed:
			b.Phase, b.Reason = "Failed", c.Reason
			return b
		}
	}
	switch {
	case j.Spec.Suspend != nil && *j.Spec.Suspend:
		b.Queued, b.Reason = true, "Queued"
	case j.Status.Active > 0 && j.Status.Ready != nil && *j.Status.Ready > 0:
		b.Phase = "Running"
	}
	return b
}

// ns is the namespace of the build Jobs.
func (l *Launcher) ns() string { return l.Config.withDefaults().Namespace }

// StuckReasons are container waiting reasons that will not clear on their
// own (the image will not come, the spec cannot be run): a worker or step
// waiting for one of them has failed.
var StuckReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true, "CreateContainerConfigError": true}

// States returns every build Job by build ref, with Stuck set from its
// worker pod's waiting reason; the aggregator fails stuck and vanished
// builds from it.
func (l *Launcher) States(ctx context.Context) (map[string]job.Build, error) {
	builds, err := l.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make(map[string]job.Build, len(builds))
	for _, b := range builds {
		out[b.Ref] = b
	}
	cctx, cancel := l.ctx(ctx)
	defer cancel()
	sel := labels.SelectorFromSet(labels.Set{job.LabelManagedBy: "wharfjobs", job.LabelComponent: ComponentWorker}).String()
	pods, err := l.Client.CoreV1().Pods(l.ns()).List(cctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list worker pods: %w", err)
	}
	for _, p := range pods.Items {
		b, ok := out[p.Labels[job.LabelBuildRef]]
		if !ok {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && StuckReasons[w.Reason] {
				b.Stuck = w.Reason + ": " + cs.Image
			}
		}
		if p.Status.Phase == corev1.PodPending {
			b.Waiting = l.waiting(ctx, &p)
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable &&
					time.Since(c.LastTransitionTime.Time) > l.unschedulableLimit() {
					b.Stuck = build.ReasonUnschedulable.With(c.Message)
				}
			}
		}
		out[b.Ref] = b
	}
	return out, nil
}

// waiting is why a pending worker pod waits: from its status, or (an
// image being pulled) from its Events, listed only then.
func (l *Launcher) waiting(ctx context.Context, p *corev1.Pod) string {
	if text, known := WaitingStatus(p); known {
		return text
	}
	g := Gatherer{Client: l.Client, Namespace: l.ns(), Timeout: l.Config.withDefaults().RequestTimeout}
	events, err := g.Events(ctx, map[string]bool{p.Name: true})
	if err != nil {
		return ""
	}
	return Pulling(events)
}

func (l *Launcher) unschedulableLimit() time.Duration {
	return l.Config.withDefaults().UnschedulableLimit
}

// WatchRefs streams the build ref of every build Job that is added,
// changed or deleted, re-establishing the watch (with backoff and jitter)
// when the API server ends it. The channel closes when ctx ends.
func (l *Launcher) WatchRefs(ctx context.Context) <-chan string {
	out := make(chan string, 64)
	go func() {
		defer close(out)
		policy := backoff.Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}
		for attempt := 0; ctx.Err() == nil; {
			w, err := l.Client.BatchV1().Jobs(l.ns()).Watch(ctx, metav1.ListOptions{LabelSelector: selector("")})
			if err != nil {
				if policy.Sleep(ctx, attempt) != nil {
					return
				}
				attempt++
				continue
			}
			attempt = 0
			// Not a plain range over the results: a watch that does not end
			// with ctx (client-go's fake) would keep this goroutine, and
			// whoever waits for it, forever.
		events:
			for {
				select {
				case <-ctx.Done():
					w.Stop()
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						break events
					}
					j, isJob := ev.Object.(*batchv1.Job)
					if !isJob {
						continue
					}
					select {
					case out <- j.Labels[job.LabelBuildRef]:
					case <-ctx.Done():
						w.Stop()
						return
					}
				}
			}
			w.Stop()
		}
	}()
	return out
}
