package kuberun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	k8stesting "k8s.io/client-go/testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

type fakeWorkspaces struct{ calls int }

func (f *fakeWorkspaces) Publish(context.Context, string, string) (string, error) {
	f.calls++
	return "https://minio.example/ws.tar.gz?X-Amz-Signature=secret", nil
}

func (f *fakeWorkspaces) PresignPlan(_ context.Context, p stepexec.Plan) (stepexec.Plan, error) {
	p.URLs = map[string]string{}
	for _, r := range p.Restore {
		for _, k := range r.Keys {
			p.URLs[k] = "https://minio.example/" + k + "?X-Amz-Signature=get"
		}
	}
	for _, c := range p.Collect {
		p.URLs[c.Key] = "https://minio.example/" + c.Key + "?X-Amz-Signature=put"
	}
	return p, nil
}

func newRunner() (*Runner, *fake.Clientset, *fakeWorkspaces) {
	cs := fake.NewClientset()
	ws := &fakeWorkspaces{}
	return &Runner{Client: cs, Workspaces: ws, Config: Config{
		Namespace: "builds", OwnerName: "wharf-build-42-abc", OwnerUID: "uid-1", FetchImage: "wharfjobs:test",
		PullPolicy: corev1.PullIfNotPresent, CPURequest: "100m", MemoryLimit: "1Gi", PollInterval: 5 * time.Millisecond,
	}}, cs, ws
}

func testStep(name string) worker.Step {
	return worker.Step{Ref: "42", Stage: "build", Name: name, Workspace: "/ws",
		Container: pipeline.Container{Image: "golang:1.26", Shell: "/bin/sh", Cmds: []string{"go build", "go test"}},
		Env:       map[string]string{"BUILD_REF": "42"}}
}

// drive waits for the step pod and then sets its status with set.
func drive(t *testing.T, cs *fake.Clientset, set func(*corev1.Pod)) {
	t.Helper()
	go func() {
		ctx := context.Background()
		var pod *corev1.Pod
		// Without a pod in time, the Run under test fails by itself.
		if testenv.WaitFor(ctx, 10*time.Second, 2*time.Millisecond, func() error {
			pods, err := cs.CoreV1().Pods("builds").List(ctx, metav1.ListOptions{})
			if err == nil && len(pods.Items) == 0 {
				err = errors.New("no step pod yet")
			}
			if err == nil {
				pod = &pods.Items[0]
			}
			return err
		}) != nil {
			return
		}
		set(pod)
		_, _ = cs.CoreV1().Pods("builds").UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	}()
}

func terminated(name string, code int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}}
}

