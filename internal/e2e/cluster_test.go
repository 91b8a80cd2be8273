package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/dockerfile"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

const (
	workerImage = "wharfjobs:e2e"
	stepImage   = "busybox:e2e"
	namespace   = "wharfjobs"
)

const pipelineFile = `build:
  hello:
    container:
      image: ` + stepImage + `
      cmds:
        - echo "hello from a step pod"
        - cat README.md
        - echo "step ran as $(id -u) in $(pwd)"
test:
  count:
    container:
      image: ` + stepImage + `
      cmds:
        - for i in 1 2 3; do echo "line $i"; done
`

// TestBuildRunsOnARealNode runs one build through the whole system on a
// kubelet with containerd and reports the timings docs/developing.md quotes.
func TestBuildRunsOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()

	c := startNode(ctx, t, dir, stepImageOf(t))
	importProdImage(ctx, t, c)
	// Services of this machine that pods reach at the bridge address.
	store, storeCfg := startStore(ctx, t, "e2e")
	repoURL := serveRepo(t, ctx, dir, map[string]string{".wharf-ci.yml": pipelineFile, "README.md": "# demo repository\n"})
	d := deploy(ctx, t, c, store, storeCfg, nil)
	sink, pods := d.sink, d.pods

	// wharf-api's trigger.
	ref, trigger := d.trigger(t, "7", repoURL)

	var firstLine, final time.Time
	var recs []build.Record
	var statuses []build.Status
	err := testenv.WaitFor(ctx, 5*time.Minute, 50*time.Millisecond, func() error {
		recs, statuses, _ = sink.Received(ref)
		if firstLine.IsZero() && len(recs) > 0 {
			firstLine = time.Now()
		}
		if n := len(statuses); n > 0 && statuses[n-1].Status.Final() {
			final = time.Now()
			return nil
		}
		return fmt.Errorf("%d lines and %d statuses relayed, none final", len(recs), len(statuses))
	})
	if err != nil {
		t.Fatalf("no final status relayed: %v; pods: %v; %s", err, pods.seen(), debugState(c))
	}
	running := pods.workerRunning()
	t.Logf("trigger to worker pod running: %v; to first log line at the sink: %v; to final status at the sink: %v",
		running.Sub(trigger).Round(time.Millisecond), firstLine.Sub(trigger).Round(time.Millisecond), final.Sub(trigger).Round(time.Millisecond))
	// The kubelet's own floor on this node, for the step pods' share: a
	// pod shaped like a step pod (an init container, then the container)
	// that does nothing, from create to Succeeded, and one without the
	// init container. `make bench` reads this line.
	stepShaped, plain := barePod(ctx, t, c, true), barePod(ctx, t, c, false)
	t.Logf("bench: node first-line %.3f s, final %.3f s, bare step-shaped pod %.3f s, bare one-container pod %.3f s",
		firstLine.Sub(trigger).Seconds(), final.Sub(trigger).Seconds(), stepShaped.Seconds(), plain.Seconds())

	var text strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&text, "%6.2fs [%s] %s\n", r.Time.Sub(trigger).Seconds(), r.Source(), r.Text)
	}
	t.Logf("build log (seconds after the trigger):\n%s", text.String())
	pods.mu.Lock()
	t.Logf("pods as the API server showed them (seconds after the watch began):\n%s", strings.Join(pods.timeline, "\n"))
	pods.mu.Unlock()
	last := statuses[len(statuses)-1]
	if last.Status != build.Completed {
		t.Fatalf("build ended %s (%s); log:\n%s\npods:%s", last.Status, last.Reason, text.String(), debugState(c))
	}
	for _, want := range []string{"hello from a step pod", "# demo repository", "step ran as", "line 3"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, text.String())
		}
	}
	if last.Commit == "" {
		t.Errorf("status has no commit: %+v", last)
	}
	var mem []string
	for name, rss := range c.RSS() {
		mem = append(mem, fmt.Sprintf("%s %d MiB", name, rss>>20))
	}
	sort.Strings(mem)
	t.Logf("resident memory after the build: %s", strings.Join(mem, ", "))
	seen := pods.seen()
	if len(seen[kube.ComponentWorker]) != 1 || len(seen["step"]) < 2 {
		t.Errorf("pods labelled app.kubernetes.io/managed-by=wharfjobs: %v; want one worker and a step pod per step", seen)
	}
}

