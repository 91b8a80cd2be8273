package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepfiles"
)

// runArtifacts lists a build's artifacts and test results, or downloads
// them.
func runArtifacts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("artifacts", "[--get PATH] [-o DIR] [store flags] REF", "Lists a build's artifacts and test results (size, the step that kept them),\nor downloads them: --get PATH prints one to stdout (or writes it into -o DIR),\n-o DIR alone writes all of them below DIR as STAGE/STEP/PATH.", stdout, stderr)
	fl := cl.fl
	get := fl.String("get", "", "print the file STAGE/STEP/PATH (as listed) to stdout")
	out := fl.String("o", "", "write into this directory instead")
	sf := addStoreFlags(cl, ".wharfjobs/store")
	positional, err := cl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	store, cfg, err := sf.open(ctx)
	if err != nil {
		return err
	}
	ref, err := resolveRef(ctx, store, positional[0], stderr)
	if err != nil {
		return err
	}
	if _, _, err := build.ReadStatus(ctx, store, ref); errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("no build %s in %s", ref, cfg.Where())
	}
	type file struct {
		kind, name string
		size       int64
		key        string
	}
	var files []file
	for _, kind := range []struct{ name, prefix string }{{"artifact", build.ArtifactPrefix(ref)}, {"test result", build.TestResultPrefix(ref)}} {
		list, err := build.ListFiles(ctx, store, kind.prefix)
		if err != nil {
			return err
		}
		for _, f := range list {
			files = append(files, file{kind.name, f.Name, f.Size, kind.prefix + f.Name})
		}
	}
	if *get != "" {
		for _, f := range files {
			if f.name == *get {
				if *out != "" {
					return download(ctx, store, f.key, filepath.Join(*out, filepath.FromSlash(f.name)))
				}
				rc, _, err := store.Get(ctx, f.key)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.Copy(stdout, rc)
				return err
			}
		}
		return fmt.Errorf("build %s has no artifact %q (wharfjobs artifacts %s lists them)", ref, *get, ref)
	}
	if *out != "" {
		for _, f := range files {
			dst := filepath.Join(*out, filepath.FromSlash(f.name))
			if f.kind == "test result" {
				dst = filepath.Join(*out, "test-results", filepath.FromSlash(f.name))
			}
			if err := download(ctx, store, f.key, dst); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", dst)
		}
		return nil
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "build %s kept no artifacts or test results\n", ref)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE/STEP\tPATH\tSIZE\tKIND")
	for _, f := range files {
		parts := strings.SplitN(f.name, "/", 3)
		step, path := f.name, ""
		if len(parts) == 3 {
			step, path = parts[0]+"/"+parts[1], parts[2]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", step, path, stepfiles.FormatSize(f.size), f.kind)
	}
	return tw.Flush()
}

// download writes the object at key to dst, creating its directory; the
// names come from the store's keys, which hold no "..".
func download(ctx context.Context, store blob.Store, key, dst string) error {
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return f.Close()
}
