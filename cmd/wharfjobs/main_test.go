package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