// The production image, built from the Dockerfile once per run of this
// package (internal/dockerfile: about 25 s) as workerImage, and imported
// into each test's node: the end-to-end tests run what operators run.
var (
	prodOnce    sync.Once
	prodArchive string
	prodSize    int64
	prodErr     error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if prodArchive != "" {
		_ = os.RemoveAll(filepath.Dir(prodArchive))
	}
	os.Exit(code)
}

// importProdImage imports the production image into c's node, building
// it first when this run has not.
func importProdImage(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	prodOnce.Do(func() {
		t0 := time.Now()
		dir, err := os.MkdirTemp("", "wharfjobs-e2e-image-*")
		if err != nil {
			prodErr = err
			return
		}
		prodArchive = filepath.Join(dir, "wharfjobs-e2e.tar")
		if prodErr = dockerfile.Build(ctx, workerImage, "v0.0.0-e2e", prodArchive); prodErr != nil {
			return
		}
		st, err := os.Stat(prodArchive)
		if err != nil {
			prodErr = err
			return
		}
		prodSize = st.Size()
		t.Logf("production image %s built from the Dockerfile in %v: docker save %.1f MB", workerImage, time.Since(t0).Round(time.Second), float64(prodSize)/1e6)
	})
	if prodErr != nil {
		t.Fatalf("build the production image: %v", prodErr)
	}
	if err := c.ImportImage(ctx, prodArchive); err != nil {
		t.Fatal(err)
	}
}

// stepImageOf is a small step image: Debian's busybox-static.
func stepImageOf(t *testing.T) image.Image {
	t.Helper()
	files := []image.File{{Path: "/bin/busybox", Source: busybox(t), Mode: 0o755}, {Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777}}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "id", "pwd", "sleep", "env", "wc", "seq", "true", "false", "mkdir", "cp", "printf", "test", "head", "dd", "httpd", "wget", "nslookup", "nc", "grep", "sed", "tail", "timeout"} {
		files = append(files, image.File{Path: "/bin/" + applet, Link: "busybox"})
	}
	return image.Image{Name: stepImage, Files: files, Entrypoint: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
}

func busybox(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: install Debian's busybox-static (`make node-deps`)")
	}
	out, _ := exec.Command("ldd", p).CombinedOutput()
	if !strings.Contains(string(out), "not a dynamic executable") && !strings.Contains(string(out), "statically linked") {
		t.Fatalf("%s is not static (%s): install Debian's busybox-static", p, strings.TrimSpace(string(out)))
	}
	return p
}

// podWatch records the build pods by component as they appear, and when
// the worker pod first ran.
type podWatch struct {
	mu      sync.Mutex
	byComp  map[string]map[string]bool
	running time.Time
	// timeline has a line for every change of a pod's phase or container
	// states, to explain a slow build.
	timeline []string
	last     map[string]string
}

func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Running != nil:
			s += " " + cs.Name + "=running"
		case cs.State.Terminated != nil:
			s += fmt.Sprintf(" %s=exited(%d)", cs.Name, cs.State.Terminated.ExitCode)
		case cs.State.Waiting != nil:
			s += " " + cs.Name + "=waiting(" + cs.State.Waiting.Reason + ")"
		}
	}
	return s
}

func (p *podWatch) seen() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]string{}
	for comp, names := range p.byComp {
		for n := range names {
			out[comp] = append(out[comp], n)
		}
	}
	return out
}

