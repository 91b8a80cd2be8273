package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
)

// terminationLog is where Kubernetes reads a container's termination
// message: the reason a step's files failed reaches the worker from there.
const terminationLog = "/dev/termination-log"

// runStepExec is the entrypoint of a step container that declares files:
// it runs the step's command, then collects the declared files from the
// working directory and uploads them through the plan's pre-signed URLs.
// It exits with the command's exit code (1 when the command succeeded but
// its files could not be kept).
func runStepExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The command's own arguments are not ours to parse: they start
	// after "--".
	flagArgs, cmdArgs := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		flagArgs, cmdArgs = args[:i], args[i+1:]
	}
	cl := newFlags("step-exec", "--files FILE [--tmp DIR] -- COMMAND [ARG...]", "The entrypoint of a step container that declares artifacts, test results or a\ncache: runs COMMAND, then uploads the declared files through the plan's\npre-signed URLs.", stdout, stderr)
	fl := cl.fl
	planFile := fl.String("files", "", "the step's file plan (JSON, with pre-signed URLs)")
	tmp := fl.String("tmp", os.TempDir(), "scratch directory for archives")
	timeout := fl.Duration("timeout", 30*time.Minute, "bound of one upload")
	if _, err := cl.parse(flagArgs, 0, 0); err != nil {
		return err
	}
	if len(cmdArgs) == 0 {
		fmt.Fprintln(stderr, "wharfjobs step-exec: expected -- and the step's command")
		return errUsage
	}
	plan, err := readPlan(*planFile)
	if err != nil {
		return err
	}
	code, err := runForwardingSignals(ctx, cmdArgs, stdout, stderr)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// The step was stopped: its files are not wanted.
		return exitOrNil(code)
	}
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	t := stepexec.URLTransport{URLs: plan.URLs, Timeout: *timeout}
	if err := stepexec.After(context.WithoutCancel(ctx), plan, t, dir, code == 0, *tmp, stderr); err != nil {
		writeTermination(build.ReasonOutputsFailed.With(err.Error()))
		if code == 0 {
			code = 1
		}
	}
	return exitOrNil(code)
}

func exitOrNil(code int) error {
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

func readPlan(file string) (stepexec.Plan, error) {
	var plan stepexec.Plan
	if file == "" {
		return plan, errors.New("no --files plan")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return plan, fmt.Errorf("read the file plan: %w", err)
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		return plan, fmt.Errorf("read the file plan %s: %w", file, err)
	}
	return plan, nil
}

// runForwardingSignals runs argv with this process's stdin and the given
// outputs and returns its exit code. Cancelling ctx (SIGTERM to the
// container's first process, which this is) passes SIGTERM on to the
// command, whose own handling decides how it ends.
func runForwardingSignals(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", argv[0], err)
	}
	// SIGINT too, for a step run by hand.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case errors.As(err, &exit) && exit.ExitCode() >= 0:
				return exit.ExitCode(), nil
			case errors.As(err, &exit):
				return 128 + int(exit.Sys().(syscall.WaitStatus).Signal()), nil
			case err != nil:
				return -1, err
			}
			return 0, nil
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			ctx = context.Background() // once
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		}
	}
}

// writeTermination leaves msg where Kubernetes reads a container's
// termination message (at most 4 KiB of it); outside a pod there is no
// such file, and the message is in the log anyway.
func writeTermination(msg string) {
	if len(msg) > 4000 {
		msg = msg[:4000]
	}
	// Never created: only a file Kubernetes put there is written.
	f, err := os.OpenFile(terminationLog, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return
	}
	_, _ = f.WriteString(msg)
	_ = f.Close()
}
