package kuberun

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/wharfjobs/wharfjobs/job/kube"
)

// Why a step pod waits, as the lines the runner writes to the step's
// stderr ("[wharfjobs] step pod NAME <text>") each time the text is new.
// kube.Waiting is a pure function of the pod and its Events so that it can be
// tested without a cluster; watch reads the Events only while the pod's
// status alone does not say (see kube.WaitingStatus).

// waits is what watch remembers between polls of one step pod: since when
// each limited wait has lasted (zero: not waiting for it now), and which
// waiting lines it wrote.
type waits struct {
	unscheduledSince time.Time
	pullFailingSince time.Time
	written          map[string]bool
}

// observe updates the waits from the pod's status read at now. Only the
// time the pod spends without a node (PodScheduled=False) counts toward
// PendingTimeout, and only the time some container keeps failing its
// image pull toward ImagePullTimeout.
func (w *waits) observe(pod *corev1.Pod, now time.Time) {
	if _, unscheduled := kube.Unschedulable(pod); unscheduled {
		if w.unscheduledSince.IsZero() {
			w.unscheduledSince = now
		}
	} else {
		w.unscheduledSince = time.Time{}
	}
	failing := false
	for _, cs := range kube.ContainerStatuses(pod) {
		failing = failing || cs.State.Waiting != nil && kube.PullReasons[cs.State.Waiting.Reason]
	}
	switch {
	case !failing:
		w.pullFailingSince = time.Time{}
	case w.pullFailingSince.IsZero():
		w.pullFailingSince = now
	}
}

// line returns the waiting line for text when it is one not written yet
// for this pod, and "" otherwise: each reason is told once, not at every
// poll, and an image pull alternating between ErrImagePull and
// ImagePullBackOff does not repeat its two lines.
func (w *waits) line(pod, text string) string {
	if text == "" || w.written[text] {
		return ""
	}
	if w.written == nil {
		w.written = map[string]bool{}
	}
	w.written[text] = true
	return "[wharfjobs] step pod " + pod + " " + text + "\n"
}

// memoryLimit is the memory limit of the pod's container name, or "".
func memoryLimit(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; c.Name == name && ok {
			return q.String()
		}
	}
	return ""
}
