package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/job"
)

var engines *enginetest.Engines

// demoImages are the images the demo pipeline names, each the busybox
// test image under that name (no registry can be reached here).
var demoImages = []string{"golang:1.26", "golangci/golangci-lint:latest", "curlimages/curl:latest"}

// TestRunDemoInContainers: `wharfjobs run --runner docker` runs the demo
// pipeline with each step in a container of the image it names, on Docker
// and on Podman, and prints the table as with the local runner.
func TestRunDemoInContainers(t *testing.T) {
	for _, start := range []func(testing.TB) *enginetest.Engine{engines.Docker, engines.Podman} {
		e := start(t)
		t.Run(e.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			for _, img := range demoImages {
				if err := e.LoadBusybox(ctx, img); err != nil {
					t.Fatal(err)
				}
			}
			repo := t.TempDir() + "/demo"
			if err := makeDemoRepo(repo); err != nil {
				t.Fatal(err)
			}
			t.Setenv("WHARFJOBS_STORE_FS_ROOT", t.TempDir())
			t.Setenv("WHARFJOBS_DOCKER_HOST", e.Host)
			t.Setenv("WHARFJOBS_STEP_PULL_POLICY", "Never")
			since := time.Now().Add(-time.Second)
			code, out, errOut := runCLI(t, "run", "--runner", "docker", repo)
			// The demo fails on purpose (test 21), and its report stage runs.
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", code, out, errOut)
			}
			for _, want := range []string{"steps run in containers of their images on ", "test 21 FAILED", "build/compile", "report/notify", "Failed"} {
				if !strings.Contains(out, want) {
					t.Fatalf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "is not used") {
				t.Fatalf("the local runner ran a step:\n%s", out)
			}
			// The engine's own record: which image each step's container had.
			got := created(t, e, since)
			want := []string{"build/compile golang:1.26", "build/lint golangci/golangci-lint", "report/notify curlimages/curl", "test/unit golang:1.26"}
			if !slices.Equal(got, want) {
				t.Fatalf("containers created %q, want %q", got, want)
			}
			if left, err := e.Containers(ctx, job.LabelManagedBy+"=wharfjobs"); err != nil || len(left) != 0 {
				t.Fatalf("containers left: %v %v", left, err)
			}
		})
	}
}

// created lists "stage/step image" of the step containers the engine
// created since then, from its events.
func created(t *testing.T, e *enginetest.Engine, since time.Time) []string {
	t.Helper()
	filters, _ := json.Marshal(map[string][]string{"type": {"container"}, "event": {"create"}, "label": {job.LabelManagedBy + "=wharfjobs"}})
	q := url.Values{"since": {fmt.Sprint(since.Unix())}, "until": {fmt.Sprint(time.Now().Unix() + 1)}, "filters": {string(filters)}}
	resp, err := e.Client().Get("http://engine/v1.41/events?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var ev struct {
			Actor struct{ Attributes map[string]string }
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		a := ev.Actor.Attributes
		img := strings.TrimSuffix(strings.TrimPrefix(a["image"], "localhost/"), ":latest")
		out = append(out, a[job.LabelStage]+"/"+a[job.LabelStep]+" "+img)
	}
	slices.Sort(out)
	return out
}
