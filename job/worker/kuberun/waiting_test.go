package kuberun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job/kube"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// What a step pod shows while it waits, in the shapes the kubelet and the
// scheduler give it.

const insufficientCPU = "0/1 nodes are available: 1 Insufficient cpu."

func stepPod(mod ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "wharf-42-build-compile-0123456789", Namespace: "builds"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "workspace", Image: "wharfjobs:test"}},
			Containers:     []corev1.Container{{Name: "step", Image: "foo:1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, m := range mod {
		m(p)
	}
	return p
}

func unscheduled(msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = ""
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}}
	}
}

func onNode(p *corev1.Pod) {
	p.Spec.NodeName = "node-1"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
}

func waitingCS(name, image, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: image, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

func runningCS(name string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func initStatus(cs ...corev1.ContainerStatus) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.InitContainerStatuses = cs }
}

func stepStatus(cs ...corev1.ContainerStatus) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses = cs }
}

// ev is one of the pod's Events, sec seconds into the test's minute.
func ev(reason, msg string, sec int) build.EventDiagnosis {
	return build.EventDiagnosis{Object: "Pod/x", Type: "Normal", Reason: reason, Message: msg, Last: time.Date(2026, 1, 2, 3, 4, sec, 0, time.UTC)}
}

func TestWaiting(t *testing.T) {
	pullingFetch := ev("Pulling", `Pulling image "wharfjobs:test"`, 1)
	pulledFetch := ev("Pulled", `Successfully pulled image "wharfjobs:test" in 1.2s (1.2s including waiting). Image size: 1 bytes.`, 2)
	pullingStep := ev("Pulling", `Pulling image "foo:1"`, 5)
	backOff := `Back-off pulling image "foo:1"`
	cases := []struct {
		name   string
		pod    *corev1.Pod
		events []build.EventDiagnosis
		want   string
	}{
		{"just created", stepPod(), nil, ""},
		{"no node", stepPod(unscheduled(insufficientCPU)), nil, "waiting for a node: " + insufficientCPU},
		{"no node, no message", stepPod(unscheduled("")), nil, "waiting for a node"},
		{"no node, the Events do not matter", stepPod(unscheduled(insufficientCPU)), []build.EventDiagnosis{pullingFetch}, "waiting for a node: " + insufficientCPU},
		{"on a node, nothing to say", stepPod(onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "PodInitializing", ""))), nil, ""},
		{"pulling the fetch image", stepPod(onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "PodInitializing", ""))),
			[]build.EventDiagnosis{ev("Scheduled", "Successfully assigned builds/x to node-1", 0), pullingFetch}, `pulling image "wharfjobs:test"`},
		{"pulled", stepPod(onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "PodInitializing", ""))),
			[]build.EventDiagnosis{pullingFetch, pulledFetch}, ""},
		{"already present", stepPod(onNode), []build.EventDiagnosis{ev("Pulled", `Container image "wharfjobs:test" already present on machine`, 1)}, ""},
		{"fetching the workspace", stepPod(onNode, initStatus(runningCS("workspace"))), []build.EventDiagnosis{pullingFetch, pulledFetch, pullingStep}, "fetching the workspace"},
		{"pulling the step's image", stepPod(onNode, initStatus(terminated("workspace", 0, "Completed")), stepStatus(waitingCS("step", "foo:1", "PodInitializing", ""))),
			[]build.EventDiagnosis{pullingFetch, pulledFetch, ev("Started", "Started container workspace", 3), pullingStep}, `pulling image "foo:1"`},
		{"the last image pulling", stepPod(onNode), []build.EventDiagnosis{pullingFetch, pullingStep}, `pulling image "foo:1"`},
		{"a pull that failed is no longer pulling", stepPod(onNode), []build.EventDiagnosis{pullingStep, ev("Failed", `Failed to pull image "foo:1": not found`, 6)}, ""},
		{"back-off", stepPod(onNode, stepStatus(waitingCS("step", "foo:1", "ImagePullBackOff", backOff))), []build.EventDiagnosis{pullingStep},
			`cannot pull image "foo:1": ImagePullBackOff: ` + backOff},
		{"pull error, image from the spec", stepPod(onNode, stepStatus(waitingCS("step", "", "ErrImagePull", "rpc error: code = NotFound\nmore detail"))), nil,
			`cannot pull image "foo:1": ErrImagePull: rpc error: code = NotFound`},
		{"pull error without a message", stepPod(onNode, stepStatus(waitingCS("step", "foo:1", "ErrImagePull", ""))), nil, `cannot pull image "foo:1": ErrImagePull`},
		{"the fetch image", stepPod(onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "ErrImagePull", "unauthorized"))), nil,
			`cannot pull image "wharfjobs:test": ErrImagePull: unauthorized`},
		{"an image with a line break stays on its line", stepPod(onNode, stepStatus(waitingCS("step", "foo\n[wharfjobs] forged", "ImagePullBackOff", ""))), nil,
			`cannot pull image "foo\n[wharfjobs] forged": ImagePullBackOff`},
		{"started", stepPod(onNode, stepStatus(runningCS("step"))), []build.EventDiagnosis{pullingStep}, ""},
		{"ended", stepPod(onNode, stepStatus(terminated("step", 1, "Error"))), []build.EventDiagnosis{pullingStep}, ""},
		{"succeeded", stepPod(onNode, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), []build.EventDiagnosis{pullingStep}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := kube.Waiting(c.pod, c.events); got != c.want {
				t.Errorf("Waiting = %q, want %q", got, c.want)
			}
		})
	}
}

