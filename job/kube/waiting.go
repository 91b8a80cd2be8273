package kube

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// Waiting is why a pod (a step's or a worker's) has not started its
// container, as the text after "step pod NAME " in a step's log, or "" when the pod shows nothing to say
// (it started, ended, or waits on nothing it names). In order:
//
//   - waiting for a node: <the scheduler's message> (PodScheduled=False)
//   - cannot pull image "<image>": <waiting reason>: <kubelet message>
//     (a container waiting ErrImagePull or ImagePullBackOff)
//   - fetching the workspace (the init container "workspace" running)
//   - pulling image "<image>" (the pod's last Event about that image is
//     Pulling)
//
// events are the pod's Events, oldest first (Gatherer.Events).
func Waiting(pod *corev1.Pod, events []build.EventDiagnosis) string {
	if text, known := WaitingStatus(pod); known {
		return text
	}
	return Pulling(events)
}

// WaitingStatus is Waiting from the pod's status alone; known is false
// when only the pod's Events can tell (an image being pulled), so the
// runner lists them only then.
func WaitingStatus(pod *corev1.Pod) (text string, known bool) {
	if started(pod) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return "", true
	}
	if msg, unscheduled := Unschedulable(pod); unscheduled {
		if msg == "" {
			return "waiting for a node", true
		}
		return "waiting for a node: " + msg, true
	}
	if pod.Spec.NodeName == "" {
		// Not scheduled yet, and the scheduler has not said why.
		return "", true
	}
	for _, cs := range ContainerStatuses(pod) {
		if w := cs.State.Waiting; w != nil && PullReasons[w.Reason] {
			return "cannot pull image " + quote(ImageOf(pod, cs)) + ": " + WithMessage(w.Reason, w.Message), true
		}
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		if cs.Name == "workspace" && cs.State.Running != nil {
			return "fetching the workspace", true
		}
	}
	return "", false
}

// Pulling is `pulling image "<image>"` when the last pull Event of an
// image is Pulling (not yet followed by Pulled, Failed or BackOff), the
// image most recently started; "" otherwise.
func Pulling(events []build.EventDiagnosis) string {
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

// PullReasons are the waiting reasons of an image pull that failed and
// may yet succeed (the registry may come back): Config.ImagePullTimeout
// bounds them for step pods. The other StuckReasons end a step at once.
var PullReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true}

// Unschedulable reports whether the scheduler found no node for the pod
// (PodScheduled=False), with its message.
func Unschedulable(pod *corev1.Pod) (string, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return firstLine(c.Message), true
		}
	}
	return "", false
}

// ContainerStatuses are the init containers' statuses, then the others'.
func ContainerStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	return append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
}

// ImageOf is a container's image: its status's, or its spec's when the
// status has none.
func ImageOf(pod *corev1.Pod, cs corev1.ContainerStatus) string {
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

// WithMessage is "<s>: <first line of msg>", or s alone without a message.
func WithMessage(s, msg string) string {
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

// started reports whether one of the pod's (non-init) containers has
// started: it no longer waits for anything Waiting names.
func started(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}
