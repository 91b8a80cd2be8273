package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// runStatus prints one build's status, or a table of recent builds.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("status", "[--limit N] [store flags] [REF]", "Prints one build's status and steps, or a table of the recent builds.", stdout, stderr)
	fl := cl.fl
	limit := fl.Int("limit", 20, "how many recent builds the table shows")
	sf := addStoreFlags(cl, ".wharfjobs/store")
	positional, err := cl.parse(args, 0, 1)
	if err != nil {
		return err
	}
	store, cfg, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if len(positional) == 1 {
		ref, err := resolveRef(ctx, store, positional[0], stderr)
		if err != nil {
			return err
		}
		st, _, err := build.ReadStatus(ctx, store, ref)
		if errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("no build %s in %s", ref, cfg.Where())
		}
		if err != nil {
			return err
		}
		if st.Commit != "" {
			fmt.Fprintf(stdout, "commit %s\n", st.Commit)
		}
		newPrinter(stdout).summary(st)
		// The post-mortem bundle of a failed build, when one was recorded
		// (in a cluster): it outlives the Job and its pods.
		d, err := build.ReadDiagnosis(ctx, store, ref)
		switch {
		case err == nil:
			fmt.Fprint(stdout, d.Text())
		case !errors.Is(err, blob.ErrNotFound):
			fmt.Fprintf(stderr, "wharfjobs status: %v\n", err)
		}
		return nil
	}
	var all []build.Status
	err = blob.ListAll(ctx, store, blob.ListOptions{Prefix: build.Root, Delimited: true}, func(info blob.Info) error {
		ref, ok := build.RefOfKey(info.Key)
		if !ok || !info.IsPrefix {
			return nil
		}
		st, _, err := build.ReadStatus(ctx, store, ref)
		if err == nil {
			all = append(all, st)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].CreatedAt.After(all[j].CreatedAt) })
	if len(all) > *limit {
		all = all[:*limit]
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILD\tSTATUS\tCREATED\tDURATION\tREASON")
	for _, st := range all {
		dur := ""
		if st.StartedAt != nil && st.FinishedAt != nil {
			dur = st.FinishedAt.Sub(*st.StartedAt).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Ref, st.Status, st.CreatedAt.Local().Format("2006-01-02 15:04:05"), dur, strings.TrimSpace(st.Reason))
	}
	return tw.Flush()
}
