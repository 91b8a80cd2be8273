package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// workerEnv is the worker's configuration from WHARFJOBS_* variables.
type workerEnv struct {
	Store  blob.Config
	Worker worker.Config
	// BuildRef is the build to run (the Job sets it).
	BuildRef string `envconfig:"BUILD_REF" desc:"build to run (the build Job sets it; --ref overrides)"`
	// SecretsDir holds the build's Secret as files: git-token and
	// vars.json (the build inputs).
	SecretsDir string `envconfig:"SECRETS_DIR" default:"/var/run/wharfjobs/secrets" desc:"directory of the build's Secret as files: git-token, vars.json"`
	// StepRunner is kube, docker or local.
	StepRunner string `envconfig:"STEP_RUNNER" default:"kube" desc:"where steps run: kube (a pod per step), docker (a container per step through WHARFJOBS_DOCKER_HOST) or local (processes)"`
	// LogFormat is json or text.
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"format of the process's own log on stderr: json or text"`
}

// loadWorkerEnv reads and validates the worker's configuration (the
// store, worker.Config with its Images, Log and Files, and workerEnv's
// own fields).
func loadWorkerEnv() (workerEnv, error) {
	var env workerEnv
	err := loadEnv(&env)
	return env, err
}

// Validate refuses a step runner or log format that does not exist.
func (e *workerEnv) Validate() error {
	if e.StepRunner != "local" && e.StepRunner != "kube" && e.StepRunner != "docker" {
		return fmt.Errorf("WHARFJOBS_STEP_RUNNER=%q: expected kube, docker or local", e.StepRunner)
	}
	return validLogFormat(e.LogFormat)
}

// validLogFormat refuses a WHARFJOBS_LOG_FORMAT other than json or text.
func validLogFormat(f string) error {
	if f != "json" && f != "text" {
		return fmt.Errorf("WHARFJOBS_LOG_FORMAT=%q: expected json or text", f)
	}
	return nil
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// readSecrets reads the build's Secret files (git-token, vars.json); a
// missing file means that secret is absent.
func readSecrets(dir string) (job.Secrets, error) {
	var s job.Secrets
	b, err := os.ReadFile(filepath.Join(dir, kube.GitTokenKey))
	switch {
	case err == nil:
		s.GitToken = strings.TrimSpace(string(b))
	case !errors.Is(err, fs.ErrNotExist):
		return s, fmt.Errorf("read git token: %w", err)
	}
	b, err = os.ReadFile(filepath.Join(dir, kube.VarsKey))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s.Vars); err != nil {
			return s, fmt.Errorf("read build inputs: %s is not a JSON object", kube.VarsKey)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return s, fmt.Errorf("read build inputs: %w", err)
	}
	return s, nil
}

// runWorker is the body of a build Job's pod: it runs one build whose
// request the provisioner stored, and exits with the worker's exit code.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("worker", "[--ref REF]", "The body of a build Job's pod: runs the build whose request the provisioner stored\n(builds/REF/request.json), with the secrets from WHARFJOBS_SECRETS_DIR.", stdout, stderr)
	fl := cl.fl
	ref := fl.String("ref", "", "build ref to run (default $WHARFJOBS_BUILD_REF)")
	cl.env(&workerEnv{}, &kuberun.Config{}, &dockerrun.Config{})
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	env, err := loadWorkerEnv()
	if err != nil {
		return err
	}
	if *ref == "" {
		*ref = env.BuildRef
	}
	if *ref == "" {
		return errors.New("no build ref: pass --ref or set WHARFJOBS_BUILD_REF")
	}
	logger := newLogger(env.LogFormat, stderr)
	env.Worker.Logger = logger
	store, err := backend.Open(ctx, env.Store)
	if err != nil {
		return err
	}
	b, _, err := blob.ReadAll(ctx, store, build.RequestKey(*ref), 1<<20)
	if err != nil {
		return fmt.Errorf("read the request of build %s: %w", *ref, err)
	}
	var req job.Request
	if err := json.Unmarshal(b, &req); err != nil {
		return fmt.Errorf("decode the request of build %s: %w", *ref, err)
	}
	if req.Ref() != *ref {
		return fmt.Errorf("request.json of build %s names build %s", *ref, req.Ref())
	}
	secrets, err := readSecrets(env.SecretsDir)
	if err != nil {
		return err
	}
	req = req.WithSecrets(secrets)
	runner, err := stepRunner(ctx, env, store)
	if err != nil {
		return err
	}
	logger.Info("build starting", "build", *ref, "runner", runner.Name())
	code, st := worker.Run(ctx, store, req, runner, env.Worker)
	logger.Info("build finished", "build", *ref, "status", st.Status, "reason", st.Reason, "exitCode", code)
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

// exitCode makes run exit with a specific code without printing more.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

func stepRunner(ctx context.Context, env workerEnv, store blob.Store) (worker.StepRunner, error) {
	switch env.StepRunner {
	case "local":
		return localrun.Runner{}, nil
	case "kube":
		return newKubeRunner(store)
	case "docker":
		return newDockerRunner(ctx)
	}
	return nil, fmt.Errorf("WHARFJOBS_STEP_RUNNER=%q: expected kube, docker or local", env.StepRunner)
}
