package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// runLogs prints a build's log from the store: the chunks while it runs,
// the compacted log after, months after its pod is gone.
func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("logs", "[-f] [--step NAME] [--since 10m|RFC3339] [--raw|--json] [store flags] REF", "Prints a build's log from the store: the chunks while it runs, the compacted log\nafter, months after its pod is gone; -f follows it until the build ends.", stdout, stderr)
	fl := cl.fl
	follow := fl.Bool("follow", false, "keep printing new lines until the build ends (also -f)")
	fl.BoolVar(follow, "f", false, "short for --follow")
	step := fl.String("step", "", "only this step (NAME or STAGE/NAME)")
	since := fl.String("since", "", "only lines after this: a duration back from now (10m) or an RFC 3339 time")
	raw := fl.Bool("raw", false, "print the lines' text only")
	asJSON := fl.Bool("json", false, "print the JSON records")
	interval := fl.Duration("interval", time.Second, "how often --follow polls the store")
	sf := addStoreFlags(cl, ".wharfjobs/store")
	positional, err := cl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ref := positional[0]
	var after time.Time
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			after = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			after = t
		} else {
			return fmt.Errorf("--since %q: expected a duration such as 10m or an RFC 3339 time", *since)
		}
	}
	store, cfg, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if ref, err = resolveRef(ctx, store, ref, stderr); err != nil {
		return err
	}
	p := newPrinter(stdout)
	p.raw = *raw
	var buf []byte
	emit := func(r build.Record) error {
		if *step != "" && r.Step != *step && r.Stage+"/"+r.Step != *step {
			return nil
		}
		if !after.IsZero() && !r.Time.After(after) {
			return nil
		}
		if *asJSON {
			buf = r.AppendJSON(buf[:0])
			_, err := stdout.Write(buf)
			return err
		}
		return p.record(r)
	}
	if *follow {
		// A build exists from its trigger on (the provisioner writes its
		// status before it answers): following one that does not would
		// wait for ever.
		if _, err := store.Stat(ctx, build.StatusKey(ref)); errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("no build %s in %s", ref, cfg.Where())
		}
		_, err := build.Follow(ctx, store, ref, *interval, emit)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	rc, err := build.OpenLog(ctx, store, ref)
	if errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("no build %s in %s", ref, cfg.Where())
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	return build.ScanRecords(rc, emit)
}