func TestPodSpec(t *testing.T) {
	r, _, _ := newRunner()
	pod, err := r.Pod(testStep("compile"), "ws-secret")
	if err != nil {
		t.Fatal(err)
	}
	if errs := validation.IsDNS1123Subdomain(pod.Name); len(errs) > 0 || len(pod.Name) > 63 {
		t.Fatalf("pod name %q: %v", pod.Name, errs)
	}
	if pod.Labels[job.LabelManagedBy] != "wharfjobs" || pod.Labels[job.LabelBuildRef] != "42" || pod.Labels[job.LabelStep] != "compile" {
		t.Fatalf("labels %v", pod.Labels)
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "Pod" || pod.OwnerReferences[0].UID != "uid-1" {
		t.Fatalf("owner %v", pod.OwnerReferences)
	}
	if *pod.Spec.AutomountServiceAccountToken || pod.Spec.ServiceAccountName != "" {
		t.Fatal("a step without serviceAccount gets a token")
	}
	c := pod.Spec.Containers[0]
	// One script, no set -e, from a file (not argv): wharf-cmd joins cmds
	// with newlines for `sh -c` (pkg/steps/container.go:76,84 at 421514f).
	if strings.Join(c.Command, " ") != "/bin/sh "+ScriptPath+"/script" || c.WorkingDir != WorkspacePath {
		t.Fatalf("command %q", c.Command)
	}
	if sec := r.ScriptSecret(pod, testStep("compile"), nil); sec.Name != pod.Name || sec.StringData["script"] != "go build\ngo test" || len(sec.OwnerReferences) != 1 {
		t.Fatalf("script secret %+v", sec)
	}
	if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Limits.Memory().String() != "1Gi" {
		t.Fatalf("resources %v", c.Resources)
	}
	init := pod.Spec.InitContainers[0]
	if init.Env[0].ValueFrom.SecretKeyRef.Name != "ws-secret" || init.Env[0].Value != "" {
		t.Fatal("the workspace URL must come from a Secret, not the Pod spec")
	}
	step := testStep("deploy")
	step.Instance, step.ProjectID = "prod", "17"
	step.Container.ServiceAccount, step.Container.SecretName = "deployer", "kubeconfig"
	if _, err := r.Pod(step, "ws-secret"); !errors.Is(err, ErrServiceAccountNotAllowed) || !strings.Contains(err.Error(), "deployer") {
		t.Fatalf("a service account outside the allow-list: %v", err)
	}
	r.Config.ServiceAccounts = []string{"deployer"}
	pod, err = r.Pod(step, "ws-secret")
	if err != nil {
		t.Fatal(err)
	}
	const projectSecret = "wharf-prod-project-17-secretname-kubeconfig"
	if !*pod.Spec.AutomountServiceAccountToken || pod.Spec.ServiceAccountName != "deployer" || pod.Spec.Volumes[2].Secret.SecretName != projectSecret ||
		pod.Spec.Containers[0].EnvFrom[0].SecretRef.Name != projectSecret {
		t.Fatalf("named service account or secret not applied: %+v", pod.Spec)
	}
	r.Config.CPULimit = "lots"
	if _, err := r.Pod(testStep("x"), "s"); err == nil || !strings.Contains(err.Error(), `cpu "lots"`) {
		t.Fatalf("bad quantity: %v", err)
	}
}

func TestPhases(t *testing.T) {
	cases := []struct {
		name   string
		set    func(*corev1.Pod)
		code   int
		reason string
	}{
		{"succeeded", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 0, "Completed")}
		}, 0, ""},
		{"exit 3", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 3, "Error")}
		}, 3, ""},
		{"oom", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 137, "OOMKilled")}
		}, 137, "OOMKilled: memory limit 1Gi"},
		{"image pull", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "step", Image: "golang:nope", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "ImagePullBackOff", Message: `Back-off pulling image "golang:nope"`}}}}
		}, -1, `ImagePullBackOff: golang:nope: Back-off pulling image "golang:nope"`},
		{"evicted", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.Reason, p.Status.Message = "Evicted", "The node was low on resource: memory."
		}, -1, "Evicted: The node was low on resource: memory."},
		{"workspace fetch failed", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{terminated("workspace", 1, "Error")}
		}, -1, "WorkspaceFetchFailed: exit 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, cs, ws := newRunner()
			drive(t, cs, c.set)
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := r.Run(ctx, testStep("compile"), &out, &errb)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != c.code || !strings.HasPrefix(res.Reason, c.reason) {
				t.Fatalf("result %+v, want exit %d reason %q", res, c.code, c.reason)
			}
			if failed := c.code != 0; (res.Diagnosis != nil) != failed {
				t.Fatalf("diagnosis %+v of a step that failed: %v", res.Diagnosis, failed)
			}
			pods, _ := cs.CoreV1().Pods("builds").List(ctx, metav1.ListOptions{})
			if len(pods.Items) != 0 {
				t.Fatal("step pod not deleted after the step")
			}
			secrets, _ := cs.CoreV1().Secrets("builds").List(ctx, metav1.ListOptions{})
			if len(secrets.Items) != 1 || ws.calls != 1 {
				t.Fatalf("%d workspace secrets, %d publishes", len(secrets.Items), ws.calls)
			}
			if c.code == 0 && !strings.Contains(out.String(), "fake logs") {
				t.Fatalf("step log not streamed: %q", out.String())
			}
		})
	}
}

