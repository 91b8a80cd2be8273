package e2e

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/wharfapi"
	"github.com/wharfjobs/wharfjobs/internal/wharfapitest"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFilesOnARealNode runs the build of wharfapitest's files pipeline
// with the kube runner on a real node, triggered by and relayed to a real
// wharf-api v5.2.0: artifacts from two parallel steps (each with a
// shared.txt of its own), one of them used by a later stage, and a TRX
// and a JUnit test result, all moved by `wharfjobs step-exec` through
// pre-signed URLs (the step pods hold no store credentials).
func TestFilesOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()

	c := startNode(ctx, t, dir, stepImageOf(t))
	importProdImage(ctx, t, c)
	store, storeCfg := startStore(ctx, t, "files")
	files, wantTests, err := wharfapitest.FilesRepo(stepImage)
	if err != nil {
		t.Fatal(err)
	}
	repoURL := serveRepo(t, ctx, dir, files)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	api := wharfapitest.StartTest(t, "127.0.0.1:0", wharfapitest.Engine{URL: "http://" + ln.Addr().String() + "/api/worker", Token: "e2e-token"})
	sink, err := wharfapi.New(wharfapi.Config{URL: api.URL, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	deployTo(ctx, t, c, store, storeCfg, nil, ln, sink)

	client := api.Client()
	project, err := client.CreateProject("files", repoURL, files[".wharf-ci.yml"])
	if err != nil {
		t.Fatal(err)
	}
	id, err := client.StartBuild(project)
	if err != nil {
		t.Fatal(err)
	}
	status, _ := waitEnded(ctx, t, c, client, id, 5*time.Minute)
	ref := job.Request{BuildRef: id}.Ref()
	st, _, err := build.ReadStatus(ctx, store, ref)
	if err != nil {
		t.Fatal(err)
	}
	if status != "Completed" {
		t.Fatalf("build %s ended %s in wharf-api (%s); steps %+v; pods %s", id, status, st.Reason, st.Steps, debugState(c))
	}
	if err := client.CheckFiles(id, wantTests); err != nil {
		t.Error(err)
	}
	for _, s := range st.Steps {
		if s.Stage == "test" && (s.Tests == nil || s.Tests.Passed != wantTests.Passed || s.Tests.Failed != wantTests.Failed) {
			t.Errorf("status.json of the test step: %+v, want %+v", s.Tests, wantTests)
		}
	}
	// The step Secrets (script and plan of pre-signed URLs) went with
	// their pods.
	secrets, err := c.Client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: job.LabelBuildRef + "=" + kube.LabelValue(ref) + "," + job.LabelStep})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("step Secret %s (step %s) left after its step", s.Name, s.Labels[job.LabelStep])
	}

	// A step whose declared files cannot be kept fails although its
	// script succeeded, with step-exec's reason from the termination
	// message (written as the step's non-root user).
	badFiles := map[string]string{".wharf-ci.yml": "build:\n  out:\n    container:\n      image: " + stepImage +
		"\n      cmds: [echo built]\n      artifacts: {paths: [dist/*], ifNoFilesFound: error}\n"}
	badURL := serveRepo(t, ctx, filepath.Join(dir, "bad"), badFiles)
	badProject, err := client.CreateProject("bad-files", badURL, badFiles[".wharf-ci.yml"])
	if err != nil {
		t.Fatal(err)
	}
	badID, err := client.StartBuild(badProject)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := waitEnded(ctx, t, c, client, badID, 5*time.Minute); status != "Failed" {
		t.Fatalf("build %s with a missing declared file ended %s", badID, status)
	}
	bad, _, err := build.ReadStatus(ctx, store, job.Request{BuildRef: badID}.Ref())
	if err != nil {
		t.Fatal(err)
	}
	if len(bad.Steps) != 1 || !build.ReasonOutputsFailed.Of(bad.Steps[0].Reason) || !strings.Contains(bad.Steps[0].Reason, `no file matches "dist/*"`) {
		t.Fatalf("steps %+v: want the step failed with OutputsFailed naming dist/*", bad.Steps)
	}
}
