package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// MaxDiagnosisEvents is how many Events a diagnosis keeps (the last ones).
const MaxDiagnosisEvents = 30

// PodDiagnosis is a pod's state as a diagnosis records it: phase, reason,
// the scheduler's message while it had no node, and each container's
// state with its limits.
func PodDiagnosis(p *corev1.Pod, role string) build.PodDiagnosis {
	d := build.PodDiagnosis{
		Name: p.Name, Role: role, Node: p.Spec.NodeName, Phase: string(p.Status.Phase),
		Reason: p.Status.Reason, Message: p.Status.Message,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			d.Unschedulable = c.Message
		}
	}
	limits := map[string]corev1.ResourceList{}
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		limits[c.Name] = c.Resources.Limits
	}
	add := func(statuses []corev1.ContainerStatus, init bool) {
		for _, cs := range statuses {
			cd := build.ContainerDiagnosis{Name: cs.Name, Init: init, Image: cs.Image, Restarts: cs.RestartCount}
			if l := limits[cs.Name]; l != nil {
				if q, ok := l[corev1.ResourceMemory]; ok {
					cd.MemoryLimit = q.String()
				}
				if q, ok := l[corev1.ResourceCPU]; ok {
					cd.CPULimit = q.String()
				}
			}
			switch s := cs.State; {
			case s.Terminated != nil:
				t := s.Terminated
				code := t.ExitCode
				cd.State, cd.Reason, cd.Message, cd.ExitCode, cd.Signal = "terminated", t.Reason, t.Message, &code, t.Signal
				if cd.Signal == 0 && code > 128 && code < 160 {
					cd.Signal = code - 128
				}
			case s.Waiting != nil:
				cd.State, cd.Reason, cd.Message = "waiting", s.Waiting.Reason, s.Waiting.Message
			case s.Running != nil:
				cd.State = "running"
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				code := t.ExitCode
				cd.LastReason, cd.LastExitCode = t.Reason, &code
			}
			d.Containers = append(d.Containers, cd)
		}
	}
	add(p.Status.InitContainerStatuses, true)
	add(p.Status.ContainerStatuses, false)
	return d
}

// JobDiagnosis is a build Job's state as a diagnosis records it.
func JobDiagnosis(j *batchv1.Job) *build.JobDiagnosis {
	d := &build.JobDiagnosis{Name: j.Name, Active: j.Status.Active, Failed: j.Status.Failed, KueueQueue: j.Labels[LabelKueueQueue]}
	d.Suspended = j.Spec.Suspend != nil && *j.Spec.Suspend
	for _, c := range j.Status.Conditions {
		d.Conditions = append(d.Conditions, strings.TrimSpace(fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)))
	}
	return d
}