func TestKeepOnFailureAndCancel(t *testing.T) {
	r, cs, _ := newRunner()
	r.Config.KeepOnFailure = true
	drive(t, cs, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 1, "Error")}
	})
	res, err := r.Run(context.Background(), testStep("kept"), &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil || res.ExitCode != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	pods, _ := cs.CoreV1().Pods("builds").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 1 {
		t.Fatal("failed step pod not kept")
	}

	r, cs, _ = newRunner()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res, err = r.Run(ctx, testStep("slow"), &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil || res.Reason != "Cancelled" || res.Diagnosis != nil {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	pods, _ = cs.CoreV1().Pods("builds").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 0 {
		t.Fatal("cancelled step pod not deleted")
	}
}

func TestArchiveExtractRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "f.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("a/b/f.txt", filepath.Join(src, "link"))
	var buf bytes.Buffer
	if err := Archive(src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := Extract(&buf, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "link")); string(b) != "hello" {
		t.Fatalf("through the symlink: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "run.sh")); fi.Mode().Perm()&0o100 == 0 {
		t.Fatal("executable bit lost")
	}
}

// A step pod's init container fetches its workspace from a store that is
// busy at first (503 SlowDown, as MinIO answers when it holds too many
// requests): it tries again instead of failing the step with
// WorkspaceFetchFailed; a workspace that is gone (404) fails at once.
func TestFetchRetriesABusyStore(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f.txt"), []byte("hello"), 0o644)
	var archive bytes.Buffer
	if err := Archive(src, &archive); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	requests := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.URL.Path]++
		n := requests[r.URL.Path]
		mu.Unlock()
		switch {
		case r.URL.Path == "/gone":
			http.NotFound(w, r)
		case n <= 2:
			http.Error(w, "<Code>SlowDown</Code>", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write(archive.Bytes())
		}
	}))
	defer ts.Close()
	dst := t.TempDir()
	if err := Fetch(context.Background(), ts.URL+"/ws?X-Amz-Signature=sekrit", dst, time.Minute); err != nil {
		t.Fatalf("fetch through two 503s: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "f.txt")); err != nil || string(b) != "hello" || requests["/ws"] != 3 {
		t.Fatalf("fetched %q (%v) after %d requests, want hello after 3", b, err, requests["/ws"])
	}
	err := Fetch(context.Background(), ts.URL+"/gone?X-Amz-Signature=sekrit", t.TempDir(), time.Minute)
	if err == nil || strings.Contains(err.Error(), "sekrit") || requests["/gone"] != 1 {
		t.Fatalf("gone: %v after %d requests, want an error (no signature) after 1", err, requests["/gone"])
	}
}

// The mounts and secret variables the step types of wharf-cmd need
// (job/pipeline's expansion) reach the Pod only for the project's own
// Secrets and the operator's shared ones: a pipeline naming another
// build's Secret as its registry secret gets no Pod.
func TestPodMountsAndSecretEnv(t *testing.T) {
	r, _, _ := newRunner()
	r.Config.SharedSecrets, r.Config.SharedConfigMaps = []string{"gitlab-registry"}, []string{"kubectl-config"}
	step := testStep("image")
	step.Instance, step.ProjectID = "prod", "17"
	step.Container.SecretName = "build-args"
	step.Container.SecretEnv = map[string]string{"NPM_TOKEN": "npm"}
	step.Container.Env = map[string]string{"KUBECONFIG": "/var/run/wharf/kube/config", "BUILD_REF": "from-the-step-type"}
	step.Container.Mounts = []pipeline.Mount{
		{Secret: "gitlab-registry", Path: "/kaniko/.docker", Items: map[string]string{".dockerconfigjson": "config.json"}},
		{ConfigMap: "kubectl-config", Path: "/var/run/wharf/kube"},
		{Secret: "wharf-prod-project-17-secretname-charts", Path: "/etc/helm/registry", Items: map[string]string{"config.json": "config.json"}},
	}
	pod, err := r.Pod(step, "ws")
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if ref := env["NPM_TOKEN"].ValueFrom; ref == nil || ref.SecretKeyRef.Name != "wharf-prod-project-17-secretname-build-args" || ref.SecretKeyRef.Key != "npm" || len(c.EnvFrom) != 0 {
		t.Fatalf("secretArgs variable %+v, envFrom %+v", env["NPM_TOKEN"], c.EnvFrom)
	}
	if env["KUBECONFIG"].Value != "/var/run/wharf/kube/config" || env["BUILD_REF"].Value != "from-the-step-type" {
		t.Fatalf("the step type's environment is not the container's: %+v", c.Env)
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounted[m.MountPath] = m.Name
	}
	for _, v := range pod.Spec.Volumes {
		for path, name := range mounted {
			if name != v.Name {
				continue
			}
			switch path {
			case "/kaniko/.docker":
				if v.Secret == nil || v.Secret.SecretName != "gitlab-registry" || v.Secret.Items[0].Key != ".dockerconfigjson" || v.Secret.Items[0].Path != "config.json" || !*v.Secret.Optional {
					t.Errorf("registry volume %+v", v)
				}
			case "/var/run/wharf/kube":
				if v.ConfigMap == nil || v.ConfigMap.Name != "kubectl-config" {
					t.Errorf("kubeconfig volume %+v", v)
				}
			}
		}
	}
	for _, bad := range []pipeline.Mount{
		{Secret: "wharf-build-41", Path: "/kaniko/.docker", Items: map[string]string{".dockerconfigjson": "config.json"}},
		{Secret: "wharfjobs-store", Path: "/x"},
		{Secret: "wharf-prod-project-18-secretname-charts", Path: "/x"}, // another project's
		{ConfigMap: "wharfjobs-worker", Path: "/x"},
	} {
		s := step
		s.Container.Mounts = []pipeline.Mount{bad}
		if _, err := r.Pod(s, "ws"); !errors.Is(err, ErrMountNotAllowed) {
			t.Errorf("mount %+v: %v, want ErrMountNotAllowed", bad, err)
		}
	}
}

