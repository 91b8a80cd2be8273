// Package worker runs one build: it clones the repository, parses its
// .wharf-ci.yml, runs the stages in file order and each stage's steps in
// parallel through a StepRunner, and writes status, logs and artifacts to
// the blob store. It is the only writer of a build's log and status while
// the build runs.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
)

// Step is one step as a runner gets it.
type Step struct {
	// Ref is the build's ref.
	Ref   string
	Stage string
	Name  string
	// Container is the expanded step: image, shell, commands.
	Container pipeline.Container
	// Workspace is the local directory holding the checked-out repository.
	Workspace string
	// Env are variables the step's processes get.
	Env map[string]string
	// Instance and ProjectID are the build's wharf instance and project:
	// a step's secretName reaches only that project's Secrets.
	Instance, ProjectID string
	// Type is the step type the file used (container, docker, ...):
	// runners may treat types apart (kaniko needs root).
	Type string
	// Files is what moves in and out of the step's workspace besides the
	// checkout: earlier stages' artifacts and the cache before the
	// script, the declared files after it. A runner does it with
	// stepexec.Before and After, in the step's own workspace.
	Files stepexec.Plan
	// Transport reaches the Files objects from the worker's side (the
	// local runner); a runner whose steps hold no store credentials
	// pre-signs URLs instead.
	Transport stepexec.Transport
}

// Result is how a step ended.
type Result struct {
	ExitCode int
	// Reason explains a failure that is not a plain non-zero exit
	// (ImagePullBackOff, OOMKilled, Evicted, Timeout, Cancelled).
	Reason string
	// Diagnosis is what the runner saw of a step that failed (its pod's
	// container states, Events and node), for the build's
	// diagnosis.json; nil when the runner has nothing to add.
	Diagnosis *build.Diagnosis
}

// StepRunner runs steps. Run returns when the step ended, with its result;
// an error means the step could not be run at all (it counts as failed).
// Run writes the step's output to stdout and stderr and stops the step
// when ctx ends.
type StepRunner interface {
	Run(ctx context.Context, step Step, stdout, stderr io.Writer) (Result, error)
	// Name says which runner this is, for the build log.
	Name() string
}

// Releaser is a StepRunner that holds resources for the whole build (the
// kube runner's workspace URL Secret); the worker releases them once the
// build's steps are done, before its final status.
type Releaser interface {
	Release(ctx context.Context) error
}

// Config tunes a build run.
type Config struct {
	// StepTimeout bounds each step; 0 means no limit.
	StepTimeout time.Duration `envconfig:"STEP_TIMEOUT" default:"1h" desc:"bound of each step; 0: no limit"`
	// Deadline bounds the whole build; 0 means no limit. In a Job the
	// activeDeadlineSeconds is the outer bound; this one lets the worker
	// record DeadlineExceeded itself before it is killed.
	Deadline time.Duration `envconfig:"BUILD_DEADLINE" default:"0" desc:"bound of the whole build, recorded as DeadlineExceeded; 0: no limit"`
	// Heartbeat is how often a running build refreshes its status
	// document's heartbeat.
	Heartbeat time.Duration `envconfig:"HEARTBEAT_INTERVAL" default:"10s" desc:"how often a running build refreshes its status heartbeat"`
	// Workdir is where the repository is cloned.
	Workdir string `envconfig:"WORKDIR" default:"/workspace" desc:"directory the repository is cloned into"`
	// GitAllowHTTP lets the git token go to a plain http:// GIT_FULLURL,
	// where anyone on the path can read it; without it such a clone with a
	// token fails before contacting the server.
	GitAllowHTTP bool `envconfig:"GIT_ALLOW_HTTP" default:"false" desc:"let the git token go to a plain http:// clone URL"`
	// Images for step type expansion.
	Images pipeline.Images
	// Log is the log chunk writer's configuration.
	Log build.WriterConfig
	// Files limits the artifacts, test results and caches steps keep.
	Files FilesConfig
	// Logger receives the worker's own diagnostics (never log lines).
	Logger *slog.Logger `ignored:"true"`
	// SkipClone uses Workdir as it is instead of cloning (wharfjobs run).
	// Such a build has no trigger: GIT_BRANCH and REPO_* come from git
	// alone, as in wharf-cmd's `wharf run`, not from the request.
	SkipClone bool `ignored:"true"`
	// SourceDir is the directory Workdir was copied from (wharfjobs run):
	// the .wharf-vars.yml files in it and above it, and its git
	// repository, give the variables. Empty means the checkout's own.
	SourceDir string `ignored:"true"`
	// SystemVarsDir holds the machine-wide wharf-vars.yml, as
	// /etc/iver-wharf/wharf-cmd does for wharf-cmd; empty reads none.
	SystemVarsDir string `envconfig:"SYSTEM_VARS_DIR" default:"/etc/iver-wharf/wharf-cmd" desc:"directory of the machine-wide wharf-vars.yml; empty: none"`
	// Environ is the process environment the WHARF_VAR_* variables come
	// from, and XDG_CONFIG_HOME or HOME for the user's
	// iver-wharf/wharf-cmd/wharf-vars.yml; nil means os.Environ().
	Environ []string `ignored:"true"`
}