// The limits, from the pod's status and the time watch saw it: a failing
// pull ends the step only after ImagePullTimeout (at once with 0), and
// only time without a node counts toward PendingTimeout.
func TestWaitLimits(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	backOff := stepPod(onNode, stepStatus(waitingCS("step", "foo:1", "ImagePullBackOff", `Back-off pulling image "foo:1"`)))
	errPull := stepPod(onNode, stepStatus(waitingCS("step", "foo:1", "ErrImagePull", "503 Service Unavailable")))
	creating := stepPod(onNode, stepStatus(waitingCS("step", "foo:1", "ContainerCreating", "")))
	const wantPull = `ImagePullBackOff: foo:1: Back-off pulling image "foo:1"`

	type poll struct {
		pod    *corev1.Pod
		at     time.Duration
		reason string // "" for a step that goes on
	}
	cases := []struct {
		name  string
		cfg   Config
		polls []poll
	}{
		{"pull limit 0 fails at once", Config{}, []poll{{backOff, 0, wantPull}}},
		{"pull within the limit waits", Config{ImagePullTimeout: 2 * time.Minute}, []poll{
			{errPull, 0, ""}, {backOff, time.Minute, ""}, {errPull, 119 * time.Second, ""},
			{backOff, 2 * time.Minute, wantPull}}},
		{"a pull that recovered starts the count again", Config{ImagePullTimeout: 2 * time.Minute}, []poll{
			{backOff, 0, ""}, {creating, 90 * time.Second, ""}, {backOff, 100 * time.Second, ""}, {backOff, 219 * time.Second, ""},
			{errPull, 220 * time.Second, "ErrImagePull: foo:1: 503 Service Unavailable"}}},
		{"the other stuck reasons stay immediate", Config{ImagePullTimeout: time.Hour}, []poll{
			{stepPod(onNode, stepStatus(waitingCS("step", "", "CreateContainerConfigError", `secret "wharf-x" not found`))), 0,
				`CreateContainerConfigError: foo:1: secret "wharf-x" not found`}}},
		{"InvalidImageName", Config{ImagePullTimeout: time.Hour}, []poll{
			{stepPod(onNode, stepStatus(waitingCS("step", "FOO", "InvalidImageName", ""))), 0, "InvalidImageName: FOO"}}},
		{"unscheduled past the limit", Config{PendingTimeout: 10 * time.Minute}, []poll{
			{stepPod(unscheduled(insufficientCPU)), 0, ""}, {stepPod(unscheduled(insufficientCPU)), 10 * time.Minute, ""},
			{stepPod(unscheduled(insufficientCPU)), 10*time.Minute + time.Second, "Unschedulable: " + insufficientCPU}}},
		{"time before the scheduler's verdict does not count", Config{PendingTimeout: 10 * time.Minute}, []poll{
			{stepPod(), 0, ""}, {stepPod(), 9 * time.Minute, ""},
			{stepPod(unscheduled(insufficientCPU)), 9*time.Minute + time.Second, ""},
			{stepPod(unscheduled(insufficientCPU)), 12 * time.Minute, ""},
			{stepPod(unscheduled(insufficientCPU)), 19*time.Minute + 2*time.Second, "Unschedulable: " + insufficientCPU}}},
		{"time on a node does not count", Config{PendingTimeout: 10 * time.Minute}, []poll{
			{stepPod(unscheduled(insufficientCPU)), 0, ""},
			{stepPod(onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "PodInitializing", ""))), 5 * time.Minute, ""},
			{stepPod(onNode, initStatus(runningCS("workspace"))), time.Hour, ""}}},
		{"pending limit 0 never fails", Config{}, []poll{
			{stepPod(unscheduled(insufficientCPU)), 0, ""}, {stepPod(unscheduled(insufficientCPU)), 100 * time.Hour, ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Runner{Config: c.cfg}
			var w waits
			for i, p := range c.polls {
				now := t0.Add(p.at)
				w.observe(p.pod, now)
				res, done := r.inspect(p.pod, &w, now)
				if done != (p.reason != "") || res.Reason != p.reason {
					t.Fatalf("poll %d at %s: %+v done %v, want reason %q", i, p.at, res, done, p.reason)
				}
				if done && res.ExitCode != -1 {
					t.Fatalf("exit %d", res.ExitCode)
				}
			}
		})
	}
}

