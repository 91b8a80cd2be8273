// Package localrun is the StepRunner that runs a step's commands as local
// processes: the embedded default (wharfjobs dev and run) and the basis of
// fast tests. The step's image is not used, and the build log says so.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// Runner runs steps as processes.
type Runner struct {
	// KillGrace is how long a step's processes get between SIGTERM and
	// SIGKILL when the step is stopped.
	KillGrace time.Duration
}

var _ worker.StepRunner = Runner{}

// Name implements worker.StepRunner.
func (Runner) Name() string { return "local" }

// Run implements worker.StepRunner. The step's commands are one script,
// as in wharf-cmd (pkg/steps/container.go at commit 421514f of
// iver-wharf/wharf-cmd joins the cmds with "\n" and runs `sh -c` on the
// result): without `set -e`, so a failing command does not stop the ones
// after it, and the step's exit code is the script's, that of the last
// command run (or of `exit n`). Unlike wharf-cmd the script is not an
// argument: ps shows every process's argv to every user of the machine,
// and commands carry substituted values such as passwords. The shell reads
// it from a file only this user can read, in a directory of its own
// outside the workspace (the step's own files and artifacts live there),
// removed when the step ends. Not from stdin: a command that reads stdin
// would eat the rest of the script. The script's stdout and stderr are
// read apart: each keeps its order, lines on both need not.
func (r Runner) Run(ctx context.Context, step worker.Step, stdout, stderr io.Writer) (worker.Result, error) {
	fmt.Fprintf(stderr, "[wharfjobs] local runner: image %s is not used; commands run on this machine with %s\n", step.Container.Image, shell(step))
	// Cluster objects do not exist here: say so, rather than let a step
	// fail later on a missing file or variable without a hint.
	if step.Container.SecretName != "" {
		fmt.Fprintf(stderr, "[wharfjobs] local runner: secretName %s is not available (its keys are not in the environment)\n", step.Container.SecretName)
	}
	for _, m := range step.Container.Mounts {
		what := "Secret " + m.Secret
		if m.ConfigMap != "" {
			what = "ConfigMap " + m.ConfigMap
		}
		fmt.Fprintf(stderr, "[wharfjobs] local runner: %s is not mounted at %s\n", what, m.Path)
	}
	dir, err := os.MkdirTemp("", "wharfjobs-step-*") // mode 0700
	if err != nil {
		return worker.Result{ExitCode: -1}, fmt.Errorf("step script: %w", err)
	}
	defer os.RemoveAll(dir)
	if inside(step.Workspace, dir) {
		return worker.Result{ExitCode: -1}, fmt.Errorf("step script: the temporary directory %s is inside the workspace; set TMPDIR elsewhere", dir)
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(strings.Join(step.Container.Cmds, "\n")+"\n"), 0o600); err != nil {
		return worker.Result{ExitCode: -1}, fmt.Errorf("step script: %w", err)
	}
	// A workspace of its own: a copy of the checkout, as the kube runner's
	// step pods and wharf-cmd's each get one, so parallel steps never see
	// each other's files and a pipeline behaves the same in every runner.
	work := filepath.Join(dir, "workspace")
	if err := CopyWorkspace(ctx, step.Workspace, work); err != nil {
		return worker.Result{ExitCode: -1}, fmt.Errorf("step workspace: %w", err)
	}
	step.Workspace = work
	if !step.Files.Empty() && step.Transport == nil {
		return worker.Result{ExitCode: -1}, errors.New("step files: no transport to the store")
	}
	if err := stepexec.Before(ctx, step.Files, step.Transport, work, stderr); err != nil {
		return worker.Result{ExitCode: -1, Reason: build.ReasonRestoreFailed.With(err.Error())}, nil
	}
	code, err := r.runScript(ctx, step, script, stdout, stderr)
	if err != nil {
		return worker.Result{ExitCode: -1}, err
	}
	res := worker.Result{ExitCode: code}
	if code != 0 && ctx.Err() != nil {
		res.Reason = build.ReasonCancelled.String()
		return res, nil
	}
	if err := stepexec.After(ctx, step.Files, step.Transport, work, code == 0, dir, stderr); err != nil {
		res.Reason = build.ReasonOutputsFailed.With(err.Error())
	}
	return res, nil
}

