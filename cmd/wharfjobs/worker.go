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
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// workerEnv is the worker's configuration from WHARFJOBS_* variables.
type workerEnv struct {
	Store  blob.Config
	Worker worker.Config
	// BuildRef is the build to run (the Job sets it).
	BuildRef string `envconfig:"BUILD_REF"`
	// SecretsDir holds the build's Secret as files: git-token and
	// vars.json (the build inputs).
	SecretsDir string `envconfig:"SECRETS_DIR" default:"/var/run/wharfjobs/secrets"`
	// StepRunner is local or kube.
	StepRunner string `envconfig:"STEP_RUNNER" default:"kube"`
	// LogFormat is json or text.
	LogFormat string `envconfig:"LOG_FORMAT" default:"json"`
}

func loadWorkerEnv() (workerEnv, error) {
	var env workerEnv
	for _, part := range []any{&env, &env.Store, &env.Worker, &env.Worker.Images, &env.Worker.Log} {
		if err := envconfig.Process("WHARFJOBS", part); err != nil {
			return env, fmt.Errorf("configuration: %w", err)
		}
	}
	return env, nil
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
	runner, err := stepRunner(env, store)
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

func stepRunner(env workerEnv, store blob.Store) (worker.StepRunner, error) {
	switch env.StepRunner {
	case "local":
		return localrun.Runner{}, nil
	case "kube":
		return newKubeRunner(store)
	}
	return nil, fmt.Errorf("WHARFJOBS_STEP_RUNNER=%q: expected local or kube", env.StepRunner)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// assignments reads NAME=VALUE flags (--input, --var) into a map; flag
// names the flag in errors.
func (s stringList) assignments(flag string) (map[string]any, error) {
	out := map[string]any{}
	for _, in := range s {
		k, v, ok := strings.Cut(in, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: expected NAME=VALUE", flag, in)
		}
		out[k] = v
	}
	return out, nil
}

// runRun runs a local directory's .wharf-ci.yml with the local runner and
// shows the log live.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("run", "[--env E] [--stages a,b] [--input N=V]... [DIR]", "Runs DIR's .wharf-ci.yml (default .) with the local runner, in a copy of DIR, showing\nthe log live and a summary; exit 0 when the build completed, 2 when it failed.", stdout, stderr)
	fl := cl.fl
	envName := fl.String("env", "", "environment to run in")
	stages := fl.String("stages", "ALL", "comma-separated stages to run")
	var inputs stringList
	fl.Var(&inputs, "input", "input value NAME=VALUE (repeatable)")
	positional, err := cl.parse(args, 0, 1)
	if err != nil {
		return err
	}
	dir := "."
	if len(positional) == 1 {
		dir = positional[0]
	}
	env, err := loadWorkerEnv()
	if err != nil {
		return err
	}
	vars, err := inputs.assignments("input")
	if err != nil {
		return err
	}
	store, err := backend.Open(ctx, env.Store)
	if err != nil {
		return err
	}
	ref := fmt.Sprintf("local-%d", time.Now().UnixMilli())
	work, err := os.MkdirTemp("", "wharfjobs-run-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := copyTree(dir, work); err != nil {
		return fmt.Errorf("copy %s into a workspace: %w", dir, err)
	}
	// No repository fields: as wharf-cmd's `wharf run`, the worker takes
	// GIT_BRANCH, GIT_SAFEBRANCH, REPO_GROUP and REPO_NAME from the git
	// repository of dir (current branch, origin's URL), none outside git.
	req := job.Request{BuildRef: ref, RunStages: strings.Split(*stages, ","), Environment: *envName, Vars: vars}
	if _, err := build.WriteStatus(ctx, store, ref, build.Status{Status: build.Scheduling}, ""); err != nil {
		return err
	}
	cfg := env.Worker
	// The steps run in the copy, but .wharf-vars.yml files are read from
	// dir and above it, and git is asked about dir, not the copy.
	cfg.Workdir, cfg.SkipClone, cfg.SourceDir = work, true, absPath(dir)
	cfg.Logger = newLogger("text", io.Discard)
	if cfg.Log.FlushInterval <= 0 || cfg.Log.FlushInterval > 200*time.Millisecond {
		cfg.Log.FlushInterval = 200 * time.Millisecond // a person is watching
	}
	done := make(chan int, 1)
	go func() {
		code, _ := worker.Run(ctx, store, req, localrun.Runner{}, cfg)
		done <- code
	}()
	p := newPrinter(stdout)
	st, err := build.Follow(context.WithoutCancel(ctx), store, ref, 100*time.Millisecond, p.record)
	code := <-done
	if err != nil {
		return err
	}
	p.summary(st)
	fmt.Fprintf(stdout, "\nbuild %s %s. Read its log again with: wharfjobs logs %s\n", ref, st.Status, ref)
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// copyTree copies src into dst: regular files, directories and symlinks,
// leaving out wharfjobs' own state directory.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == ".wharfjobs" {
			return fs.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil // sockets, devices: not part of a workspace
	})
}
