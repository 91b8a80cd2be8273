package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// runWorkspaceFetch is the init container of a step pod: it fetches the
// workspace archive from $WHARFJOBS_WORKSPACE_URL into DIR, restores the
// archives of the step's file plan (earlier stages' artifacts, its cache)
// on top, and copies this binary where the step container runs it as
// `step-exec`.
func runWorkspaceFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("workspace-fetch", "[--timeout D] [--files FILE] [--install DIR] DIR", "The init container of a step pod: fetches the workspace archive from\n$WHARFJOBS_WORKSPACE_URL into DIR, restores the archives the file plan names,\nand installs this binary into the step's tools directory.", stdout, stderr)
	fl := cl.fl
	timeout := fl.Duration("timeout", 10*time.Minute, "bound of the download")
	planFile := fl.String("files", "", "the step's file plan (JSON, with pre-signed URLs)")
	install := fl.String("install", "", "directory to copy this binary into, for step-exec")
	cl.envVar("WHARFJOBS_WORKSPACE_URL", "", "URL of the workspace archive (the step runner sets it)")
	positional, err := cl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	dir := positional[0]
	url := os.Getenv("WHARFJOBS_WORKSPACE_URL")
	if url == "" {
		return errors.New("WHARFJOBS_WORKSPACE_URL is empty")
	}
	if err := kuberun.Fetch(ctx, url, dir, *timeout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "workspace fetched into %s\n", dir)
	if *planFile != "" {
		plan, err := readPlan(*planFile)
		if err != nil {
			return err
		}
		// The restore lines belong in the build log, which follows the
		// step container only: the step's own log says what was restored
		// through the termination message when it fails; on success the
		// counts go to this container's log.
		t := stepexec.URLTransport{URLs: plan.URLs, Timeout: *timeout}
		if err := stepexec.Before(ctx, plan, t, dir, stdout); err != nil {
			writeTermination(build.ReasonRestoreFailed.With(err.Error()))
			return err
		}
	}
	if *install != "" {
		if err := installSelf(*install); err != nil {
			return fmt.Errorf("install step-exec: %w", err)
		}
	}
	return nil
}

// installSelf copies the running binary into dir as "wharfjobs".
func installSelf(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return copyFile(self, filepath.Join(dir, "wharfjobs"), 0o755)
}
