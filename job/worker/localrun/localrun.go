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
	"sort"
	"syscall"
	"time"

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

// Run implements worker.StepRunner: each command runs as `shell -c cmd` in
// the step's workspace, in order, until one fails.
func (r Runner) Run(ctx context.Context, step worker.Step, stdout, stderr io.Writer) (worker.Result, error) {
	fmt.Fprintf(stderr, "[wharfjobs] local runner: image %s is not used; commands run on this machine with %s\n", step.Container.Image, shell(step))
	for _, c := range step.Container.Cmds {
		code, err := r.runCmd(ctx, step, c, stdout, stderr)
		if err != nil {
			return worker.Result{ExitCode: -1}, err
		}
		if code != 0 {
			res := worker.Result{ExitCode: code}
			if ctx.Err() != nil {
				res.Reason = "Cancelled"
			}
			return res, nil
		}
	}
	return worker.Result{}, nil
}

func shell(step worker.Step) string {
	if step.Container.Shell != "" {
		if _, err := exec.LookPath(step.Container.Shell); err == nil {
			return step.Container.Shell
		}
	}
	return "/bin/sh"
}

func (r Runner) runCmd(ctx context.Context, step worker.Step, command string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(shell(step), "-c", command)
	cmd.Dir = step.Workspace
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = stepEnviron(step.Env)
	// Own process group, so stopping the step stops everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", shell(step), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
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
