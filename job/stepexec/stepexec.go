// Package stepexec moves a step's declared files between its workspace and
// the blob store, on the step's side: before the script it restores the
// artifacts of earlier stages and the step's cache; after it, it collects
// the files the step declared (artifacts, test results, cache paths) into
// one archive each and uploads it. The worker decides what moves (a Plan)
// and checks every archive again when it takes it in: a step is untrusted
// code, and its side of this exchange only ever sees pre-signed URLs (the
// kube runner, through `wharfjobs step-exec`) or, in the local runner, the
// store of a process that runs its commands on the same machine anyway.
package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepfiles"
)

// Plan is what moves in and out of one step's workspace.
type Plan struct {
	// Restore are archives extracted into the workspace before the script,
	// in order, so a later one wins where two hold the same path.
	Restore []Restore `json:"restore,omitempty"`
	// Collect are archives made from the workspace after the script.
	Collect []Collect `json:"collect,omitempty"`
	// URLs maps the keys above to pre-signed URLs (GET for Restore, PUT
	// for Collect) when the step reaches the store over HTTP.
	URLs map[string]string `json:"urls,omitempty"`
}

// Empty reports whether nothing moves.
func (p Plan) Empty() bool { return len(p.Restore) == 0 && len(p.Collect) == 0 }

// Restore is one archive to extract; the first of Keys that exists is used.
type Restore struct {
	// What names it in the build log ("artifacts of build/compile").
	What string   `json:"what"`
	Keys []string `json:"keys"`
	// Optional archives (caches) may be missing.
	Optional bool             `json:"optional,omitempty"`
	Limits   stepfiles.Limits `json:"limits"`
}

// Collect is one archive made from the workspace after the script.
type Collect struct {
	// What names it in the build log ("artifacts", "test results",
	// "cache go-1a2b...").
	What string `json:"what"`
	// Key is where the archive goes; the worker takes it from there.
	Key            string             `json:"key"`
	Paths          []string           `json:"paths"`
	When           pipeline.When      `json:"when"`
	IfNoFilesFound pipeline.IfNoFiles `json:"ifNoFilesFound"`
	// KeepLinks keeps symlinks inside the workspace as links (caches such
	// as node_modules/.bin); artifacts carry the files they point to.
	KeepLinks bool             `json:"keepLinks,omitempty"`
	Limits    stepfiles.Limits `json:"limits"`
	// LimitsFrom names the settings behind Limits, for the message when
	// one is hit.
	LimitsFrom string `json:"limitsFrom,omitempty"`
	// WarnOnly makes a problem a warning in the log instead of a failure
	// of the step (a cache that cannot be saved costs time, nothing else).
	WarnOnly bool `json:"warnOnly,omitempty"`
}

// ErrNotFound is what a Transport's Get returns for a missing object.
var ErrNotFound = errors.New("not found")

// Transport reaches the objects of a Plan.
type Transport interface {
	// Get opens the object at key, or fails with ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores size bytes of r at key.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
}

// Before restores the plan's archives into root, writing a line per
// archive to log. A missing archive that is not optional is an error.
func Before(ctx context.Context, p Plan, t Transport, root string, log io.Writer) error {
	for _, r := range p.Restore {
		if err := restore(ctx, r, t, root, log); err != nil {
			return err
		}
	}
	return nil
}

func restore(ctx context.Context, r Restore, t Transport, root string, log io.Writer) error {
	for _, key := range r.Keys {
		rc, err := t.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		var paths []string
		if err == nil {
			paths, err = stepfiles.Extract(rc, root, r.Limits)
			rc.Close()
		}
		if err != nil && r.Optional {
			// A cache that cannot be read costs time, nothing else.
			fmt.Fprintf(log, "[wharfjobs] warning: restore %s: %v\n", r.What, err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", r.What, err)
		}
		fmt.Fprintf(log, "[wharfjobs] restored %s: %d file(s)\n", r.What, len(paths))
		return nil
	}
	if r.Optional {
		fmt.Fprintf(log, "[wharfjobs] %s: none saved yet\n", r.What)
		return nil
	}
	return fmt.Errorf("restore %s: %w", r.What, ErrNotFound)
}

// After collects the plan's files from root, given whether the script
// succeeded, and uploads an archive for each Collect that matched files.
// Every problem is reported (in log, and joined in the error); a problem
// with one archive does not stop the others.
func After(ctx context.Context, p Plan, t Transport, root string, ok bool, tmpDir string, log io.Writer) error {
	var errs []error
	for _, c := range p.Collect {
		if !c.When.Applies(ok) {
			continue
		}
		err := collect(ctx, c, t, root, tmpDir, log)
		switch {
		case err == nil:
		case c.WarnOnly:
			fmt.Fprintf(log, "[wharfjobs] warning: %v\n", err)
		default:
			fmt.Fprintf(log, "[wharfjobs] %v\n", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func collect(ctx context.Context, c Collect, t Transport, root, tmpDir string, log io.Writer) error {
	files, unmatched, err := stepfiles.Match(root, c.Paths, stepfiles.MatchOptions{KeepLinks: c.KeepLinks})
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	for _, pat := range unmatched {
		switch c.IfNoFilesFound {
		case pipeline.NoFilesError:
			return fmt.Errorf("%s: no file matches %q (ifNoFilesFound: error)", c.What, pat)
		case pipeline.NoFilesIgnore:
		default:
			fmt.Fprintf(log, "[wharfjobs] warning: %s: no file matches %q\n", c.What, pat)
		}
	}
	if len(files) == 0 {
		return nil
	}
	f, err := os.CreateTemp(tmpDir, "wharfjobs-collect-*.tar.zst")
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := stepfiles.WriteArchive(f, root, files, c.Limits)
	if err != nil {
		if errors.Is(err, stepfiles.ErrTooLarge) && c.LimitsFrom != "" {
			return fmt.Errorf("%s: %w (limits: %s)", c.What, err, c.LimitsFrom)
		}
		return fmt.Errorf("%s: %w", c.What, err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.What, err)
	}
	if err := t.Put(ctx, c.Key, f, size); err != nil {
		return fmt.Errorf("%s: upload: %w", c.What, err)
	}
	fmt.Fprintf(log, "[wharfjobs] %s: %d file(s), %s uploaded\n", c.What, len(files), stepfiles.FormatSize(n))
	return nil
}