// DefaultHeartbeat is Config.Heartbeat's default.
const DefaultHeartbeat = 10 * time.Second

// withDefaults fills the fields a Config built in code leaves zero with
// the defaults their tags give one read from the environment.
func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	c.Files = c.Files.withDefaults()
	return c
}

// Validate refuses negative durations, in the configuration and its Files
// limits and Log writer; the error names the variable and what it expects.
func (c Config) Validate() error {
	if err := settings.NonNegative(c); err != nil {
		return err
	}
	if err := c.Files.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

// Exit codes of the worker process. A Job's podFailurePolicy treats
// ExitFailed and ExitInvalid as final (no retry).
const (
	ExitCompleted = 0
	ExitFailed    = 2 // a step failed, or the build was cancelled
	ExitInvalid   = 3 // the build could not start: clone or pipeline error
	ExitInternal  = 4 // the store failed us
)

// Run runs the build of req and returns the worker's exit code and the
// final status. Cancelling ctx (SIGTERM) stops the steps; the build is then
// recorded as Failed with reason Cancelled, or DeadlineExceeded when the
// build deadline passed.
func Run(ctx context.Context, s blob.Store, req job.Request, runner StepRunner, cfg Config) (int, build.Status) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	ref := req.Ref()
	r := &run{store: s, req: req, ref: ref, runner: runner, cfg: cfg}
	r.setSecrets(nil)
	return r.run(ctx)
}

type run struct {
	store  blob.Store
	req    job.Request
	ref    string
	runner StepRunner
	cfg    Config
	// mask hides secret values in log lines and reasons: the git token
	// from the start, password inputs once the pipeline file is read.
	mask liveMask
	log  *build.LogWriter
	sys  *build.Lines

	mu      sync.Mutex
	failure string // reason of the first failure
	// diag gathers what the runner saw of each failed step, and cause
	// the first failed step's, for diagnosis.json.
	diag  build.Diagnosis
	cause string

	filesMu sync.Mutex
	// restorable are the artifacts of the steps of finished stages, in
	// the order they are restored into later steps' workspaces.
	restorable    []stepexec.Restore
	artifactBytes int64 // kept so far, against ArtifactMaxBuildSize
}

// errDeadline marks the build deadline, to tell it from a cancellation.
var errDeadline = errors.New("build deadline exceeded")

