package build

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// DiagnosisKey is the key of the build's post-mortem bundle, written when
// the build fails in a cluster. It stays with the log after the Job and
// its pods are gone.
func DiagnosisKey(ref string) string { return Dir(ref) + "diagnosis.json" }

// Diagnosis is builds/<ref>/diagnosis.json: what Kubernetes knew about a
// failed build when it failed, kept because the Job's TTL takes the pods,
// their container states and the Events with it (exit 137 with no reason
// is what is left otherwise).
type Diagnosis struct {
	Ref string `json:"ref"`
	// Summary is one line on the cause, e.g. "step build/compile:
	// OOMKilled at 2Gi limit"; it is also the build log's last system line.
	Summary string `json:"summary"`
	// Reason is the build's status reason.
	Reason string `json:"reason,omitempty"`
	// RecordedBy is the component that saw the failure: "worker" (a step
	// failed) or "aggregator" (the worker was lost).
	RecordedBy string    `json:"recordedBy"`
	RecordedAt time.Time `json:"recordedAt"`
	// Job is the build Job's state, when it was still there.
	Job *JobDiagnosis `json:"job,omitempty"`
	// Pods are the worker's pod and each failed step's pod.
	Pods []PodDiagnosis `json:"pods,omitempty"`
	// Events are the last Kubernetes Events of the Job and those pods,
	// oldest first.
	Events []EventDiagnosis `json:"events,omitempty"`
	// Nodes are the nodes the pods ran on, with their conditions.
	Nodes []NodeDiagnosis `json:"nodes,omitempty"`
	// Errors says what could not be read (e.g. nodes, where the
	// component may not get them), so an absent part is explained.
	Errors []string `json:"errors,omitempty"`
}

// JobDiagnosis is a build Job's state.
type JobDiagnosis struct {
	Name       string   `json:"name"`
	Suspended  bool     `json:"suspended,omitempty"`
	Active     int32    `json:"active"`
	Failed     int32    `json:"failed"`
	Conditions []string `json:"conditions,omitempty"` // "Failed=True PodFailurePolicy: message"
	// KueueQueue is the Kueue queue the Job waits in, when one is used;
	// a suspended Job in one has not been admitted.
	KueueQueue string `json:"kueueQueue,omitempty"`
}

// PodDiagnosis is one pod's state.
type PodDiagnosis struct {
	Name string `json:"name"`
	// Role is "worker" or "step".
	Role    string `json:"role"`
	Stage   string `json:"stage,omitempty"`
	Step    string `json:"step,omitempty"`
	Node    string `json:"node,omitempty"`
	Phase   string `json:"phase"`
	Reason  string `json:"reason,omitempty"` // e.g. Evicted
	Message string `json:"message,omitempty"`
	// Unschedulable is the scheduler's message while the pod had no node.
	Unschedulable string               `json:"unschedulable,omitempty"`
	Containers    []ContainerDiagnosis `json:"containers,omitempty"`
}

// ContainerDiagnosis is one container's state: how it ended or why it
// waits, and its limits.
type ContainerDiagnosis struct {
	Name  string `json:"name"`
	Init  bool   `json:"init,omitempty"`
	Image string `json:"image"`
	// State is "waiting", "running" or "terminated".
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"` // OOMKilled, Error, ImagePullBackOff, ...
	Message  string `json:"message,omitempty"`
	ExitCode *int32 `json:"exitCode,omitempty"`
	// Signal is the signal that ended it: from the runtime, or 128+n in
	// the exit code (137 = 9, SIGKILL).
	Signal       int32  `json:"signal,omitempty"`
	Restarts     int32  `json:"restarts,omitempty"`
	MemoryLimit  string `json:"memoryLimit,omitempty"`
	CPULimit     string `json:"cpuLimit,omitempty"`
	LastReason   string `json:"lastReason,omitempty"` // the previous run's end, after a restart
	LastExitCode *int32 `json:"lastExitCode,omitempty"`
}

// EventDiagnosis is one Kubernetes Event.
type EventDiagnosis struct {
	Object  string    `json:"object"` // "Pod/wharf-build-42-abcde"
	Type    string    `json:"type"`   // Normal or Warning
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Count   int32     `json:"count,omitempty"`
	Last    time.Time `json:"last"`
}

// NodeDiagnosis is a node and its conditions.
type NodeDiagnosis struct {
	Name string `json:"name"`
	// Conditions lists every condition as "Type=Status" with its reason,
	// e.g. "MemoryPressure=True KubeletHasInsufficientMemory".
	Conditions []string `json:"conditions,omitempty"`
}

// maxDiagnosisSize bounds how much of a diagnosis is read.
const maxDiagnosisSize = 4 << 20

// WriteDiagnosis stores d as the build's diagnosis.json, replacing an
// earlier one: the latest look at a failure is the fuller one.
func WriteDiagnosis(ctx context.Context, s blob.Store, ref string, d Diagnosis) error {
	d.Ref = ref
	if d.RecordedAt.IsZero() {
		d.RecordedAt = time.Now().UTC()
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("write diagnosis of build %s: %w", ref, err)
	}
	b = append(b, '\n')
	if _, err := s.Put(ctx, DiagnosisKey(ref), bytes.NewReader(b), int64(len(b)), blob.PutOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write diagnosis of build %s: %w", ref, err)
	}
	return nil
}

