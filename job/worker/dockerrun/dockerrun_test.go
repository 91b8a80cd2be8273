package dockerrun_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
)

var engines *enginetest.Engines

func TestMain(m *testing.M) { enginetest.Main(m, &engines) }

const stepImage = "busybox:e2e"

// forEngine runs f against a private Docker Engine and a private Podman,
// each holding the busybox step image, and checks after each that no
// container of ours is left.
func forEngine(t *testing.T, f func(t *testing.T, e *enginetest.Engine)) {
	for _, e := range []func(testing.TB) *enginetest.Engine{engines.Docker, engines.Podman} {
		eng := e(t)
		t.Run(eng.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := eng.LoadBusybox(ctx, stepImage); err != nil {
				t.Fatal(err)
			}
			f(t, eng)
			left, err := eng.Containers(ctx, job.LabelManagedBy+"=wharfjobs")
			if err != nil || len(left) != 0 {
				t.Fatalf("containers left behind: %v %v", left, err)
			}
		})
	}
}

func newRunner(t testing.TB, e *enginetest.Engine, edit func(*dockerrun.Config)) *dockerrun.Runner {
	t.Helper()
	cfg := dockerrun.Config{Host: e.Host, PullPolicy: "Never", StopGrace: 2 * time.Second, CPULimit: "1", MemoryLimit: "256Mi"}
	if edit != nil {
		edit(&cfg)
	}
	r, err := dockerrun.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newStep(t *testing.T, name string, cmds ...string) worker.Step {
	t.Helper()
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "README.md"), []byte("the checkout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return worker.Step{Ref: "b-" + testenv.RandomHex(4), Stage: "test", Name: name, Workspace: ws,
		Container: pipelineContainer(cmds...)}
}

func pipelineContainer(cmds ...string) pipeline.Container {
	return pipeline.Container{Image: stepImage, Cmds: cmds}
}

// stepOutput is the step's own output on a stream, without the runner's
// "[wharfjobs]" lines.
func stepOutput(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "[wharfjobs] ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func run(t *testing.T, r *dockerrun.Runner, ctx context.Context, step worker.Step) (worker.Result, string, string) {
	t.Helper()
	var stdout, stderr testenv.Buffer
	res, err := r.Run(ctx, step, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, stderr.String())
	}
	return res, stdout.String(), stderr.String()
}

// TestOutputExitAndEnvironment: every line of both streams, in order, a
// last line without a newline, the exit code, and what the step sees.
func TestOutputExitAndEnvironment(t *testing.T) {
	t.Setenv("WHARFJOBS_STORE_SECRET_KEY", "store-key-must-not-reach-steps")
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		r := newRunner(t, e, nil)
		ctx := context.Background()
		step := newStep(t, "burst", "seq 1 10000", "echo err1 >&2", "echo err2 >&2", "printf 'no newline at exit'")
		res, stdout, stderr := run(t, r, ctx, step)
		var want strings.Builder
		for i := 1; i <= 10000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
		}
		want.WriteString("no newline at exit")
		if res.ExitCode != 0 || res.Reason != "" || stdout != want.String() || stepOutput(stderr) != "err1\nerr2\n" {
			t.Fatalf("exit %d %q, %d bytes of stdout (want %d), stderr %q", res.ExitCode, res.Reason, len(stdout), want.Len(), stderr)
		}

		res, _, _ = run(t, r, ctx, newStep(t, "exit", "echo before", "exit 3", "echo never"))
		if res.ExitCode != 3 || res.Reason != "" {
			t.Fatalf("exit 3 gave %+v", res)
		}

		step = newStep(t, "env", "env | sort", "pwd", "cat README.md", "id -u", "echo written > out.txt")
		step.Env = map[string]string{"GREETING": "hi", "BUILD_REF": "7"}
		res, stdout, _ = run(t, r, ctx, step)
		if res.ExitCode != 0 {
			t.Fatalf("env step: %+v", res)
		}
		for _, w := range []string{"GREETING=hi\n", "BUILD_REF=7\n", "HOME=" + dockerrun.HomePath + "\n", "\n/workspace\nthe checkout\n" + strconv.Itoa(os.Getuid()) + "\n"} {
			if !strings.Contains(stdout, w) {
				t.Fatalf("step output lacks %q:\n%s", w, stdout)
			}
		}
		if strings.Contains(stdout, "WHARFJOBS_") || strings.Contains(stdout, "store-key") {
			t.Fatalf("the worker's settings reached the step:\n%s", stdout)
		}
		// The step wrote into a copy: the checkout is as it was.
		if _, err := os.Stat(filepath.Join(step.Workspace, "out.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the step wrote into the shared checkout: %v", err)
		}
	})
}