// By default a step runs as RunAsUser with no capabilities (restricted);
// with AllowRoot (kaniko) as the image's user with the runtime's default
// capabilities (baseline: root cannot even chown without them), and never
// with privilege escalation.
func TestPodSecurityRootOrNot(t *testing.T) {
	r, _, _ := newRunner()
	pod, err := r.Pod(testStep("x"), "ws")
	if err != nil {
		t.Fatal(err)
	}
	sc := pod.Spec.Containers[0].SecurityContext
	if ps := pod.Spec.SecurityContext; ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || *ps.RunAsUser != 65532 || sc.Capabilities == nil || sc.Capabilities.Drop[0] != "ALL" || *sc.AllowPrivilegeEscalation {
		t.Fatalf("default step security: pod %+v container %+v", ps, sc)
	}
	// Root for one step type only: a docker step, not a container step.
	r.Config.RootStepTypes = []string{"docker"}
	if pod, _ := r.Pod(testStep("x"), "ws"); pod.Spec.SecurityContext.RunAsNonRoot == nil {
		t.Fatal("a container step runs as root with STEP_ROOT_TYPES=docker")
	}
	kaniko := testStep("image")
	kaniko.Type = "docker"
	pod, _ = r.Pod(kaniko, "ws")
	sc = pod.Spec.Containers[0].SecurityContext
	if ps := pod.Spec.SecurityContext; ps.RunAsNonRoot != nil || ps.RunAsUser != nil || sc.Capabilities != nil || *sc.AllowPrivilegeEscalation {
		t.Fatalf("root step security: pod %+v container %+v", ps, sc)
	}
}

