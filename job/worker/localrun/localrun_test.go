package localrun_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

func run(t *testing.T, ctx context.Context, cmds []string, env map[string]string) (worker.Result, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	step := worker.Step{Ref: "1", Stage: "test", Name: "unit", Workspace: t.TempDir(), Env: env,
		Container: pipeline.Container{Image: "alpine", Cmds: cmds}}
	res, err := localrun.Runner{KillGrace: time.Second}.Run(ctx, step, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, stderr.String())
	}
	return res, stdout.String()
}

// TestCommandsAreOneScript: as in wharf-cmd, a step's commands are one
// shell script without `set -e`.
func TestCommandsAreOneScript(t *testing.T) {
	cases := []struct {
		cmds []string
		code int
		out  string
	}{
		// A failing command does not stop the script; the last one decides.
		{[]string{"false", "echo after"}, 0, "after\n"},
		{[]string{"echo before", "false"}, 1, "before\n"},
		{[]string{"exit 3", "echo no"}, 3, ""},
		// One shell: state carries from command to command.
		{[]string{"X=kept", "cd /", "echo $X $(pwd)"}, 0, "kept /\n"},
		// A command reading stdin does not read the script.
		{[]string{"cat", "echo still here"}, 0, "still here\n"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.cmds, "; "), func(t *testing.T) {
			res, out := run(t, context.Background(), c.cmds, nil)
			if res.ExitCode != c.code || out != c.out {
				t.Fatalf("exit %d, stdout %q; want %d, %q", res.ExitCode, out, c.code, c.out)
			}
		})
	}
}

// TestScriptNotInArgv: the shell's command line, which ps shows to every
// user, does not hold the script and its secrets; the script is in a
// private file outside the workspace, gone after the step.
func TestScriptNotInArgv(t *testing.T) {
	const secret = "pw-0123456789-secret"
	sync := t.TempDir()
	pidFile, goFile := filepath.Join(sync, "pid"), filepath.Join(sync, "go")
	var stdout, stderr bytes.Buffer
	step := worker.Step{Ref: "1", Stage: "test", Name: "login", Workspace: t.TempDir(),
		Env: map[string]string{"PIDFILE": pidFile, "GOFILE": goFile},
		Container: pipeline.Container{Image: "alpine", Cmds: []string{
			`echo $$ > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"`,
			`while [ ! -e "$GOFILE" ]; do sleep 0.01; done`,
			"echo logging in with " + secret,
		}}}
	type result struct {
		res worker.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := localrun.Runner{}.Run(context.Background(), step, &stdout, &stderr)
		done <- result{res, err}
	}()
	// The shell writes its pid and waits for goFile.
	var pid int
	if err := testenv.WaitFor(context.Background(), time.Minute, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return err
	}); err != nil {
		t.Fatalf("the step never started: %v", err)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if strings.Contains(string(cmdline), secret) || strings.Contains(string(cmdline), "logging in") || len(argv) != 2 {
		t.Fatalf("the shell's argv is %q", argv)
	}
	script := argv[1]
	fi, err := os.Stat(script)
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.Stat(filepath.Dir(script))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("script %s mode %v in a directory of mode %v; want 0600 in 0700", script, fi.Mode(), di.Mode())
	}
	if rel, err := filepath.Rel(step.Workspace, script); err != nil || !strings.HasPrefix(rel, "..") {
		t.Fatalf("script %s is inside the workspace %s", script, step.Workspace)
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.res.ExitCode != 0 || stdout.String() != "logging in with "+secret+"\n" {
		t.Fatalf("step: %+v %v, stdout %q, stderr %q", r.res, r.err, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Dir(script)); !os.IsNotExist(err) {
		t.Fatalf("the script's directory is still there: %v", err)
	}
}

// TestCancelStopsTheScript: a cancelled step ends, as Cancelled, and the
// commands after the running one do not run.
func TestCancelStopsTheScript(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sync := t.TempDir()
	started := filepath.Join(sync, "started")
	go func() {
		// Without the file, nothing cancels: the step's sleep 60 ends
		// and the check below fails.
		if testenv.WaitFor(ctx, time.Minute, 10*time.Millisecond, func() error {
			_, err := os.Stat(started)
			return err
		}) == nil {
			cancel()
		}
	}()
	res, out := run(t, ctx, []string{"touch " + started, "sleep 60", "echo not reached"}, nil)
	if res.ExitCode == 0 || res.Reason != "Cancelled" || strings.Contains(out, "not reached") {
		t.Fatalf("cancelled step: %+v, stdout %q", res, out)
	}
}

// Each step runs in a copy of the checkout, as a step pod does (and as
// wharf-cmd's step pods each clone the repository): parallel steps writing
// the same file do not see each other's, and the checkout is not changed.
func TestEachStepHasItsOwnWorkspace(t *testing.T) {
	checkout := t.TempDir()
	if err := os.WriteFile(filepath.Join(checkout, "README.md"), []byte("from the repo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("README.md", filepath.Join(checkout, "link")); err != nil {
		t.Fatal(err)
	}
	outs := make([]string, 2)
	done := make(chan struct{}, 2)
	for i, name := range []string{"a", "b"} {
		go func() {
			defer func() { done <- struct{}{} }()
			var stdout, stderr bytes.Buffer
			step := worker.Step{Ref: "1", Stage: "build", Name: name, Workspace: checkout,
				Container: pipeline.Container{Image: "alpine", Cmds: []string{"echo " + name + " > out.txt", "sleep 0.3", "cat out.txt link"}}}
			if _, err := (localrun.Runner{}).Run(context.Background(), step, &stdout, &stderr); err != nil {
				t.Errorf("step %s: %v: %s", name, err, stderr.String())
			}
			outs[i] = stdout.String()
		}()
	}
	<-done
	<-done
	if outs[0] != "a\nfrom the repo\n" || outs[1] != "b\nfrom the repo\n" {
		t.Fatalf("parallel steps saw %q and %q", outs[0], outs[1])
	}
	if _, err := os.Stat(filepath.Join(checkout, "out.txt")); !os.IsNotExist(err) {
		t.Fatalf("a step changed the checkout: %v", err)
	}
}