func (r *run) run(parent context.Context) (int, build.Status) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if r.cfg.Deadline > 0 {
		t := time.AfterFunc(r.cfg.Deadline, func() { cancel(errDeadline) })
		defer t.Stop()
	}
	// Status and log writes must outlive a cancelled build: they record it.
	bg := context.WithoutCancel(parent)

	now := time.Now().UTC()
	if _, err := build.UpdateStatus(bg, r.store, r.ref, func(st *build.Status) error {
		if st.Status.Final() {
			return fmt.Errorf("build %s already ended (%s)", r.ref, st.Status)
		}
		st.Status, st.Reason, st.StartedAt, st.Heartbeat = build.Running, "", &now, &now
		return nil
	}); err != nil {
		r.cfg.Logger.Error("cannot record Running", "build", r.ref, "error", err)
		return ExitInternal, build.Status{Ref: r.ref, Status: build.Failed, Reason: err.Error()}
	}
	lw, err := build.NewLogWriter(bg, r.store, r.ref, r.cfg.Log)
	if err != nil {
		return r.finish(bg, ExitInternal, "LogWriter: "+err.Error())
	}
	r.log = lw
	var sysLines atomic.Uint64
	r.sys = lw.Lines("", "", build.StreamSystem, &sysLines)
	r.sys.Mask = &r.mask

	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go r.heartbeat(hbCtx)

	code, reason := r.execute(ctx)
	if cause := context.Cause(ctx); cause != nil && code != ExitCompleted {
		switch {
		case errors.Is(cause, errDeadline):
			reason = build.ReasonDeadlineExceeded.String()
		case parent.Err() != nil:
			reason = build.ReasonCancelled.String()
		}
		r.sysf("build stopped: %s", reason)
	}
	stopHB()
	return r.finish(bg, code, reason)
}

func (r *run) sysf(format string, args ...any) {
	if r.sys != nil {
		fmt.Fprintf(r.sys, format+"\n", args...)
	}
}

func (r *run) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := build.UpdateStatus(ctx, r.store, r.ref, func(st *build.Status) error {
			if st.Status.Final() {
				return build.ErrNoChange
			}
			now := time.Now().UTC()
			st.Heartbeat = &now
			return nil
		})
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("heartbeat failed", "build", r.ref, "error", err)
		}
	}
}

// finish flushes the log, compacts it and records the final status.
func (r *run) finish(ctx context.Context, code int, reason string) (int, build.Status) {
	// A reason can quote a value (an error message, a runner's reason).
	reason = r.maskText(reason)
	phase := build.Completed
	if code != ExitCompleted {
		phase = build.Failed
	}
	if rel, ok := r.runner.(Releaser); ok {
		// Also when the build was cancelled: ctx is done then.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if err := rel.Release(rctx); err != nil {
			r.cfg.Logger.Warn("cannot release the runner's build resources", "build", r.ref, "error", err)
		}
		cancel()
	}
	diagnosed := phase == build.Failed && r.recordDiagnosis(ctx, reason)
	if r.log != nil {
		r.sysf("build %s: %s", strings.ToLower(string(phase)), reasonOr(reason, "all steps succeeded"))
		if diagnosed {
			r.sysf("diagnosis: %s (wharfjobs status %s shows the pods, Events and nodes)", r.cause, r.ref)
		}
		_ = r.sys.Close()
		closeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		if err := r.log.Close(closeCtx); err != nil {
			r.cfg.Logger.Error("log not fully shipped", "build", r.ref, "error", err)
		}
		cancel()
	}
	now := time.Now().UTC()
	st, err := build.UpdateStatus(ctx, r.store, r.ref, func(st *build.Status) error {
		st.Status, st.Reason, st.FinishedAt, st.Heartbeat = phase, reason, &now, &now
		return nil
	})
	if err != nil {
		r.cfg.Logger.Error("cannot record the final status", "build", r.ref, "error", err)
		return ExitInternal, build.Status{Ref: r.ref, Status: phase, Reason: reason}
	}
	r.dropStaging(ctx)
	if _, err := build.Compact(ctx, r.store, r.ref); err != nil {
		r.cfg.Logger.Warn("log compaction failed; readers use the chunks", "build", r.ref, "error", err)
	}
	return code, st
}

func reasonOr(reason, def string) string {
	if reason == "" {
		return def
	}
	return reason
}