func TestOOMKilledNamesTheLimit(t *testing.T) {
	r := &Runner{}
	oom := func(code int32, limit string) *corev1.Pod {
		return stepPod(onNode, stepStatus(terminated("step", code, "OOMKilled")), func(p *corev1.Pod) {
			if limit != "" {
				p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit), corev1.ResourceCPU: resource.MustParse("2")}
			}
		})
	}
	for _, c := range []struct {
		pod    *corev1.Pod
		code   int
		reason string
	}{
		{oom(137, "64Mi"), 137, "OOMKilled: memory limit 64Mi"},
		{oom(0, "2Gi"), 137, "OOMKilled: memory limit 2Gi"},
		{oom(137, ""), 137, "OOMKilled"},
	} {
		res, done := r.inspect(c.pod, &waits{}, time.Now())
		if !done || res.ExitCode != c.code || res.Reason != c.reason || !build.ReasonOOMKilled.Of(res.Reason) {
			t.Errorf("%+v done %v, want exit %d reason %q", res, done, c.code, c.reason)
		}
	}
}

// stepRun runs a step with r in the background.
func stepRun(ctx context.Context, r *Runner, step worker.Step, stderr io.Writer) <-chan runResult {
	out := make(chan runResult, 1)
	go func() {
		res, err := r.Run(ctx, step, io.Discard, stderr)
		out <- runResult{res, err}
	}()
	return out
}

type runResult struct {
	res worker.Result
	err error
}

