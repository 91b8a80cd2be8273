package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// runEnv is what run reads from the environment: the store the build's
// log and status go to, and the worker's settings (its step runner is
// --runner's).
type runEnv struct {
	Store  blob.Config
	Worker worker.Config
}

// runRun runs a local directory's .wharf-ci.yml with the runner --runner
// picks and shows the log live.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("run", "[--runner auto|docker|local] [--env E] [--stages a,b] [--input N=V]... [DIR]", "Runs DIR's .wharf-ci.yml (default .) in a copy of DIR, each step in a container of its image\nwhen a Docker or Podman engine answers (else as local processes), showing the log live and\na summary; exit 0 when the build completed, 2 when it failed.", stdout, stderr)
	fl := cl.fl
	runnerChoice := fl.String("runner", "auto", runnerUsage)
	envName := fl.String("env", "", "environment to run in")
	stages := fl.String("stages", "ALL", "comma-separated stages to run")
	var inputs stringList
	fl.Var(&inputs, "input", "input value NAME=VALUE (repeatable)")
	cl.env(&runEnv{}, &dockerrun.Config{})
	positional, err := cl.parse(args, 0, 1)
	if err != nil {
		return err
	}
	dir := "."
	if len(positional) == 1 {
		dir = positional[0]
	}
	var env runEnv
	if err := loadEnv(&env); err != nil {
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
	dr, err := pickRunner(ctx, *runnerChoice, stdout, stderr)
	if err != nil {
		return err
	}
	var runner worker.StepRunner = localrun.Runner{}
	if dr != nil {
		defer dr.Close()
		runner = dr
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
		code, _ := worker.Run(ctx, store, req, runner, cfg)
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
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil // sockets, devices: not part of a workspace
	})
}

// copyFile copies the regular file src to dst, created with perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
