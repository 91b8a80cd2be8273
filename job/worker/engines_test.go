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

// stepTypeBuild runs the build of testdata/<repo> in the docker runner on
// each engine, with img loaded and the step types' images as images says,
// and returns each engine's build log after checking it Completed.
func stepTypeBuild(t *testing.T, repo string, img image.Image, cfg dockerrun.Config, images func(*pipeline.Images)) map[string]string {
	t.Helper()
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for _, start := range []func(testing.TB) *enginetest.Engine{engines.Docker, engines.Podman} {
		e := start(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := e.LoadImage(ctx, img); err != nil {
			t.Fatal(err)
		}
		cfg.Host, cfg.PullPolicy = e.Host, "Never"
		r, err := dockerrun.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		wcfg := testConfig(t)
		wcfg.Images = pipeline.DefaultImages
		images(&wcfg.Images)
		req := job.Request{BuildRef: "21", Instance: repo + "-" + e.Name, GitFullURL: gitRepo(t, repo), GitBranch: "main", RepoName: "app"}
		if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
			t.Fatal(err)
		}
		code, st := worker.Run(ctx, s, req, r, wcfg)
		logs[e.Name] = logText(t, s, req.Ref())
		if code != 0 || st.Status != build.Completed {
			t.Fatalf("%s: exit %d, status %s %q\n%s", e.Name, code, st.Status, st.Reason, logs[e.Name])
		}
	}
	return logs
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
	logs := stepTypeBuild(t, "docker-step", img, dockerrun.Config{ToolNetwork: "none"}, func(im *pipeline.Images) { im.Kaniko = "kaniko:e2e" })
	for engine, text := range logs {
		for _, want := range []string{"(image kaniko:e2e, network none)", "Skipping push to container registry due to --no-push flag"} {
			if !strings.Contains(text, want) {
				t.Fatalf("%s: log lacks %q:\n%s", engine, want, text)
			}
		}
	}
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
	img, err := enginetest.KubectlImage("kubectl:e2e", bin)
	if err != nil {
		t.Fatal(err)
	}
	// The API server listens on this machine's loopback: the host network.
	cfg := dockerrun.Config{ToolNetwork: "host", SecretsDir: secrets}
	ctx := context.Background()
	// One ConfigMap, applied by each engine's build: the second finds it
	// unchanged, so each log says what kubectl did.
	logs := stepTypeBuild(t, "kubectl-step", img, cfg, func(im *pipeline.Images) { im.Kubectl = "kubectl:e2e" })
	for engine, text := range logs {
		if !strings.Contains(text, "configmap/applied-by-a-kubectl-step ") {
			t.Fatalf("%s: kubectl did not apply the manifest:\n%s", engine, text)
		}
	}
	cm, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "applied-by-a-kubectl-step", metav1.GetOptions{})
	if err != nil || cm.Data["from"] != "the docker runner" {
		t.Fatalf("the applied ConfigMap: %+v %v", cm, err)
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

// TestTestResultsOfAnOOMKilledStep: a step killed at its memory limit in
// a container still hands in its test results (they matter most then),
// and fails OOMKilled.
func TestTestResultsOfAnOOMKilledStep(t *testing.T) {
	s := newMinIO(t)
	pipe := `test:
  unit:
    container:
      image: alpine
      cmds:
        - mkdir -p results && cp fixtures/pytest.xml results/
        - dd if=/dev/zero of=/dev/null bs=200M count=1
      testResults: ["results/*.xml"]
`
	for _, name := range []string{"docker", "podman"} {
		t.Run(name, func(t *testing.T) {
			exampleRunner(t, name) // loads the images
			e := engines.Docker(t)
			if name == "podman" {
				e = engines.Podman(t)
			}
			r, err := dockerrun.New(dockerrun.Config{Host: e.Host, PullPolicy: "Never", MemoryLimit: "32Mi"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ref := "oom-" + name
			code, st, log := runFilesWith(t, s, ref, "7", map[string]string{".wharf-ci.yml": pipe, "fixtures/pytest.xml": junitSample}, nil, r)
			unit := stepOf(st, "test", "unit")
			if code != worker.ExitFailed || !build.ReasonOOMKilled.Of(unit.Reason) {
				t.Fatalf("exit %d, unit %+v\n%s", code, unit, log)
			}
			if !strings.Contains(log, "test result results/pytest.xml: 2 passed, 1 failed, 1 skipped") || unit.Tests == nil || unit.Tests.Failed != 1 {
				t.Fatalf("no test results from the OOMKilled step: %+v\n%s", unit.Tests, log)
			}
			if trx := object(t, s, build.TestResultPrefix(ref)+"test/unit/results/pytest.xml.trx"); !strings.Contains(trx, "<TestRun") {
				t.Fatalf("kept %q", trx)
			}
		})
	}
}