// TestOOMKilled: a step over its memory limit ends OOMKilled, as in a pod.
func TestOOMKilled(t *testing.T) {
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		r := newRunner(t, e, func(c *dockerrun.Config) { c.MemoryLimit = "32Mi" })
		// dd's 200 MiB block is one buffer, filled from /dev/zero.
		res, _, stderr := run(t, r, context.Background(), newStep(t, "hog", "echo allocating", "dd if=/dev/zero of=/dev/null bs=200M count=1"))
		want := "OOMKilled"
		if e.Name == "podman" {
			// Podman 4 never sets State.OOMKilled; the runner infers it.
			want = "OOMKilled: inferred: SIGKILL under the 32Mi memory limit, which Podman before 5.0 does not report as an OOM kill"
		}
		if e.Name == "docker" && res.Reason == "" && res.ExitCode == 137 {
			// Docker 20.10 on containerd 1.6 with cgroup v1 learns of an
			// OOM kill from an event that can come after the task's exit
			// and then reports OOMKilled false (seen once under a loaded
			// CI run); the runner shows what the engine reported.
			t.Logf("the engine reported the OOM-killed step as exit 137 without OOMKilled")
			return
		}
		if res.Reason != want || res.ExitCode != 137 {
			t.Fatalf("result %+v, want %s 137\n%s", res, want, stderr)
		}
	})
}

// probeImage is the step image with testdata/dial, a static TCP client:
// busybox's own wget and nc crash on their name service lookups.
func probeImage(t *testing.T) image.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dial")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/dial")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	img, err := enginetest.BusyboxImage("probe:e2e")
	if err != nil {
		t.Fatal(err)
	}
	img.Files = append(img.Files, image.File{Path: "/bin/dial", Source: bin, Mode: 0o755})
	return img
}

// TestNoNetwork: a step on network none cannot reach a server on the
// host's loopback; on the host network it can, so the check can fail.
func TestNoNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "reached the host")
			c.Close()
		}
	}()
	img := probeImage(t)
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		if err := e.LoadImage(context.Background(), img); err != nil {
			t.Fatal(err)
		}
		step := newStep(t, "isolated", "dial "+ln.Addr().String())
		step.Container.Image = "probe:e2e"
		res, stdout, stderr := run(t, newRunner(t, e, nil), context.Background(), step)
		if res.ExitCode != 1 || stdout != "" || !strings.Contains(stderr, "connect: connection refused") && !strings.Contains(stderr, "network is unreachable") {
			t.Fatalf("network none: %+v %q %s", res, stdout, stderr)
		}
		res, stdout, stderr = run(t, newRunner(t, e, func(c *dockerrun.Config) { c.Network = "host" }), context.Background(), step)
		if res.ExitCode != 0 || stdout != "reached the host" {
			t.Fatalf("network host: %+v %q %s", res, stdout, stderr)
		}
	})
}

// TestImagePullFailed: an image the engine does not have and cannot pull
// fails the step with ImagePullFailed, the image and the engine's words.
func TestImagePullFailed(t *testing.T) {
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		r := newRunner(t, e, func(c *dockerrun.Config) { c.PullPolicy = "IfNotPresent"; c.PullTimeout = 30 * time.Second })
		step := newStep(t, "nope", "echo never")
		step.Container.Image = "registry.invalid/nope:1"
		res, stdout, stderr := run(t, r, context.Background(), step)
		if !strings.HasPrefix(res.Reason, "ImagePullFailed: registry.invalid/nope:1: ") || len(res.Reason) < len("ImagePullFailed: registry.invalid/nope:1: ")+5 || res.ExitCode != -1 || stdout != "" {
			t.Fatalf("result %+v, stdout %q\n%s", res, stdout, stderr)
		}
		r = newRunner(t, e, nil) // PullPolicy Never
		res, _, _ = run(t, r, context.Background(), step)
		if !strings.Contains(res.Reason, "WHARFJOBS_STEP_PULL_POLICY=Never") {
			t.Fatalf("pull policy Never: %+v", res)
		}
	})
}

// TestCancelStopsAndRemoves: a cancelled step is stopped within its
// grace period and removed; while it runs it carries the build's labels.
func TestCancelStopsAndRemoves(t *testing.T) {
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		r := newRunner(t, e, nil)
		step := newStep(t, "sleepy", "echo started", "sleep 600")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdout, stderr testenv.Buffer
		type result struct {
			res worker.Result
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := r.Run(ctx, step, &stdout, &stderr)
			done <- result{res, err}
		}()
		if err := testenv.WaitFor(ctx, time.Minute, 20*time.Millisecond, func() error {
			if stdout.String() != "started\n" {
				return errors.New("not started")
			}
			return nil
		}); err != nil {
			t.Fatalf("%v: %q %q", err, stdout.String(), stderr.String())
		}
		for _, label := range []string{job.LabelBuildRef + "=" + step.Ref, job.LabelStage + "=test", job.LabelStep + "=sleepy", job.LabelManagedBy + "=wharfjobs"} {
			if ids, err := e.Containers(ctx, label); err != nil || len(ids) != 1 {
				t.Fatalf("containers with %s: %v %v", label, ids, err)
			}
		}
		cancel()
		stopped := time.Now()
		select {
		case got := <-done:
			// sh as PID 1 ignores SIGTERM: the kill after the grace ends it.
			if got.err != nil || got.res.Reason != "Cancelled" || got.res.ExitCode == 0 {
				t.Fatalf("cancelled step: %+v %v", got.res, got.err)
			}
			if d := time.Since(stopped); d > r.Config.StopGrace+15*time.Second {
				t.Fatalf("stopping took %s with a grace of %s", d, r.Config.StopGrace)
			}
		case <-time.After(time.Minute):
			t.Fatal("the cancelled step did not end")
		}
	})
}

