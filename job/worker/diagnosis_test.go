package worker_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// diagRunner fails the steps named in fail as a kube runner does: an
// exit code, a reason, and what it saw of the step's pod.
type diagRunner struct{ fail map[string]worker.Result }

func (diagRunner) Name() string { return "diag" }

func (r diagRunner) Run(_ context.Context, step worker.Step, stdout, _ io.Writer) (worker.Result, error) {
	_, _ = io.WriteString(stdout, "working\n")
	return r.fail[step.Name], nil
}

func oomDiagnosis(stage, step string) *build.Diagnosis {
	code := int32(137)
	return &build.Diagnosis{
		Pods: []build.PodDiagnosis{{Name: "wharf-9-" + step, Role: "step", Stage: stage, Step: step, Node: "node-a", Phase: "Failed",
			Containers: []build.ContainerDiagnosis{{Name: "step", Image: "debian", State: "terminated", Reason: "OOMKilled", ExitCode: &code, Signal: 9, MemoryLimit: "64Mi"}}}},
		Events: []build.EventDiagnosis{{Object: "Pod/wharf-9-" + step, Type: "Normal", Reason: "Started", Message: "Started container step"}},
		Nodes:  []build.NodeDiagnosis{{Name: "node-a", Conditions: []string{"MemoryPressure=False KubeletHasSufficientMemory"}}},
	}
}

// A failed build whose runner described its failed steps gets
// diagnosis.json with every failed step's pod, the first one's cause as
// the summary, and that summary as a system line in the log; a build that
// completes, or whose runner describes nothing, gets none.
func TestFailedBuildRecordsDiagnosis(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	yml := "build:\n  compile:\n    container:\n      image: debian\n      cmds: [make]\n  lint:\n    container:\n      image: debian\n      cmds: [lint]\n" +
		"  docs:\n    container:\n      image: debian\n      cmds: [docs]\n"
	run := func(ref string, r diagRunner) (int, build.Status, string) {
		t.Helper()
		cfg := testConfig(t)
		cfg.SkipClone, cfg.Workdir = true, pipelineDir(t, yml)
		if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Scheduling}, ""); err != nil {
			t.Fatal(err)
		}
		code, st := worker.Run(ctx, s, job.Request{BuildRef: ref}, r, cfg)
		rc, err := build.OpenLog(ctx, s, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var sys []string
		if err := build.ScanRecords(rc, func(r build.Record) error {
			if r.Stream == build.StreamSystem {
				sys = append(sys, r.Text)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return code, st, strings.Join(sys, "\n")
	}

	code, st, sys := run("9", diagRunner{fail: map[string]worker.Result{
		"compile": {ExitCode: 137, Reason: "OOMKilled: memory limit 64Mi", Diagnosis: oomDiagnosis("build", "compile")},
		"lint":    {ExitCode: 1, Diagnosis: &build.Diagnosis{Pods: []build.PodDiagnosis{{Name: "wharf-9-lint", Role: "step", Stage: "build", Step: "lint", Phase: "Failed"}}}},
	}})
	if code != worker.ExitFailed || st.Status != build.Failed {
		t.Fatalf("exit %d, status %+v", code, st)
	}
	d, err := build.ReadDiagnosis(ctx, s, "9")
	if err != nil {
		t.Fatal(err)
	}
	// The parallel steps end in any order; the summary is the first
	// failure's, which ever that was.
	want := map[string]bool{"step build/compile: OOMKilled at 64Mi limit": true, "step build/lint: exit 1": true}
	if !want[d.Summary] || d.RecordedBy != "worker" || d.Reason != st.Reason || len(d.Pods) != 2 || len(d.Nodes) != 1 || len(d.Events) != 1 {
		t.Errorf("diagnosis %+v (status reason %q)", d, st.Reason)
	}
	if !strings.Contains(sys, "diagnosis: "+d.Summary+" (wharfjobs status 9 ") {
		t.Errorf("no summary line for %q in the system lines:\n%s", d.Summary, sys)
	}
	if text := d.Text(); !strings.Contains(text, "container step (debian): terminated OOMKilled exit 137 signal 9 (limits: memory 64Mi, cpu -)") ||
		!strings.Contains(text, "node node-a: MemoryPressure=False") || !strings.Contains(text, "Pod/wharf-9-compile Started") {
		t.Errorf("text:\n%s", text)
	}

	for ref, r := range map[string]diagRunner{
		"10": {},                                                      // completes
		"11": {fail: map[string]worker.Result{"lint": {ExitCode: 2}}}, // fails, nothing described
	} {
		_, _, sys := run(ref, r)
		if _, err := build.ReadDiagnosis(ctx, s, ref); err == nil {
			t.Errorf("build %s has a diagnosis", ref)
		}
		if strings.Contains(sys, "diagnosis:") {
			t.Errorf("build %s logs a diagnosis line:\n%s", ref, sys)
		}
	}
}

// releaseRunner records when the worker releases it, and the steps run
// by then.
type releaseRunner struct {
	ran      []string
	released []string // the steps run at each Release
}

func (*releaseRunner) Name() string { return "release" }

func (r *releaseRunner) Run(_ context.Context, step worker.Step, _, _ io.Writer) (worker.Result, error) {
	r.ran = append(r.ran, step.Name)
	if step.Name == "fails" {
		return worker.Result{ExitCode: 1}, nil
	}
	return worker.Result{}, nil
}

func (r *releaseRunner) Release(context.Context) error {
	r.released = append(r.released, strings.Join(r.ran, ","))
	return nil
}

// The worker releases a runner's build resources (the kube runner's
// workspace URL Secret) once, after the last step, whether the build
// completed or failed.
func TestWorkerReleasesTheRunnerAfterTheSteps(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for ref, yml := range map[string]string{
		"1": "a:\n  one:\n    container:\n      image: debian\n      cmds: [x]\nb:\n  two:\n    container:\n      image: debian\n      cmds: [x]\n",
		"2": "a:\n  fails:\n    container:\n      image: debian\n      cmds: [x]\n",
	} {
		cfg := testConfig(t)
		cfg.SkipClone, cfg.Workdir = true, pipelineDir(t, yml)
		if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Scheduling}, ""); err != nil {
			t.Fatal(err)
		}
		r := &releaseRunner{}
		_, st := worker.Run(ctx, s, job.Request{BuildRef: ref}, r, cfg)
		if len(r.released) != 1 || r.released[0] != strings.Join(r.ran, ",") {
			t.Fatalf("build %s (%s): released %q, steps run %q; want one Release after all steps", ref, st.Status, r.released, r.ran)
		}
	}
}