// EventDiagnoses are the Events of the named objects, oldest first, the
// last max of them.
func EventDiagnoses(events []corev1.Event, names map[string]bool, max int) []build.EventDiagnosis {
	var out []build.EventDiagnosis
	for _, e := range events {
		if !names[e.InvolvedObject.Name] {
			continue
		}
		last := e.LastTimestamp.Time
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if last.IsZero() {
			last = e.CreationTimestamp.Time
		}
		count := e.Count
		if e.Series != nil && e.Series.Count > count {
			count = e.Series.Count
		}
		out = append(out, build.EventDiagnosis{
			Object: e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name, Type: e.Type, Reason: e.Reason,
			Message: e.Message, Count: count, Last: last.UTC(),
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.Before(out[j].Last) })
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// NodeDiagnosis is a node's conditions as a diagnosis records them.
func NodeDiagnosis(n *corev1.Node) build.NodeDiagnosis {
	d := build.NodeDiagnosis{Name: n.Name}
	for _, c := range n.Status.Conditions {
		d.Conditions = append(d.Conditions, strings.TrimSpace(fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Reason)))
	}
	return d
}

// Gatherer reads what a diagnosis records from the Kubernetes API. Every
// part is best effort: what cannot be read (nodes, where the component's
// role has no ClusterRole for them) is named in Diagnosis.Errors, and the
// rest is still recorded.
type Gatherer struct {
	Client    kubernetes.Interface
	Namespace string
	// Timeout bounds each API call.
	Timeout time.Duration
}

// Events lists the namespace's Events of the named objects (one List:
// the objects of one build are few, their Events fewer than a page).
func (g Gatherer) Events(ctx context.Context, names map[string]bool) ([]build.EventDiagnosis, error) {
	cctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	var all []corev1.Event
	if len(names) == 1 {
		for name := range names {
			list, err := g.Client.CoreV1().Events(g.Namespace).List(cctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			if err != nil {
				return nil, fmt.Errorf("list events of %s: %w", name, err)
			}
			all = list.Items
		}
	} else {
		list, err := g.Client.CoreV1().Events(g.Namespace).List(cctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		all = list.Items
	}
	return EventDiagnoses(all, names, MaxDiagnosisEvents), nil
}

// Nodes reads the named nodes' conditions; an error says which could not
// be read and why.
func (g Gatherer) Nodes(ctx context.Context, names []string) ([]build.NodeDiagnosis, []string) {
	var out []build.NodeDiagnosis
	var errs []string
	seen := map[string]bool{}
	for _, name := range names {
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		cctx, cancel := context.WithTimeout(ctx, g.Timeout)
		n, err := g.Client.CoreV1().Nodes().Get(cctx, name, metav1.GetOptions{})
		cancel()
		if err != nil {
			if apierrors.IsForbidden(err) {
				errs = append(errs, fmt.Sprintf("node %s: forbidden (the role has no get on nodes)", name))
			} else {
				errs = append(errs, fmt.Sprintf("node %s: %v", name, err))
			}
			continue
		}
		out = append(out, NodeDiagnosis(n))
	}
	return out, errs
}

// Pod is the diagnosis of one pod: its state, its Events and its node.
func (g Gatherer) Pod(ctx context.Context, p *corev1.Pod, role string) build.Diagnosis {
	var d build.Diagnosis
	d.Pods = []build.PodDiagnosis{PodDiagnosis(p, role)}
	events, err := g.Events(ctx, map[string]bool{p.Name: true})
	if err != nil {
		d.Errors = append(d.Errors, err.Error())
	}
	d.Events = events
	nodes, errs := g.Nodes(ctx, []string{p.Spec.NodeName})
	d.Nodes, d.Errors = nodes, append(d.Errors, errs...)
	return d
}

// Build is the diagnosis of build ref from its Job, the pods labelled
// with its ref (the worker's, and step pods still there), their Events
// and nodes. A build whose Job is gone gives what remains.
func (g Gatherer) Build(ctx context.Context, ref, workerID string) build.Diagnosis {
	var d build.Diagnosis
	names := map[string]bool{}
	cctx, cancel := context.WithTimeout(ctx, g.Timeout)
	j, err := g.Client.BatchV1().Jobs(g.Namespace).Get(cctx, workerID, metav1.GetOptions{})
	cancel()
	switch {
	case err == nil:
		d.Job = JobDiagnosis(j)
		names[j.Name] = true
	case apierrors.IsNotFound(err):
		d.Errors = append(d.Errors, fmt.Sprintf("job %s: gone", workerID))
	default:
		d.Errors = append(d.Errors, fmt.Sprintf("get job %s: %v", workerID, err))
	}
	cctx, cancel = context.WithTimeout(ctx, g.Timeout)
	sel := labels.SelectorFromSet(labels.Set{job.LabelManagedBy: "wharfjobs", job.LabelBuildRef: LabelValue(ref)}).String()
	pods, err := g.Client.CoreV1().Pods(g.Namespace).List(cctx, metav1.ListOptions{LabelSelector: sel})
	cancel()
	var nodes []string
	if err != nil {
		d.Errors = append(d.Errors, fmt.Sprintf("list pods: %v", err))
	} else {
		for i := range pods.Items {
			p := &pods.Items[i]
			role := p.Labels[job.LabelComponent]
			pd := PodDiagnosis(p, role)
			pd.Stage, pd.Step = p.Labels[job.LabelStage], p.Labels[job.LabelStep]
			d.Pods = append(d.Pods, pd)
			names[p.Name] = true
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	if len(names) > 0 {
		events, err := g.Events(ctx, names)
		if err != nil {
			d.Errors = append(d.Errors, err.Error())
		}
		d.Events = events
	}
	n, errs := g.Nodes(ctx, nodes)
	d.Nodes, d.Errors = n, append(d.Errors, errs...)
	return d
}

// Diagnose implements the aggregator's Diagnoser: the build's Job, its
// pods, their Events and nodes, as the launcher's role may read them.
func (l *Launcher) Diagnose(ctx context.Context, ref, workerID string) build.Diagnosis {
	g := Gatherer{Client: l.Client, Namespace: l.ns(), Timeout: l.Config.withDefaults().RequestTimeout}
	return g.Build(ctx, ref, workerID)
}
