package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// dockerConfig reads the docker runner's settings, with the step
// resources, pull policy and keep-on-failure from the kube runner's
// WHARFJOBS_STEP_* settings: one set of limits for both runners.
func dockerConfig() (dockerrun.Config, error) {
	var cfg dockerrun.Config
	if err := loadEnv(&cfg); err != nil {
		return cfg, err
	}
	var steps kuberun.Config
	if err := loadEnv(&steps); err != nil {
		return cfg, err
	}
	cfg.CPULimit, cfg.MemoryLimit = steps.CPULimit, steps.MemoryLimit
	cfg.PullPolicy, cfg.KeepOnFailure = string(steps.PullPolicy), steps.KeepOnFailure
	return cfg, nil
}

// newDockerRunner is the worker's docker runner; the engine must answer.
func newDockerRunner(ctx context.Context) (*dockerrun.Runner, error) {
	r, _, err := openDocker(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker runner: %w", err)
	}
	return r, nil
}

// openDocker is a docker runner whose engine answered within ctx, and
// what the engine is.
func openDocker(ctx context.Context) (*dockerrun.Runner, string, error) {
	cfg, err := dockerConfig()
	if err != nil {
		return nil, "", err
	}
	r, err := dockerrun.New(cfg)
	if err != nil {
		return nil, "", err
	}
	what, err := r.Ping(ctx)
	if err != nil {
		r.Close()
		return nil, "", err
	}
	return r, what, nil
}

// runnerUsage is the help of --runner, in run and dev.
const runnerUsage = "where steps run: docker (containers of the steps' images, through WHARFJOBS_DOCKER_HOST), local (processes on this machine), or auto: docker when an engine answers, else local"

// autoProbe bounds --runner auto's question to the engine, below
// WHARFJOBS_DOCKER_API_TIMEOUT when that is shorter.
const autoProbe = 3 * time.Second

// pickRunner resolves --runner for run and dev: a docker runner whose
// engine answered, or nil for the local runner, and a line for the person
// watching that says which and why. auto prefers an engine that answers
// within autoProbe (a missing socket fails at once); docker requires one. An unknown choice is a usage error, on stderr.
func pickRunner(ctx context.Context, choice string, out, stderr io.Writer) (*dockerrun.Runner, error) {
	switch choice {
	case "local":
		return nil, nil
	case "docker", "auto":
	default:
		fmt.Fprintf(stderr, "--runner %q: expected docker, local or auto\n", choice)
		return nil, errUsage
	}
	pctx := ctx
	if choice == "auto" {
		// Choosing must not stall on a socket that exists but hangs.
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, autoProbe)
		defer cancel()
	}
	r, what, err := openDocker(pctx)
	if err == nil {
		fmt.Fprintf(out, "steps run in containers of their images on %s at %s (--runner local to run them as processes)\n", what, r.Host())
		return r, nil
	}
	if choice == "docker" {
		return nil, fmt.Errorf("--runner docker: %w", err)
	}
	fmt.Fprintf(out, "steps run as processes on this machine: no container engine answered (%v)\n", err)
	return nil, nil
}
