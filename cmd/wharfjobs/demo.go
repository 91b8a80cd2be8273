package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// runDemo writes a sample build through the same blob layer the worker
// uses (status document, log chunk writer, compaction) and reads its log
// back, to show the data layout without a cluster.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("demo", flag.ContinueOnError)
	fl.SetOutput(stderr)
	ref := fl.String("ref", fmt.Sprintf("demo-%d", time.Now().Unix()), "build ref to write")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	var cfg blob.Config
	if err := envconfig.Process("WHARFJOBS", &cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	store, err := backend.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store: %s\n", cfg.Where())

	if _, err := build.WriteStatus(ctx, store, *ref, build.Status{Status: build.Scheduling}, ""); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "build %s: Scheduling\n", *ref)
	if _, err := build.UpdateStatus(ctx, store, *ref, func(st *build.Status) error {
		now := time.Now().UTC()
		st.Status, st.StartedAt = build.Running, &now
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "build %s: Running\n", *ref)

	w, err := build.NewLogWriter(ctx, store, *ref, build.WriterConfig{})
	if err != nil {
		return err
	}
	// Two steps of one stage write in parallel, as a worker's steps do.
	var wg sync.WaitGroup
	for _, step := range []string{"compile", "lint"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n atomic.Uint64
			out := w.Lines("build", step, build.StreamStdout, &n)
			for i := 1; i <= 3; i++ {
				fmt.Fprintf(out, "%s: working (%d/3)\n", step, i)
				time.Sleep(20 * time.Millisecond)
			}
			_ = out.Close()
		}()
	}
	wg.Wait()
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		return err
	}
	if _, err := build.UpdateStatus(ctx, store, *ref, func(st *build.Status) error {
		now := time.Now().UTC()
		st.Status, st.FinishedAt = build.Completed, &now
		return nil
	}); err != nil {
		return err
	}
	state, err := build.Compact(ctx, store, *ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "build %s: Completed; log compacted from %d chunk(s), %d bytes\n\n", *ref, state.CompactedThrough, state.CompactedSize)

	rc, err := build.OpenLog(ctx, store, *ref)
	if err != nil {
		return err
	}
	defer rc.Close()
	fmt.Fprintf(stdout, "log of build %s (%s):\n", *ref, build.LogKey(*ref))
	return build.ScanRecords(rc, func(r build.Record) error {
		_, err := fmt.Fprintf(stdout, "  %s %-14s %s\n", r.Time.Format("15:04:05.000"), strings.Join([]string{r.Stage, r.Step}, "/"), r.Text)
		return err
	})
}