// execute clones, parses and runs the stages; it returns the exit code and
// the failure reason.
func (r *run) execute(ctx context.Context) (int, string) {
	dir := r.cfg.Workdir
	gitVars := map[string]any{}
	if !r.cfg.SkipClone {
		r.sysf("cloning %s (branch %s)", redactURL(r.req.GitFullURL), reasonOr(r.req.GitBranch, "default"))
		var err error
		dir = filepath.Join(r.cfg.Workdir, "repo")
		gitVars, err = clone(ctx, r.req, dir, r.sys, r.cfg.GitAllowHTTP)
		if err != nil {
			r.sysf("clone failed: %s", r.maskText(err.Error()))
			return ExitInvalid, build.ReasonCloneFailed.With(r.maskText(err.Error()))
		}
		if _, err := build.UpdateStatus(context.WithoutCancel(ctx), r.store, r.ref, func(st *build.Status) error {
			st.Commit, _ = gitVars["GIT_COMMIT"].(string)
			return nil
		}); err != nil {
			r.cfg.Logger.Warn("cannot record the commit", "build", r.ref, "error", err)
		}
		r.sysf("checked out %v", gitVars["GIT_COMMIT"])
	} else if info, err := gitInfo(ctx, r.varsDir(dir)); err == nil {
		gitVars = info
	} else {
		// As wharf-cmd (cmd/wharf/utils.go:78-81): a directory outside git
		// builds without GIT_ and REPO_ variables.
		r.sysf("no GIT_ and REPO_ variables: %s", r.maskText(err.Error()))
	}

	src, err := os.ReadFile(filepath.Join(dir, pipeline.FileName))
	if err != nil {
		r.sysf("cannot read %s: %v", pipeline.FileName, err)
		return ExitInvalid, build.ReasonInvalidPipeline.With("no " + pipeline.FileName)
	}
	// Passwords are masked before anything about the pipeline is printed:
	// error messages quote values.
	r.setSecrets(passwordValues(src, nil, r.req.Vars))
	vars, err := r.variables(dir, gitVars)
	if err != nil {
		r.sysf("%v", err)
		return ExitInvalid, build.ReasonInvalidPipeline.With(err.Error())
	}
	def, err := pipeline.Parse(src, pipeline.Options{File: pipeline.FileName, Environment: r.req.Environment, Inputs: r.req.Vars, Vars: vars, Images: r.cfg.Images})
	// With errors, def is what the parser could make of the file (or nil):
	// its inputs say which values the errors must not show.
	r.setSecrets(passwordValues(src, def, r.req.Vars))
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			r.sysf("%s", line)
		}
		var errs pipeline.Errors
		n := 1
		if errors.As(err, &errs) {
			n = len(errs)
		}
		return ExitInvalid, build.ReasonInvalidPipeline.Withf("%d problem(s) in %s", n, pipeline.FileName)
	}
	// wharf-cmd ignores fields it does not know: so do we, but say which,
	// so a misspelt field does not pass unseen.
	for _, w := range def.Warnings {
		r.sysf("warning: %s", w.Error())
	}
	stages, err := selectStages(def, r.req.RunStages)
	if err != nil {
		r.sysf("%v", err)
		return ExitInvalid, build.ReasonInvalidPipeline.With(err.Error())
	}
	r.sysf("running %d stage(s) with the %s runner", len(stages), r.runner.Name())
	env := stepEnv(vars, r.req)
	failed := false
	for _, st := range stages {
		if ctx.Err() != nil {
			break
		}
		switch {
		case !st.RunsIn(r.req.Environment):
			r.sysf("stage %s: skipped, not for environment %q", st.Name, r.req.Environment)
			continue
		case st.RunsIf == pipeline.RunsIfSuccess && failed:
			r.sysf("stage %s: skipped, an earlier step failed", st.Name)
			continue
		case st.RunsIf == pipeline.RunsIfFail && !failed:
			r.sysf("stage %s: skipped, runs only after a failure", st.Name)
			continue
		}
		if !r.runStage(ctx, st, dir, env) {
			failed = true
		}
	}
	if ctx.Err() != nil {
		return ExitFailed, build.ReasonCancelled.String()
	}
	if failed {
		return ExitFailed, r.failure
	}
	return ExitCompleted, ""
}

