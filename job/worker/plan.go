package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
)

// PlanOptions say what Plan resolves a pipeline for.
type PlanOptions struct {
	// Dir is the repository directory: the git information and the
	// .wharf-vars.yml files above it come from there.
	Dir string
	// File is the pipeline file; Dir's .wharf-ci.yml when empty.
	File string
	// Request gives the environment, the input values (Vars) and the
	// build's own variables (BUILD_REF, WHARF_PROJECT_ID, ...).
	Request job.Request
	// Vars override variables of every other source but the inputs
	// (wharfjobs check --var).
	Vars map[string]any
	// Config gives the step images and the process environment.
	Config Config
}

// PlanResult is a resolved pipeline.
type PlanResult struct {
	// Definition is the parsed pipeline; partial when Parse failed.
	Definition *pipeline.Definition
	// Env is the environment every step gets.
	Env map[string]string
	// Mask hides the password inputs' values (and their encodings) in
	// anything shown of the plan.
	Mask func(string) string
}

// Plan parses and resolves a pipeline as a build would, without running
// anything: the same variables, in the same order, as Run uses. Its error
// is the parser's (pipeline.Errors), or why the file or the variables
// could not be read.
func Plan(ctx context.Context, opts PlanOptions) (PlanResult, error) {
	file := opts.File
	if file == "" {
		file = filepath.Join(opts.Dir, pipeline.FileName)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return PlanResult{}, fmt.Errorf("read the pipeline: %w", err)
	}
	// As `wharfjobs run` (and wharf-cmd's `wharf run`): no trigger, so the
	// repository fields come from git and --var.
	cfg := opts.Config
	cfg.SkipClone = true
	r := &run{req: opts.Request, cfg: cfg}
	gitVars, err := gitInfo(ctx, opts.Dir)
	if err != nil {
		gitVars = map[string]any{} // not a git repository: no GIT_* variables
	}
	vars, err := r.variables(opts.Dir, gitVars)
	if err != nil {
		return PlanResult{}, err
	}
	if len(opts.Vars) > 0 {
		vars = pipeline.Layered{pipeline.VarMap(opts.Vars), vars}
	}
	def, err := pipeline.Parse(src, pipeline.Options{File: file, Environment: opts.Request.Environment, Inputs: opts.Request.Vars, Vars: vars, Images: opts.Config.Images})
	return PlanResult{Definition: def, Env: stepEnv(vars, opts.Request), Mask: newMasker(passwordValues(src, def, opts.Request.Vars)).Mask}, err
}

// Environ is the environment of the step's processes: the build's
// variables, and over them what the step type's expansion needs
// (Container.Env: CHART_REPO of helm-package, KUBECONFIG, ...).
func (s Step) Environ() map[string]string {
	env := make(map[string]string, len(s.Env)+len(s.Container.Env))
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range s.Container.Env {
		env[k] = v
	}
	return env
}