// CopyWorkspace copies the checkout src to dst with cp: it keeps modes,
// symlinks and times, and shares blocks (reflinks) where the file system
// can, which makes the copy of a large repository nearly free there.
func CopyWorkspace(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", "--", src+"/.", dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inside reports whether path is dir or below it.
func inside(dir, path string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func shell(step worker.Step) string {
	if step.Container.Shell != "" {
		if _, err := exec.LookPath(step.Container.Shell); err == nil {
			return step.Container.Shell
		}
	}
	return "/bin/sh"
}

// runScript runs `shell script` and returns its exit code.
func (r Runner) runScript(ctx context.Context, step worker.Step, script string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(shell(step), script)
	cmd.Dir = step.Workspace
	cmd.Env = stepEnviron(step.Environ())
	// Own process group, so stopping the step stops everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outs, perr := newOutputs(cmd, stdout, stderr)
	if perr != nil {
		return -1, fmt.Errorf("start %s: %w", shell(step), perr)
	}
	if err := cmd.Start(); err != nil {
		outs.abort()
		return -1, fmt.Errorf("start %s: %w", shell(step), err)
	}
	outs.start()
	done := make(chan error, 1)
	// As exec.Cmd's Wait with writers: the step has ended when its
	// process has and its output is read to the end.
	go func() {
		err := cmd.Wait()
		if werr := outs.wait(); err == nil {
			err = werr
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		grace := r.KillGrace
		if grace <= 0 {
			grace = 5 * time.Second
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if code := exit.ExitCode(); code >= 0 {
			return code, nil
		}
		return 128 + int(exit.Sys().(syscall.WaitStatus).Signal()), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// stepEnviron is a small, predictable environment: PATH and HOME from this
// process, the step's variables, nothing else (no store credentials).
func stepEnviron(vars map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// pipeSize is the capacity the runner asks for the pipes of a step's
// stdout and stderr (Linux's default is 64 KiB), and readSize how much of
// one it takes in one read. While the worker is busy a step can run ahead
// by a pipe's capacity, and what piled up is then taken in few reads and
// handed to the log as one Write: fewer wake-ups of the step and the
// worker, fewer Writes, each of more lines. 1 MiB pipes (the most an
// unprivileged process may ask for) gained little more, and pipes count
// against a user's pipe-user-pages-soft (64 MiB): past it, every new pipe
// of that user, a step's own `a | b` too, gets 8 KiB. With two pipes of
// 256 KiB a step, a stage takes 128 parallel steps to get there (32 with
// 1 MiB).
const (
	pipeSize = 256 << 10
	readSize = 128 << 10
)

// outputs copies a step's stdout and stderr from pipes of its own to the
// step's writers, as exec.Cmd does for writers that are not files but with
// larger pipes and reads.
type outputs struct {
	reads  []*os.File // the pipes' read ends
	child  []*os.File // their write ends, which the step's process gets
	copies []func() error
	errs   chan error
}

func newOutputs(cmd *exec.Cmd, stdout, stderr io.Writer) (*outputs, error) {
	o := &outputs{}
	var err error
	if cmd.Stdout, err = o.pipe(stdout); err != nil {
		o.abort()
		return nil, err
	}
	if sameWriter(stdout, stderr) {
		// One pipe for both, as exec.Cmd does: one goroutine writes.
		cmd.Stderr = cmd.Stdout
	} else if cmd.Stderr, err = o.pipe(stderr); err != nil {
		o.abort()
		return nil, err
	}
	return o, nil
}

// pipe returns what the step's process writes to for w: as with exec.Cmd,
// nil (the null device) and a file are passed on as they are, any other
// writer gets a pipe whose read end is copied to it.
func (o *outputs) pipe(w io.Writer) (io.Writer, error) {
	if f, ok := w.(*os.File); ok || w == nil {
		if f == nil {
			return nil, nil
		}
		return f, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o.reads, o.child = append(o.reads, pr), append(o.child, pw)
	// Best effort: the default size works, only slower.
	growPipe(pw, pipeSize)
	o.copies = append(o.copies, func() error {
		defer pr.Close()
		buf := make([]byte, readSize)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	return pw, nil
}

// sameWriter reports whether a and b are the same writer, as exec.Cmd
// compares Stdout and Stderr; values whose type cannot be compared differ.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// start closes the write ends the step's process now holds, so a read
// ends when the step's processes close theirs, and starts the copies.
func (o *outputs) start() {
	for _, f := range o.child {
		f.Close()
	}
	o.errs = make(chan error, len(o.copies))
	for _, c := range o.copies {
		go func() { o.errs <- c() }()
	}
}

// wait waits for the copies to end and returns the first error.
func (o *outputs) wait() error {
	var first error
	for range o.copies {
		if err := <-o.errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// abort closes the pipes of a step that did not start.
func (o *outputs) abort() {
	for _, f := range append(o.reads, o.child...) {
		f.Close()
	}
}