// selectStages applies RUN_STAGES; unknown names are an error.
func selectStages(def *pipeline.Definition, names []string) ([]pipeline.Stage, error) {
	if len(names) == 0 || len(names) == 1 && strings.EqualFold(names[0], "ALL") {
		return def.Stages, nil
	}
	var out []pipeline.Stage
	var known []string
	for _, st := range def.Stages {
		known = append(known, st.Name)
		if slices.Contains(names, st.Name) {
			out = append(out, st)
		}
	}
	for _, n := range names {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("RUN_STAGES names stage %q, which %s does not have (it has %s)", n, pipeline.FileName, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// runStage runs a stage's steps in parallel and reports whether all
// succeeded. The stage's result depends on every step, not on the one that
// happened to finish last.
func (r *run) runStage(ctx context.Context, st pipeline.Stage, dir string, env map[string]string) bool {
	r.sysf("stage %s: %d step(s)", st.Name, len(st.Steps))
	var wg sync.WaitGroup
	ok := make([]bool, len(st.Steps))
	kept := make([]*stepexec.Restore, len(st.Steps))
	for i, step := range st.Steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i], kept[i] = r.runStep(ctx, st.Name, step, dir, env)
		}()
	}
	wg.Wait()
	// A stage's artifacts reach the later stages only: parallel steps
	// never see each other's files.
	r.filesMu.Lock()
	for _, k := range kept {
		if k != nil {
			r.restorable = append(r.restorable, *k)
		}
	}
	r.filesMu.Unlock()
	return !slices.Contains(ok, false)
}

func (r *run) runStep(ctx context.Context, stage string, step pipeline.Step, dir string, env map[string]string) (bool, *stepexec.Restore) {
	started := time.Now().UTC()
	r.stepStatus(stage, step.Name, func(s *build.StepStatus) { s.Status, s.StartedAt = build.Running, &started })
	var counter atomic.Uint64
	stdout := r.log.Lines(stage, step.Name, build.StreamStdout, &counter)
	stderr := r.log.Lines(stage, step.Name, build.StreamStderr, &counter)
	stdout.Mask, stderr.Mask = &r.mask, &r.mask
	stepCtx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.StepTimeout > 0 {
		stepCtx, cancel = context.WithTimeout(ctx, r.cfg.StepTimeout)
	}
	files := r.plan(stage, step, dir)
	files.started = started
	res, err := r.runner.Run(stepCtx, Step{Ref: r.ref, Stage: stage, Name: step.Name, Container: step.Container, Workspace: dir, Env: env,
		Instance: r.req.Instance, ProjectID: r.req.ProjectID, Type: step.Type, Files: files.plan, Transport: stepexec.StoreTransport{Store: r.store}}, stdout, stderr)
	timedOut := stepCtx.Err() != nil && ctx.Err() == nil
	cancel()
	_ = stdout.Close()
	_ = stderr.Close()
	// What the step uploaded is taken in even when it failed: test
	// results matter most then. Not after a cancel: the build is ending.
	var kept *stepexec.Restore
	var addFiles func(*build.StepStatus)
	var filesErr error
	if ctx.Err() == nil && err == nil {
		kept, addFiles, filesErr = r.takeIn(context.WithoutCancel(ctx), stage, step.Name, files, res.ExitCode == 0 && res.Reason == "" && !timedOut)
		if filesErr != nil {
			r.sysf("step %s/%s: %s", stage, step.Name, r.maskText(filesErr.Error()))
		}
	}
	finished := time.Now().UTC()
	var reason string
	switch {
	case err != nil:
		reason = r.maskText(err.Error())
		if res.ExitCode == 0 {
			res.ExitCode = -1
		}
	case timedOut:
		reason = build.ReasonTimeout.Withf("step ran longer than %s", r.cfg.StepTimeout)
	case ctx.Err() != nil && res.ExitCode != 0:
		reason = build.ReasonCancelled.String()
	case res.Reason != "":
		reason = r.maskText(res.Reason)
	case filesErr != nil:
		reason = build.ReasonOutputsFailed.With(r.maskText(filesErr.Error()))
	}
	okStep := err == nil && res.ExitCode == 0 && reason == ""
	code := res.ExitCode
	r.stepStatus(stage, step.Name, func(s *build.StepStatus) {
		s.FinishedAt, s.ExitCode, s.Reason = &finished, &code, reason
		s.Status = build.Completed
		if !okStep {
			s.Status = build.Failed
		}
		if addFiles != nil {
			addFiles(s)
		}
	})
	if okStep {
		r.sysf("step %s/%s: completed in %s", stage, step.Name, finished.Sub(started).Round(time.Millisecond))
		return true, kept
	}
	failure := build.ReasonStepFailed.Withf("%s/%s exit %d", stage, step.Name, res.ExitCode)
	if reason != "" {
		failure += " (" + reason + ")"
	}
	r.sysf("step %s/%s: failed: exit %d%s", stage, step.Name, res.ExitCode, map[bool]string{true: "", false: ", " + reason}[reason == ""])
	r.mu.Lock()
	if r.failure == "" {
		r.failure = failure
	}
	if d := res.Diagnosis; d != nil && !build.ReasonCancelled.Of(reason) {
		r.diag.Merge(*d)
		if r.cause == "" {
			r.cause = stepCause(stage, step.Name, *d, res.ExitCode, reason)
		}
	}
	r.mu.Unlock()
	return false, kept
}

