package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsCommands(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for name := range commands() {
		if !strings.Contains(out, "  "+name+" ") {
			t.Errorf("--help does not list %q:\n%s", name, out)
		}
	}
	if code, out2, _ := runCLI(t); code != 0 || out2 != out {
		t.Fatalf("no arguments: exit %d, want 0 and the help on stdout", code)
	}
	if !strings.Contains(out, "64 usage error") {
		t.Errorf("--help does not list the exit codes:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "wharfjobs ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	if code, _, errOut := runCLI(t, "version", "extra"); code != ExitUsage || !strings.Contains(errOut, "extra") {
		t.Fatalf("version with an argument: exit %d, %q", code, errOut)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCLI(t, "frobnicate")
	if code != ExitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, %q", code, errOut)
	}
}

// Usage errors exit 64, which no build outcome uses (wharfjobs run exits 2
// for a failed build, 3 for an invalid one), and flags may follow the
// arguments, as people type `kubectl logs POD -f`.
func TestUsageErrorsAndFlagsAnywhere(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"logs", "--no-such-flag", "1"},
		{"logs"},
		{"logs", "1", "2"},
		{"status", "1", "2"},
		{"run", "--env"},
		{"check", "a", "b"},
	} {
		if code, _, _ := runCLI(t, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
	}
	// Flags after the build ref: parsed, so the command runs and reports
	// the missing build (1), not a usage error.
	for _, args := range [][]string{
		{"logs", "4242", "-f", "--fs-root", root},
		{"logs", "4242", "--follow", "--fs-root", root},
		{"status", "4242", "--fs-root", root},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, "4242") {
			t.Errorf("%q: exit %d %q, want 1 naming the build", args, code, errOut)
		}
	}
}

// Every command's --help goes to stdout (exit 0) and says what the command
// does; commands that take no arguments refuse one (exit 64) instead of
// ignoring it.
func TestCommandHelpAndArguments(t *testing.T) {
	for name := range commands() {
		if name == "version" {
			continue
		}
		code, out, errOut := runCLI(t, name, "--help")
		if code != 0 || !strings.HasPrefix(out, "Usage: wharfjobs "+name) || !strings.Contains(out, "Flags") || errOut != "" {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
	}
	for _, name := range []string{"aggregator", "provisioner", "worker", "dev"} {
		code, _, errOut := runCLI(t, name, "unexpected")
		if code != ExitUsage || !strings.Contains(errOut, "takes no arguments, got 1: unexpected") {
			t.Errorf("%s with an argument: exit %d, %q", name, code, errOut)
		}
	}
}

// `wharfjobs logs 4242` and `status 4242` find the build a person means
// when only one instance has a build 4242, and list the candidates when
// several do.
func TestBuildNumbersAsPeopleKnowThem(t *testing.T) {
	root := t.TempDir()
	store, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ref := range []string{"prod-4242", "prod-7", "stage-7", "99"} {
		if _, err := build.WriteStatus(ctx, store, ref, build.Status{Status: build.Completed}, ""); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "status", "4242", "--fs-root", root)
	if code != 0 || !strings.Contains(errOut, "build 4242 is prod-4242") || !strings.Contains(out, "COMPLETED prod-4242") {
		t.Errorf("status 4242: exit %d, %q, %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "logs", "7", "--fs-root", root)
	if code != 1 || !strings.Contains(errOut, "several instances have one: prod-7, stage-7") {
		t.Errorf("logs 7: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "status", "99", "--fs-root", root); code != 0 || strings.Contains(errOut, "is ") {
		t.Errorf("status 99 (a ref as it is): exit %d, %q", code, errOut)
	}
}

// `wharfjobs status REF` prints a failed build's diagnosis.json after its
// steps, and nothing more for a build without one.
func TestStatusPrintsTheDiagnosis(t *testing.T) {
	root := t.TempDir()
	store, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ref := range []string{"5", "6"} {
		if _, err := build.WriteStatus(ctx, store, ref, build.Status{Status: build.Failed, Reason: "StepFailed: build/main exit 137"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	code137 := int32(137)
	d := build.Diagnosis{Summary: "step build/main: OOMKilled at 48Mi limit", RecordedBy: "worker",
		Pods: []build.PodDiagnosis{{Name: "wharf-5-build-main", Role: "step", Stage: "build", Step: "main", Node: "n1", Phase: "Failed",
			Containers: []build.ContainerDiagnosis{{Name: "step", Image: "busybox", State: "terminated", Reason: "OOMKilled", ExitCode: &code137, Signal: 9, MemoryLimit: "48Mi"}}}},
		Events: []build.EventDiagnosis{{Object: "Pod/wharf-5-build-main", Type: "Warning", Reason: "OOMKilling", Message: "Memory cgroup out of memory"}},
		Nodes:  []build.NodeDiagnosis{{Name: "n1", Conditions: []string{"MemoryPressure=False KubeletHasSufficientMemory"}}},
		Errors: []string{"node n2: forbidden (the role has no get on nodes)"},
	}
	if err := build.WriteDiagnosis(ctx, store, "5", d); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "status", "5", "--fs-root", root)
	for _, want := range []string{
		"diagnosis (worker, ", "): step build/main: OOMKilled at 48Mi limit",
		"pod wharf-5-build-main (step build/main) on n1: Failed",
		"container step (busybox): terminated OOMKilled exit 137 signal 9 (limits: memory 48Mi, cpu -)",
		"node n1: MemoryPressure=False KubeletHasSufficientMemory",
		"Warning Pod/wharf-5-build-main OOMKilling: Memory cgroup out of memory",
		"not read: node n2: forbidden",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status 5 lacks %q: exit %d, stdout:\n%s\nstderr: %s", want, code, out, errOut)
		}
	}
	if code, out, _ := runCLI(t, "status", "6", "--fs-root", root); code != 0 || strings.Contains(out, "diagnosis") {
		t.Errorf("status 6: exit %d:\n%s", code, out)
	}
}