// ReadDiagnosis returns the build's diagnosis; a build without one is
// blob.ErrNotFound.
func ReadDiagnosis(ctx context.Context, s blob.Store, ref string) (Diagnosis, error) {
	b, _, err := blob.ReadAll(ctx, s, DiagnosisKey(ref), maxDiagnosisSize)
	if err != nil {
		return Diagnosis{}, fmt.Errorf("read diagnosis of build %s: %w", ref, err)
	}
	var d Diagnosis
	if err := json.Unmarshal(b, &d); err != nil {
		return Diagnosis{}, fmt.Errorf("read diagnosis of build %s: %w", ref, err)
	}
	return d, nil
}

// Merge adds o's pods, events, nodes and errors to d (a build with
// several failed steps has one diagnosis), keeping each node once.
func (d *Diagnosis) Merge(o Diagnosis) {
	d.Pods = append(d.Pods, o.Pods...)
	d.Events = append(d.Events, o.Events...)
	d.Errors = append(d.Errors, o.Errors...)
	for _, n := range o.Nodes {
		seen := false
		for _, m := range d.Nodes {
			seen = seen || m.Name == n.Name
		}
		if !seen {
			d.Nodes = append(d.Nodes, n)
		}
	}
	if d.Job == nil {
		d.Job = o.Job
	}
}

// Cause is the one-line cause a pod's state shows, or "" when it shows
// none: the first container that ended badly or is stuck, e.g.
// "OOMKilled at 2Gi limit", "exit 137 (signal 9, SIGKILL)",
// "ImagePullBackOff: Back-off pulling image \"x\"", or the pod's own
// reason (Evicted: ...) or the scheduler's message.
func (p PodDiagnosis) Cause() string {
	if p.Reason != "" {
		return strings.TrimSpace(p.Reason + ": " + p.Message)
	}
	for _, c := range p.Containers {
		switch {
		case c.State == "terminated" && c.Reason == "OOMKilled":
			if c.MemoryLimit != "" {
				return "OOMKilled at " + c.MemoryLimit + " limit"
			}
			return "OOMKilled"
		case c.State == "terminated" && c.ExitCode != nil && *c.ExitCode != 0:
			s := fmt.Sprintf("exit %d", *c.ExitCode)
			if c.Name != "step" { // a step pod's own container needs no name
				s = c.Name + " " + s
			}
			if c.Signal > 0 {
				s += fmt.Sprintf(" (signal %d)", c.Signal)
			}
			if c.Reason != "" && c.Reason != "Error" {
				s += " " + c.Reason
			}
			if c.Message != "" {
				s += ": " + firstLine(c.Message)
			}
			return s
		case c.State == "waiting" && c.Reason != "" && c.Reason != "ContainerCreating" && c.Reason != "PodInitializing":
			return strings.TrimSpace(c.Reason + ": " + firstLine(c.Message))
		}
	}
	if p.Unschedulable != "" {
		return "Unschedulable: " + p.Unschedulable
	}
	return ""
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Text is the diagnosis as `wharfjobs status` prints it: the summary,
// then pods and their containers, nodes, and the events.
func (d Diagnosis) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "diagnosis (%s, %s): %s\n", d.RecordedBy, d.RecordedAt.UTC().Format(time.RFC3339), d.Summary)
	if d.Job != nil {
		fmt.Fprintf(&b, "  job %s: active %d, failed %d", d.Job.Name, d.Job.Active, d.Job.Failed)
		if d.Job.Suspended {
			b.WriteString(", suspended")
		}
		if d.Job.KueueQueue != "" {
			fmt.Fprintf(&b, ", kueue queue %s", d.Job.KueueQueue)
		}
		b.WriteString("\n")
		for _, c := range d.Job.Conditions {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	for _, p := range d.Pods {
		what := p.Role
		if p.Role == "step" {
			what = "step " + p.Stage + "/" + p.Step
		}
		fmt.Fprintf(&b, "  pod %s (%s) on %s: %s", p.Name, what, orNone(p.Node), p.Phase)
		if p.Reason != "" {
			fmt.Fprintf(&b, " %s: %s", p.Reason, p.Message)
		}
		b.WriteString("\n")
		if p.Unschedulable != "" {
			fmt.Fprintf(&b, "    unschedulable: %s\n", p.Unschedulable)
		}
		for _, c := range p.Containers {
			kind := "container"
			if c.Init {
				kind = "init container"
			}
			fmt.Fprintf(&b, "    %s %s (%s): %s", kind, c.Name, c.Image, c.State)
			if c.Reason != "" {
				fmt.Fprintf(&b, " %s", c.Reason)
			}
			if c.ExitCode != nil {
				fmt.Fprintf(&b, " exit %d", *c.ExitCode)
			}
			if c.Signal > 0 {
				fmt.Fprintf(&b, " signal %d", c.Signal)
			}
			if c.MemoryLimit != "" || c.CPULimit != "" {
				fmt.Fprintf(&b, " (limits: memory %s, cpu %s)", orNone(c.MemoryLimit), orNone(c.CPULimit))
			}
			if c.Message != "" {
				fmt.Fprintf(&b, ": %s", firstLine(c.Message))
			}
			b.WriteString("\n")
		}
	}
	for _, n := range d.Nodes {
		fmt.Fprintf(&b, "  node %s: %s\n", n.Name, strings.Join(n.Conditions, ", "))
	}
	if len(d.Events) > 0 {
		b.WriteString("  events:\n")
		for _, e := range d.Events {
			fmt.Fprintf(&b, "    %s %s %s %s: %s", e.Last.UTC().Format(time.RFC3339), e.Type, e.Object, e.Reason, firstLine(e.Message))
			if e.Count > 1 {
				fmt.Fprintf(&b, " (x%d)", e.Count)
			}
			b.WriteString("\n")
		}
	}
	for _, e := range d.Errors {
		fmt.Fprintf(&b, "  not read: %s\n", e)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
