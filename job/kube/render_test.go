package kube

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/wharfjobs/wharfjobs/job"
)

func TestJobName(t *testing.T) {
	seen := map[string]string{}
	for _, c := range [][2]string{{"", "1"}, {"prod", "1"}, {"Prod Cluster #2", "123456789"}, {strings.Repeat("very-long-instance-", 5), "42"}, {strings.Repeat("very-long-instance-", 5), "43"}} {
		name := JobName(c[0], c[1])
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > MaxNameLen {
			t.Fatalf("JobName(%q, %q) = %q: %v (len %d)", c[0], c[1], name, errs, len(name))
		}
		if name != JobName(c[0], c[1]) {
			t.Fatal("JobName is not deterministic")
		}
		if prev, dup := seen[name]; dup {
			t.Fatalf("%v and %s share the name %s", c, prev, name)
		}
		seen[name] = c[0] + "/" + c[1]
	}
}

func TestRenderKeepsSecretsOutOfTheJob(t *testing.T) {
	req := job.Request{BuildRef: "9", Instance: "prod", GitFullURL: "https://g/x.git", GitToken: "tok-secret", Vars: map[string]any{"PW": "pw-secret", "N": 3}}
	j, sec, err := Render(req, Config{MemoryLimit: "500Mi"}, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	if strings.Contains(string(b), "tok-secret") || strings.Contains(string(b), "pw-secret") {
		t.Fatal("a secret is in the Job spec")
	}
	if string(sec.Data[GitTokenKey]) != "tok-secret" || string(sec.Data[VarsKey]) != `{"N":3,"PW":"pw-secret"}` {
		t.Fatalf("secret data %q", sec.Data)
	}
	c := j.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["GOMEMLIMIT"] != "419430400" || env["WHARFJOBS_BUILD_REF"] != "prod-9" {
		t.Fatalf("env %v", env)
	}
	if j.Namespace != "wharfjobs" || j.Spec.Template.Spec.ServiceAccountName != "wharfjobs-worker" || *j.Spec.ActiveDeadlineSeconds != 7200 {
		t.Fatal("zero config fields did not take the defaults")
	}
	if _, _, err := Render(req, Config{CPULimit: "two"}, false); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_WORKER_CPU_LIMIT") {
		t.Fatalf("bad quantity: %v", err)
	}
}

func TestStatesFindsStuckWorkers(t *testing.T) {
	cs := fake.NewClientset()
	l := &Launcher{Client: cs, Config: Config{Namespace: "b"}}
	ctx := context.Background()
	if _, _, err := l.Launch(ctx, job.Request{BuildRef: "1", GitFullURL: "https://g/x.git"}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "b", Labels: Labels(job.Request{BuildRef: "1"}, ComponentWorker)},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "worker", Image: "wharfjobs:nope",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}}
	if _, err := cs.CoreV1().Pods("b").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	states, err := l.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if states["1"].Stuck != "ImagePullBackOff: wharfjobs:nope" {
		t.Fatalf("states %+v", states)
	}
}

// States tells why a pending worker pod waits: the scheduler's message,
// or the image its Events say is being pulled.
func TestStatesTellWhyAWorkerWaits(t *testing.T) {
	cs := fake.NewClientset()
	l := &Launcher{Client: cs, Config: Config{Namespace: "b"}}
	ctx := context.Background()
	for _, ref := range []string{"1", "2"} {
		if _, _, err := l.Launch(ctx, job.Request{BuildRef: ref, GitFullURL: "https://g/x.git"}); err != nil {
			t.Fatal(err)
		}
	}
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "w1", Namespace: "b", Labels: Labels(job.Request{BuildRef: "1"}, ComponentWorker)},
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient memory.", LastTransitionTime: metav1.Now()}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "w2", Namespace: "b", Labels: Labels(job.Request{BuildRef: "2"}, ComponentWorker)},
			Spec:   corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodPending}},
	}
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods("b").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "w2.1", Namespace: "b"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "w2"},
		Reason: "Pulling", Message: `Pulling image "wharfjobs:1.2"`, LastTimestamp: metav1.Now()}
	if _, err := cs.CoreV1().Events("b").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	states, err := l.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := states["1"].Waiting; got != "waiting for a node: 0/3 nodes are available: 3 Insufficient memory." {
		t.Errorf("build 1 waiting %q", got)
	}
	if got := states["2"].Waiting; got != `pulling image "wharfjobs:1.2"` {
		t.Errorf("build 2 waiting %q", got)
	}
	if states["1"].Stuck != "" {
		t.Errorf("a fresh unschedulable pod is stuck: %q", states["1"].Stuck)
	}
}