// stepStatus updates one step's entry in the status document.
func (r *run) stepStatus(stage, step string, fn func(*build.StepStatus)) {
	_, err := build.UpdateStatus(context.Background(), r.store, r.ref, func(st *build.Status) error {
		i := slices.IndexFunc(st.Steps, func(s build.StepStatus) bool { return s.Stage == stage && s.Step == step })
		if i < 0 {
			st.Steps = append(st.Steps, build.StepStatus{Stage: stage, Step: step, Status: build.Scheduling})
			i = len(st.Steps) - 1
		}
		fn(&st.Steps[i])
		return nil
	})
	if err != nil {
		r.cfg.Logger.Warn("cannot record step status", "build", r.ref, "step", stage+"/"+step, "error", err)
	}
}

// stepCause is the one line a failed step's diagnosis leads with: the
// step and what its pod shows ("step build/compile: OOMKilled at 2Gi
// limit"), or its exit code and reason when the pod shows nothing more.
func stepCause(stage, step string, d build.Diagnosis, exit int, reason string) string {
	for _, p := range d.Pods {
		if c := p.Cause(); c != "" {
			return fmt.Sprintf("step %s/%s: %s", stage, step, c)
		}
	}
	if reason != "" {
		return fmt.Sprintf("step %s/%s: %s", stage, step, reason)
	}
	return fmt.Sprintf("step %s/%s: exit %d", stage, step, exit)
}

// recordDiagnosis writes diagnosis.json when a runner described a failed
// step (the kube runner does), and reports whether it did. A failure to
// write costs the bundle, not the build's status.
func (r *run) recordDiagnosis(ctx context.Context, reason string) bool {
	r.mu.Lock()
	d, cause := r.diag, r.cause
	d.Pods = slices.Clone(d.Pods)
	r.mu.Unlock()
	if cause == "" {
		return false
	}
	d.Summary, d.Reason, d.RecordedBy = r.maskText(cause), reason, "worker"
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := build.WriteDiagnosis(wctx, r.store, r.ref, d); err != nil {
		r.cfg.Logger.Warn("cannot record the diagnosis", "build", r.ref, "error", err)
		return false
	}
	return true
}
