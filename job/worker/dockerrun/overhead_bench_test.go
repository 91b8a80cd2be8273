package dockerrun_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// firstWrite records when the step's first output arrived.
type firstWrite struct {
	once sync.Once
	at   time.Time
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.once.Do(func() { f.at = time.Now() })
	return len(p), nil
}

// BenchmarkStepOverhead is what a step costs beyond its commands: from
// Run to the step's first line (image check, workspace copy, container
// create, attach, start) and to Run's return (the container exited and
// was removed), for a one-line `echo`, in the docker runner on Docker and
// on Podman beside the local runner:
//
//	go test -run '^$' -bench StepOverhead -benchtime 20x ./job/worker/dockerrun/
func BenchmarkStepOverhead(b *testing.B) {
	runners := []struct {
		name string
		new  func(b *testing.B) worker.StepRunner
	}{
		{"local", func(*testing.B) worker.StepRunner { return localrun.Runner{} }},
		{"docker", func(b *testing.B) worker.StepRunner { return engineRunner(b, engines.Docker(b)) }},
		{"podman", func(b *testing.B) worker.StepRunner { return engineRunner(b, engines.Podman(b)) }},
	}
	for _, rn := range runners {
		b.Run(rn.name, func(b *testing.B) {
			r := rn.new(b)
			ws := b.TempDir()
			var toFirst, toEnd time.Duration
			for i := 0; b.Loop(); i++ {
				step := worker.Step{Ref: "bench", Stage: "test", Name: "echo", Workspace: ws,
					Container: pipelineContainer("echo hello")}
				out := &firstWrite{}
				start := time.Now()
				res, err := r.Run(context.Background(), step, out, io.Discard)
				if err != nil || res.ExitCode != 0 || out.at.IsZero() {
					b.Fatalf("step: %+v %v", res, err)
				}
				toFirst += out.at.Sub(start)
				toEnd += time.Since(start)
			}
			b.ReportMetric(float64(toFirst.Milliseconds())/float64(b.N), "ms-to-first-line")
			b.ReportMetric(float64(toEnd.Milliseconds())/float64(b.N), "ms-to-removed")
		})
	}
}

func engineRunner(b *testing.B, e *enginetest.Engine) worker.StepRunner {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.LoadBusybox(ctx, stepImage); err != nil {
		b.Fatal(err)
	}
	return newRunner(b, e, nil)
}
