package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
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