// TestKeepOnFailureAndSweep: a failed step's container is kept when asked,
// and the next worker of the same build removes it before it starts.
func TestKeepOnFailureAndSweep(t *testing.T) {
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		ctx := context.Background()
		keep := newRunner(t, e, func(c *dockerrun.Config) { c.KeepOnFailure = true })
		failing := newStep(t, "fails", "exit 1")
		if res, _, _ := run(t, keep, ctx, failing); res.ExitCode != 1 {
			t.Fatalf("failing step: %+v", res)
		}
		if ids, err := e.Containers(ctx, job.LabelBuildRef+"="+failing.Ref); err != nil || len(ids) != 1 {
			t.Fatalf("kept containers: %v %v", ids, err)
		}
		next := newStep(t, "again", "echo ok")
		next.Ref = failing.Ref
		res, _, stderr := run(t, newRunner(t, e, nil), ctx, next)
		if res.ExitCode != 0 || !strings.Contains(stderr, "removed 1 container(s) an earlier worker of build "+failing.Ref+" left") {
			t.Fatalf("sweep: %+v\n%s", res, stderr)
		}
		if ids, err := e.Containers(ctx, job.LabelBuildRef+"="+failing.Ref); err != nil || len(ids) != 0 {
			t.Fatalf("after the sweep: %v %v", ids, err)
		}
	})
}

// TestSecretsDir: secretName reads the project's Secret from the secrets
// directory, as variables and as files; another project's is refused.
func TestSecretsDir(t *testing.T) {
	secrets := t.TempDir()
	own, err := job.ProjectSecretName("", "5", "creds")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(secrets, own), 0o755); err != nil {
		t.Fatal(err)
	}
	const value = "s3cr3t-'value' $HOME"
	for key, v := range map[string]string{"token": value, "not-a-name": "file only"} {
		if err := os.WriteFile(filepath.Join(secrets, own, key), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	forEngine(t, func(t *testing.T, e *enginetest.Engine) {
		// Kept, to read its configuration after it failed.
		r := newRunner(t, e, func(c *dockerrun.Config) { c.SecretsDir = secrets; c.KeepOnFailure = true })
		step := newStep(t, "secret", `echo "env $token"`, "cat "+dockerrun.SecretPath+"/token "+dockerrun.SecretPath+"/not-a-name", "exit 9")
		step.ProjectID, step.Container.SecretName = "5", "creds"
		res, stdout, stderr := run(t, r, context.Background(), step)
		if res.ExitCode != 9 || stdout != "env "+value+"\n"+value+"file only" || !strings.Contains(stderr, `secret key "not-a-name" is not a variable name`) {
			t.Fatalf("secretName: %+v %q\n%s", res, stdout, stderr)
		}
		// The value is in no part of the container's configuration, which
		// anyone who may list containers can read.
		ids, err := e.Containers(context.Background(), job.LabelBuildRef+"="+step.Ref)
		if err != nil || len(ids) != 1 {
			t.Fatalf("kept container: %v %v", ids, err)
		}
		resp, err := e.Client().Get("http://engine/v1.41/containers/" + ids[0] + "/json")
		if err != nil {
			t.Fatal(err)
		}
		inspect, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(inspect), `"Env"`) || strings.Contains(string(inspect), "s3cr3t") {
			t.Fatalf("the Secret's value is in the container's configuration:\n%s", inspect)
		}
		req, _ := http.NewRequest(http.MethodDelete, "http://engine/v1.41/containers/"+ids[0]+"?force=1", nil)
		if resp, err := e.Client().Do(req); err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("remove the kept container: %v %v", resp, err)
		}
		other := newStep(t, "other", "echo never")
		other.ProjectID = "5"
		// As a Secret, or as a ConfigMap (a kubectl step's cluster): one
		// directory holds both kinds.
		for _, m := range []pipeline.Mount{{Secret: "wharf-default-project-6-secretname-creds", Path: "/creds"}, {ConfigMap: "wharf-default-project-6-secretname-creds", Path: "/kube"}} {
			other.Container.Mounts = []pipeline.Mount{m}
			var out bytes.Buffer
			if _, err := r.Run(context.Background(), other, &out, &out); !errors.Is(err, dockerrun.ErrMountNotAllowed) {
				t.Fatalf("another project's Secret mounted as %+v: %v", m, err)
			}
		}
	})
}
