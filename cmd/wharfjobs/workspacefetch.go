package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// runWorkspaceFetch is the init container of a step pod: it fetches the
// workspace archive from $WHARFJOBS_WORKSPACE_URL into DIR.
func runWorkspaceFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("workspace-fetch", "[--timeout D] DIR", "The init container of a step pod: fetches the workspace archive from\n$WHARFJOBS_WORKSPACE_URL into DIR.", stdout, stderr)
	fl := cl.fl
	timeout := fl.Duration("timeout", 10*time.Minute, "bound of the download")
	positional, err := cl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	url := os.Getenv("WHARFJOBS_WORKSPACE_URL")
	if url == "" {
		return errors.New("WHARFJOBS_WORKSPACE_URL is empty")
	}
	if err := kuberun.Fetch(ctx, url, positional[0], *timeout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "workspace fetched into %s\n", positional[0])
	return nil
}