// A step that declares files runs `wharfjobs step-exec` from the tools
// volume the init container fills, with its plan (pre-signed URLs only,
// no store credentials) in the step's own Secret; a step that declares
// none keeps its image's command untouched.
func TestPodWithFiles(t *testing.T) {
	r, cs, _ := newRunner()
	step := testStep("unit")
	step.Files = stepexec.Plan{
		Restore: []stepexec.Restore{{What: "artifacts of build/compile", Keys: []string{"builds/42/steps/build/compile/artifacts.tar.zst"}}},
		Collect: []stepexec.Collect{{What: "test results", Key: "builds/42/steps/build/unit/test-results.tar.zst", Paths: []string{"r/*.xml"}, When: pipeline.Always}},
	}
	pod, err := r.Pod(step, "ws-secret")
	if err != nil {
		t.Fatal(err)
	}
	c, init := pod.Spec.Containers[0], pod.Spec.InitContainers[0]
	want := []string{ToolsPath + "/wharfjobs", "step-exec", "--files", ScriptPath + "/files.json", "--tmp", TmpPath, "--", "/bin/sh", ScriptPath + "/script"}
	if !slices.Equal(c.Command, want) {
		t.Fatalf("step command %q, want %q", c.Command, want)
	}
	if got := strings.Join(init.Args, " "); got != "workspace-fetch "+WorkspacePath+" --files "+ScriptPath+"/files.json --install "+ToolsPath {
		t.Fatalf("init args %q", got)
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name+":"+m.MountPath] = m.ReadOnly
	}
	if ro, ok := mounts["tools:"+ToolsPath]; !ok || !ro {
		t.Fatalf("step mounts %v: want the tools read-only", mounts)
	}
	// Run creates the Secret with the plan: URLs, nothing else secret.
	// The reactor goes in before drive starts using the clientset: the
	// fake's reactor chain is not safe to change while it is in use.
	r.Config.KeepOnFailure = true
	secrets := make(chan *corev1.Secret, 1)
	cs.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if s := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret); s.StringData["files.json"] != "" {
			secrets <- s
		}
		return false, nil, nil
	})
	drive(t, cs, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 0, "Completed")}
	})
	if _, err := r.Run(context.Background(), step, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	sec := <-secrets
	var plan stepexec.Plan
	if err := json.Unmarshal([]byte(sec.StringData["files.json"]), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.URLs["builds/42/steps/build/unit/test-results.tar.zst"] == "" || plan.URLs["builds/42/steps/build/compile/artifacts.tar.zst"] == "" || len(plan.URLs) != 2 {
		t.Fatalf("plan URLs %v", plan.URLs)
	}
	// The termination message step-exec leaves becomes the step's reason.
	res, done := r.inspect(&corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "step", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 1, Message: "OutputsFailed: artifacts: out/big.bin is 2 KiB, over the size limit"}}}}}}, &waits{}, time.Now())
	if !done || res.Reason != "OutputsFailed: artifacts: out/big.bin is 2 KiB, over the size limit" {
		t.Fatalf("result %+v", res)
	}
	// A step's own program writing a termination message is not a reason.
	res, _ = r.inspect(&corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "step", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 0, Message: "all good"}}}}}}, &waits{}, time.Now())
	if res.Reason != "" {
		t.Fatalf("reason %q from the step's own message", res.Reason)
	}
	step.Container.OS = "windows"
	if _, err := r.Pod(step, "ws-secret"); err == nil || !strings.Contains(err.Error(), "windows") {
		t.Fatalf("windows step with files: %v", err)
	}
}

// A watch on the step pod wakes the runner as the pod changes: with a
// poll interval longer than the test's bound, the step still ends as soon
// as its pod does.
func TestPodChangesWakeTheRunner(t *testing.T) {
	r, cs, _ := newRunner()
	r.Config.PollInterval = time.Hour
	// The pod ends only after the runner has read it once (and so sleeps).
	read := make(chan struct{})
	var once sync.Once
	cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { close(read) })
		return false, nil, nil
	})
	drive(t, cs, func(p *corev1.Pod) {
		<-read
		p.Status.Phase = corev1.PodFailed
		p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 3, "Error")}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	res, err := r.Run(ctx, testStep("compile"), &out, &errb)
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("result %+v, %v (a result of -1 Cancelled: the runner slept through the pod's change)", res, err)
	}
}

// TestReleaseDeletesTheWorkspaceSecret: the workspace URL Secret, which
// every step of a build shares, goes when the worker releases the runner
// after the build's steps, not with the worker pod at the Job's TTL.
func TestReleaseDeletesTheWorkspaceSecret(t *testing.T) {
	r, cs, _ := newRunner()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"compile", "test"} {
		drive(t, cs, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{terminated("step", 0, "Completed")}
		})
		var out, errb bytes.Buffer
		if res, err := r.Run(ctx, testStep(name), &out, &errb); err != nil || res.ExitCode != 0 {
			t.Fatalf("step %s: %+v, %v", name, res, err)
		}
	}
	secrets, _ := cs.CoreV1().Secrets("builds").List(ctx, metav1.ListOptions{})
	if len(secrets.Items) != 1 {
		t.Fatalf("%d Secrets after two steps, want the one workspace URL Secret", len(secrets.Items))
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	secrets, _ = cs.CoreV1().Secrets("builds").List(ctx, metav1.ListOptions{})
	if len(secrets.Items) != 0 {
		t.Fatalf("Secret %s left after Release", secrets.Items[0].Name)
	}
	// A second Release (a cancelled build releases too) has nothing to do.
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