func (p *podWatch) workerRunning() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// watchPods lists pods labelled app.kubernetes.io/managed-by=wharfjobs
// (what `kubectl get pods -l` shows) every 100 ms until ctx ends.
func watchPods(ctx context.Context, t *testing.T, c *testcluster.Cluster) *podWatch {
	p := &podWatch{byComp: map[string]map[string]bool{}, last: map[string]string{}}
	start := time.Now()
	go func() {
		for ctx.Err() == nil {
			l, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: job.LabelManagedBy + "=wharfjobs"})
			if err == nil {
				p.mu.Lock()
				for _, pod := range l.Items {
					comp := pod.Labels[job.LabelComponent]
					if p.byComp[comp] == nil {
						p.byComp[comp] = map[string]bool{}
					}
					p.byComp[comp][pod.Name] = true
					if st := podState(&pod); p.last[pod.Name] != st {
						p.last[pod.Name] = st
						p.timeline = append(p.timeline, fmt.Sprintf("%6.2fs %s: %s", time.Since(start).Seconds(), pod.Name, st))
					}
					if comp == kube.ComponentWorker && p.running.IsZero() && pod.Status.Phase != corev1.PodPending {
						p.running = time.Now()
					}
				}
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p
}

// debugState describes the pods for a failure message.
func debugState(c *testcluster.Cluster) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	if nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			fmt.Fprintf(&b, "\nnode %s taints %v", n.Name, n.Spec.Taints)
		}
	}
	for _, p := range l.Items {
		fmt.Fprintf(&b, "\npod %s/%s %s", p.Namespace, p.Name, p.Status.Phase)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			switch {
			case cs.State.Waiting != nil:
				fmt.Fprintf(&b, " [%s waiting %s: %s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Terminated != nil:
				fmt.Fprintf(&b, " [%s exited %d %s: %s]", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason, cs.State.Terminated.Message)
			}
		}
		for _, ctr := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			tail := int64(20)
			if out, err := c.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: ctr.Name, TailLines: &tail}).DoRaw(ctx); err == nil {
				fmt.Fprintf(&b, "\n  log of %s:\n%s", ctr.Name, out)
			} else {
				fmt.Fprintf(&b, "\n  no log of %s: %v", ctr.Name, err)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue && cond.Message != "" {
				fmt.Fprintf(&b, " {%s: %s}", cond.Type, cond.Message)
			}
		}
	}
	if os.Getenv("WHARFJOBS_E2E_DEBUG") != "" {
		for _, comp := range []string{"kube-apiserver", "kubelet", "containerd"} {
			fmt.Fprintf(&b, "\n--- %s ---\n%s", comp, c.Tail(comp))
		}
	}
	ev, err := c.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range ev.Items {
			if e.Type == corev1.EventTypeWarning {
				fmt.Fprintf(&b, "\nevent %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

// barePod runs a pod of the step image that does nothing (with an init
// container that does nothing first, when withInit) and returns how long
// it took from its creation until the API server showed it Succeeded:
// what the kubelet costs a pod on this node, whatever runs it.
// restricted is a container security context the namespace's
// "restricted" Pod Security profile admits.
func restricted() *corev1.SecurityContext {
	yes, no, uid := true, false, int64(65532)
	return &corev1.SecurityContext{AllowPrivilegeEscalation: &no, RunAsNonRoot: &yes, RunAsUser: &uid,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
}

func barePod(ctx context.Context, t *testing.T, c *testcluster.Cluster, withInit bool) time.Duration {
	t.Helper()
	name := "bare-pod"
	if withInit {
		name = "bare-pod-init"
	}
	no := false
	ctr := corev1.Container{Name: "main", Image: stepImage, ImagePullPolicy: corev1.PullNever, Command: []string{"/bin/true"}, SecurityContext: restricted()}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{ctr}, AutomountServiceAccountToken: &no}}
	if withInit {
		init := ctr
		init.Name = "init"
		pod.Spec.InitContainers = []corev1.Container{init}
	}
	start := time.Now()
	if _, err := c.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := testenv.WaitFor(ctx, time.Minute, 10*time.Millisecond, func() error {
		p, err := c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase != corev1.PodSucceeded {
			err = fmt.Errorf("pod %s is %s", name, p.Status.Phase)
		}
		return err
	})
	if err != nil {
		t.Fatalf("%v: %s", err, debugState(c))
	}
	took := time.Since(start)
	_ = c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	return took
}