// theStepPod waits for the one step pod.
func theStepPod(t *testing.T, cs *fake.Clientset) string {
	t.Helper()
	var name string
	if err := testenv.WaitFor(context.Background(), 10*time.Second, 2*time.Millisecond, func() error {
		pods, err := cs.CoreV1().Pods("builds").List(context.Background(), metav1.ListOptions{})
		if err == nil && len(pods.Items) != 1 {
			return fmt.Errorf("%d step pods", len(pods.Items))
		}
		if err == nil {
			name = pods.Items[0].Name
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return name
}

// setPod changes the step pod as the scheduler and the kubelet would.
func setPod(t *testing.T, cs *fake.Clientset, name string, mod ...func(*corev1.Pod)) {
	t.Helper()
	ctx := context.Background()
	p, err := cs.CoreV1().Pods("builds").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mod {
		m(p)
	}
	if _, err := cs.CoreV1().Pods("builds").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var eventSeq atomic.Int64

// addEvent records one of the pod's Events, as the kubelet does.
func addEvent(t *testing.T, cs *fake.Clientset, pod, reason, msg string) {
	t.Helper()
	n := eventSeq.Add(1)
	e := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%04d", pod, n), Namespace: "builds"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: "builds"},
		Type:           corev1.EventTypeNormal, Reason: reason, Message: msg, Count: 1,
		LastTimestamp: metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC).Add(time.Duration(n) * time.Second)),
	}
	if _, err := cs.CoreV1().Events("builds").Create(context.Background(), e, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podGets counts the runner's reads of step pods so far.
func podGets(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "pods" && a.GetSubresource() == "" {
			n++
		}
	}
	return n
}

// The runner tells why a step pod waits once per reason, through the
// pod's whole start: no node, the fetch image pulling, the workspace
// fetch, the step's image pulling, failing, failing again (no repeat), and
// nothing once the step runs.
func TestWatchWritesEachWaitingLineOnce(t *testing.T) {
	r, cs, _ := newRunner()
	r.Config.ImagePullTimeout = time.Hour
	var stderr testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := stepRun(ctx, r, testStep("compile"), &stderr)
	name := theStepPod(t, cs)
	prefix := "[wharfjobs] step pod " + name + " "
	errPull := "failed to pull and unpack image \"docker.io/library/golang:1.26\": 503 Service Unavailable"
	stages := []struct {
		mod    []func(*corev1.Pod)
		events [][2]string
		want   string // the line this stage writes; "" for none
	}{
		{[]func(*corev1.Pod){unscheduled(insufficientCPU)}, nil, "waiting for a node: " + insufficientCPU},
		{[]func(*corev1.Pod){onNode, initStatus(waitingCS("workspace", "wharfjobs:test", "PodInitializing", "")), stepStatus(waitingCS("step", "golang:1.26", "PodInitializing", ""))},
			[][2]string{{"Scheduled", "Successfully assigned builds/" + name + " to node-1"}, {"Pulling", `Pulling image "wharfjobs:test"`}}, `pulling image "wharfjobs:test"`},
		{[]func(*corev1.Pod){initStatus(runningCS("workspace"))},
			[][2]string{{"Pulled", `Successfully pulled image "wharfjobs:test" in 1s`}, {"Started", "Started container workspace"}}, "fetching the workspace"},
		{[]func(*corev1.Pod){initStatus(terminated("workspace", 0, "Completed"))},
			[][2]string{{"Pulling", `Pulling image "golang:1.26"`}}, `pulling image "golang:1.26"`},
		{[]func(*corev1.Pod){stepStatus(waitingCS("step", "golang:1.26", "ErrImagePull", errPull))},
			[][2]string{{"Failed", `Failed to pull image "golang:1.26": ` + errPull}}, `cannot pull image "golang:1.26": ErrImagePull: ` + errPull},
		{[]func(*corev1.Pod){stepStatus(waitingCS("step", "golang:1.26", "ImagePullBackOff", `Back-off pulling image "golang:1.26"`))},
			[][2]string{{"BackOff", `Back-off pulling image "golang:1.26"`}}, `cannot pull image "golang:1.26": ImagePullBackOff: Back-off pulling image "golang:1.26"`},
		{[]func(*corev1.Pod){stepStatus(waitingCS("step", "golang:1.26", "ErrImagePull", errPull))}, nil, ""},
		{[]func(*corev1.Pod){stepStatus(waitingCS("step", "golang:1.26", "ContainerCreating", ""))},
			[][2]string{{"Pulling", `Pulling image "golang:1.26"`}}, ""},
		{[]func(*corev1.Pod){stepStatus(runningCS("step")), func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }}, nil, ""},
	}
	want := []string{"[wharfjobs] step pod " + name + " created (image golang:1.26)"}
	for i, s := range stages {
		for _, e := range s.events {
			addEvent(t, cs, name, e[0], e[1])
		}
		setPod(t, cs, name, s.mod...)
		if s.want != "" {
			want = append(want, prefix+s.want)
		}
		// The runner has read the stage's pod, and read it again: the
		// fake records its reads in order, so the first read after the
		// update saw the stage, and the second one began once the poll
		// of the first (the Events it listed, the line it wrote) was over.
		gets := podGets(cs)
		if err := testenv.WaitFor(ctx, 10*time.Second, time.Millisecond, func() error {
			if n := podGets(cs); n < gets+2 {
				return fmt.Errorf("stage %d: %d reads of the pod since", i, n-gets)
			}
			return nil
		}); err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
	}
	setPod(t, cs, name, stepStatus(terminated("step", 0, "Completed")), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	rr := <-done
	if rr.err != nil || rr.res.ExitCode != 0 || rr.res.Reason != "" || rr.res.Diagnosis != nil {
		t.Fatalf("result %+v, %v", rr.res, rr.err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
		if strings.HasPrefix(l, "[wharfjobs] step pod ") {
			got = append(got, l)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("waiting lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A step pod whose image pull fails ends the step only once the pull has
// failed for ImagePullTimeout, and tells why it waits meanwhile.
func TestImagePullTimeoutInRun(t *testing.T) {
	const limit = 300 * time.Millisecond
	r, cs, _ := newRunner()
	r.Config.ImagePullTimeout = limit
	var stderr testenv.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := stepRun(ctx, r, testStep("compile"), &stderr)
	name := theStepPod(t, cs)
	failingSince := time.Now()
	setPod(t, cs, name, onNode, stepStatus(waitingCS("step", "golang:1.26", "ImagePullBackOff", `Back-off pulling image "golang:1.26"`)))
	rr := <-done
	if waited := time.Since(failingSince); waited < limit {
		t.Errorf("the step ended %s after its pull began failing, before the %s limit", waited, limit)
	}
	if want := `ImagePullBackOff: golang:1.26: Back-off pulling image "golang:1.26"`; rr.err != nil || rr.res.ExitCode != -1 || rr.res.Reason != want {
		t.Fatalf("result %+v, %v; want reason %q", rr.res, rr.err, want)
	}
	if want := "[wharfjobs] step pod " + name + ` cannot pull image "golang:1.26": ImagePullBackOff: Back-off pulling image "golang:1.26"` + "\n"; strings.Count(stderr.String(), want) != 1 {
		t.Fatalf("stderr %q, want the line %q once", stderr.String(), want)
	}
	if d := rr.res.Diagnosis; d == nil || len(d.Pods) != 1 || len(d.Pods[0].Containers) != 1 || d.Pods[0].Containers[0].Reason != "ImagePullBackOff" {
		t.Fatalf("diagnosis %+v", rr.res.Diagnosis)
	}
}

// A failed step's result carries its pod's diagnosis: the step's own
// stage and step, the container's end and limits, the pod's Events and
// its node's conditions, read before the pod is deleted. A step that
// succeeded has none.
func TestDiagnosisOfAFailedStep(t *testing.T) {
	r, cs, _ := newRunner()
	r.Config.MemoryLimit = "64Mi"
	ctx := context.Background()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue, Reason: "KubeletHasInsufficientMemory"},
	}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	step := testStep("unit")
	step.Stage = "test"
	done := stepRun(ctx, r, step, io.Discard)
	name := theStepPod(t, cs)
	addEvent(t, cs, name, "Started", "Started container step")
	setPod(t, cs, name, onNode, initStatus(terminated("workspace", 0, "Completed")), stepStatus(terminated("step", 137, "OOMKilled")),
		func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed })
	rr := <-done
	if rr.err != nil || rr.res.ExitCode != 137 || rr.res.Reason != "OOMKilled: memory limit 64Mi" {
		t.Fatalf("result %+v, %v", rr.res, rr.err)
	}
	d := rr.res.Diagnosis
	if d == nil || len(d.Pods) != 1 {
		t.Fatalf("diagnosis %+v", d)
	}
	p := d.Pods[0]
	if p.Name != name || p.Role != "step" || p.Stage != "test" || p.Step != "unit" || p.Node != "node-1" {
		t.Errorf("pod %+v", p)
	}
	var step0 *build.ContainerDiagnosis
	for i, c := range p.Containers {
		if c.Name == "step" {
			step0 = &p.Containers[i]
		}
	}
	if step0 == nil || step0.ExitCode == nil || *step0.ExitCode != 137 || step0.Reason != "OOMKilled" || step0.MemoryLimit != "64Mi" || step0.Signal != 9 {
		t.Errorf("step container %+v", step0)
	}
	if c := p.Cause(); c != "OOMKilled at 64Mi limit" {
		t.Errorf("cause %q", c)
	}
	if len(d.Events) != 1 || d.Events[0].Reason != "Started" || len(d.Nodes) != 1 || d.Nodes[0].Name != "node-1" ||
		len(d.Nodes[0].Conditions) != 1 || !strings.HasPrefix(d.Nodes[0].Conditions[0], "MemoryPressure=True") || len(d.Errors) != 0 {
		t.Errorf("events %+v, nodes %+v, errors %v", d.Events, d.Nodes, d.Errors)
	}
	// Read before the pod went: the Events listed, then the pod deleted.
	listed, deleted := -1, -1
	for i, a := range cs.Actions() {
		switch {
		case a.GetVerb() == "list" && a.GetResource().Resource == "events":
			listed = i
		case a.GetVerb() == "delete" && a.GetResource().Resource == "pods":
			deleted = i
		}
	}
	if listed < 0 || deleted < 0 || listed > deleted {
		t.Errorf("events listed at action %d, pod deleted at %d", listed, deleted)
	}
}

// A step whose context ran out (the worker's step timeout) still gets a
// diagnosis of what its pod was waiting for; one cancelled does not (see
// TestKeepOnFailureAndCancel).
func TestDiagnosisOfATimedOutStep(t *testing.T) {
	r, cs, _ := newRunner()
	ctx := &expiring{Context: context.Background(), done: make(chan struct{})}
	done := stepRun(ctx, r, testStep("slow"), io.Discard)
	name := theStepPod(t, cs)
	setPod(t, cs, name, unscheduled(insufficientCPU))
	gets := podGets(cs)
	if err := testenv.WaitFor(context.Background(), 10*time.Second, time.Millisecond, func() error {
		if podGets(cs) < gets+1 {
			return errors.New("the runner has not read the pod since")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	close(ctx.done) // the step's time is up
	rr := <-done
	if rr.err != nil || rr.res.Reason != "Cancelled" || rr.res.Diagnosis == nil || rr.res.Diagnosis.Pods[0].Unschedulable != insufficientCPU {
		t.Fatalf("result %+v, %v, diagnosis %+v", rr.res, rr.err, rr.res.Diagnosis)
	}
}

// expiring is a context whose deadline passes when the test says so.
type expiring struct {
	context.Context
	done chan struct{}
}

func (c *expiring) Done() <-chan struct{} { return c.done }

func (c *expiring) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
