package kuberun

import (
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// Why a step pod waits, as the lines the runner writes to the step's
// stderr ("[wharfjobs] step pod NAME <text>") each time the text is new.
// Waiting is a pure function of the pod and its Events so that it can be
// tested without a cluster; watch reads the Events only while the pod's
// status alone does not say (see waitingStatus).

// Waiting is why a step pod has not started its step container, as the
// text after "step pod NAME ", or "" when the pod shows nothing to say
// (it started, ended, or waits on nothing it names). In order:
//
//   - waiting for a node: <the scheduler's message> (PodScheduled=False)
//   - cannot pull image "<image>": <waiting reason>: <kubelet message>
//     (a container waiting ErrImagePull or ImagePullBackOff)
//   - fetching the workspace (the init container "workspace" running)
//   - pulling image "<image>" (the pod's last Event about that image is
//     Pulling)
//
// events are the pod's Events, oldest first (kube.Gatherer.Events).
func Waiting(pod *corev1.Pod, events []build.EventDiagnosis) string {
	if text, known := waitingStatus(pod); known {
		return text
	}
	return pulling(events)
}

// waitingStatus is Waiting from the pod's status alone; known is false
// when only the pod's Events can tell (an image being pulled), so the
// runner lists them only then.
func waitingStatus(pod *corev1.Pod) (text string, known bool) {
	if stepStarted(pod) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return "", true
	}
	if msg, unscheduled := unschedulable(pod); unscheduled {
		if msg == "" {
			return "waiting for a node", true
		}
		return "waiting for a node: " + msg, true
	}
	if pod.Spec.NodeName == "" {
		// Not scheduled yet, and the scheduler has not said why.
		return "", true
	}
	for _, cs := range containerStatuses(pod) {
		if w := cs.State.Waiting; w != nil && pullReasons[w.Reason] {
			return "cannot pull image " + quote(imageOf(pod, cs)) + ": " + withMessage(w.Reason, w.Message), true
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name == "workspace" && cs.State.Running != nil {
			return "fetching the workspace", true
		}
	}
	return "", false
}

// pulling is `pulling image "<image>"` when the last pull Event of an
// image is Pulling (not yet followed by Pulled, Failed or BackOff), the
// image most recently started; "" otherwise.
func pulling(events []build.EventDiagnosis) string {
	last := map[string]string{} // image -> reason of its last pull Event
	var order []string
	for _, e := range events {
		switch e.Reason {
		case "Pulling", "Pulled", "Failed", "BackOff", "ErrImageNeverPull", "InspectFailed":
		default:
			continue
		}
		image, ok := quoted(e.Message)
		if !ok {
			continue
		}
		if e.Reason == "Pulling" {
			order = append(order, image)
		}
		last[image] = e.Reason
	}
	for i := len(order) - 1; i >= 0; i-- {
		if last[order[i]] == "Pulling" {
			return "pulling image " + quote(order[i])
		}
	}
	return ""
}

// pullReasons are the waiting reasons of an image pull that failed and
// may yet succeed (the registry may come back): Config.ImagePullTimeout
// bounds them. The other kube.StuckReasons end the step at once.
var pullReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true}

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
	if _, unscheduled := unschedulable(pod); unscheduled {
		if w.unscheduledSince.IsZero() {
			w.unscheduledSince = now
		}
	} else {
		w.unscheduledSince = time.Time{}
	}
	failing := false
	for _, cs := range containerStatuses(pod) {
		failing = failing || cs.State.Waiting != nil && pullReasons[cs.State.Waiting.Reason]
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

// unschedulable reports whether the scheduler found no node for the pod
// (PodScheduled=False), with its message.
func unschedulable(pod *corev1.Pod) (string, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return firstLine(c.Message), true
		}
	}
	return "", false
}

// containerStatuses are the init containers' statuses, then the others'.
func containerStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	return append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
}

// imageOf is a container's image: its status's, or its spec's when the
// status has none.
func imageOf(pod *corev1.Pod, cs corev1.ContainerStatus) string {
	if cs.Image != "" {
		return cs.Image
	}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == cs.Name {
			return c.Image
		}
	}
	return ""
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

// withMessage is "<s>: <first line of msg>", or s alone without a message.
func withMessage(s, msg string) string {
	if msg = firstLine(msg); msg != "" {
		return s + ": " + msg
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// quote quotes an image as Go does: an image comes from the pipeline, and
// a line break in it must not start a line of its own in the log.
func quote(s string) string { return strconv.Quote(s) }

// quoted is the first double-quoted string in s: the image in the
// kubelet's messages (`Pulling image "golang:1.26"`).
func quoted(s string) (string, bool) {
	_, rest, ok := strings.Cut(s, `"`)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(rest, `"`)
	return v, ok && v != ""
}
