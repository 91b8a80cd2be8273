package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// exampleImages are the images testdata's pipelines name. No registry can
// be reached here: each is the busybox test image under that name.
var exampleImages = []string{"golang:1.26", "alpine:latest", "golangci/golangci-lint:latest", "curlimages/curl:latest"}

// exampleRunner is the runner named: local, or the docker runner on a
// private Docker Engine or Podman holding exampleImages.
func exampleRunner(t *testing.T, name string) worker.StepRunner {
	t.Helper()
	var e *enginetest.Engine
	switch name {
	case "local":
		return localrun.Runner{KillGrace: time.Second}
	case "docker":
		e = engines.Docker(t)
	case "podman":
		e = engines.Podman(t)
	default:
		t.Fatalf("no runner %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, img := range exampleImages {
		if err := e.LoadBusybox(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	r, err := dockerrun.New(dockerrun.Config{Host: e.Host, PullPolicy: "Never", StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestDockerStepInContainers: a docker step runs kaniko in a container of
// the kaniko image, as root, with the step's workspace as its context, in
// the docker runner on Docker and on Podman.
func TestDockerStepInContainers(t *testing.T) {
	executor, err := testenv.CachedBinary("kaniko-executor", "WHARFJOBS_KANIKO_BIN", "kaniko")
	if err != nil {
		t.Fatal(err)
	}
	img, err := enginetest.KanikoImage("kaniko:e2e", executor)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []func(testing.TB) *enginetest.Engine{engines.Docker, engines.Podman} {
		e := start(t)
		t.Run(e.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := e.LoadImage(ctx, img); err != nil {
				t.Fatal(err)
			}
			r, err := dockerrun.New(dockerrun.Config{Host: e.Host, PullPolicy: "Never", ToolNetwork: "none"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cfg := testConfig(t)
			cfg.Images = pipeline.DefaultImages
			cfg.Images.Kaniko = "kaniko:e2e"
			req := job.Request{BuildRef: "21", Instance: "docker-step-" + e.Name, GitFullURL: gitRepo(t, "docker-step"), GitBranch: "main", RepoName: "app"}
			if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
				t.Fatal(err)
			}
			code, st := worker.Run(ctx, s, req, r, cfg)
			text := logText(t, s, req.Ref())
			if code != 0 || st.Status != build.Completed {
				t.Fatalf("exit %d, status %s %q\n%s", code, st.Status, st.Reason, text)
			}
			for _, want := range []string{"(image kaniko:e2e, network none)", "Skipping push to container registry due to --no-push flag"} {
				if !strings.Contains(text, want) {
					t.Fatalf("log lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func logText(t *testing.T, s blob.Store, ref string) string {
	t.Helper()
	rc, err := build.OpenLog(context.Background(), s, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b strings.Builder
	if err := build.ScanRecords(rc, func(r build.Record) error { b.WriteString(r.Text + "\n"); return nil }); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestKubectlStepInContainers: a kubectl step runs the kubectl image with
// the kubeconfig its cluster names (the ConfigMap kubectl-config, a
// directory of WHARFJOBS_DOCKER_SECRETS_DIR here) and applies its manifest
// to a real API server, in the docker runner on Docker and on Podman.
func TestKubectlStepInContainers(t *testing.T) {
	c, err := testcluster.Start(testcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	kubeconfig, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(secrets, "kubectl-config"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "kubectl-config", "config"), kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := testcluster.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	files, err := image.HostBinary(bin, "/usr/local/bin/kubectl")
	if err != nil {
		t.Fatal(err)
	}
	img, err := enginetest.BusyboxImage("kubectl:e2e")
	if err != nil {
		t.Fatal(err)
	}
	img.Files = append(img.Files, files...)
	img.Env = []string{"PATH=/usr/local/bin:/bin"}
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []func(testing.TB) *enginetest.Engine{engines.Docker, engines.Podman} {
		e := start(t)
		t.Run(e.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			_ = c.Client.CoreV1().ConfigMaps("default").Delete(ctx, "applied-by-a-kubectl-step", metav1.DeleteOptions{})
			if err := e.LoadImage(ctx, img); err != nil {
				t.Fatal(err)
			}
			// The API server listens on this machine's loopback.
			r, err := dockerrun.New(dockerrun.Config{Host: e.Host, PullPolicy: "Never", ToolNetwork: "host", SecretsDir: secrets})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cfg := testConfig(t)
			cfg.Images = pipeline.DefaultImages
			cfg.Images.Kubectl = "kubectl:e2e"
			req := job.Request{BuildRef: "22", Instance: "kubectl-step-" + e.Name, GitFullURL: gitRepo(t, "kubectl-step"), GitBranch: "main", RepoName: "app"}
			if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
				t.Fatal(err)
			}
			code, st := worker.Run(ctx, s, req, r, cfg)
			text := logText(t, s, req.Ref())
			if code != 0 || st.Status != build.Completed || !strings.Contains(text, "configmap/applied-by-a-kubectl-step created") {
				t.Fatalf("exit %d, status %s %q\n%s", code, st.Status, st.Reason, text)
			}
			cm, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "applied-by-a-kubectl-step", metav1.GetOptions{})
			if err != nil || cm.Data["from"] != "the docker runner" {
				t.Fatalf("the applied ConfigMap: %+v %v", cm, err)
			}
		})
	}
}
