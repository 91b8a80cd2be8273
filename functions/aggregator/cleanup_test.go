package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

func TestCleanupJobsAfterTheFinalRelay(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	writeBuild(t, s, "done", 3, build.Completed, nil)
	writeBuild(t, s, "running", 3, "", nil)
	jobs := fakeJobs{"done": {Ref: "done", WorkerID: "wharf-build-done", Phase: "Completed"}, "running": {Ref: "running", WorkerID: "wharf-build-running", Phase: "Running"}}
	a := aggregator.New(s, aggregatortest.NewMemorySink(), jobs, aggregator.Config{CleanupJobs: true, Logger: quiet})
	if err := a.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := jobs["done"]; ok {
		t.Fatal("the finished build's Job was not deleted")
	}
	if _, ok := jobs["running"]; !ok {
		t.Fatal("a running build's Job was deleted")
	}
}

// TestChunksDeletedAfterTheFinalRelay: once a build's relay is final its
// chunks go, and the compacted log still holds every line: at once when
// the worker already compacted, after CompactWait (the aggregator
// compacting itself) when it did not, never with KeepChunks.
func TestChunksDeletedAfterTheFinalRelay(t *testing.T) {
	for _, tc := range []struct {
		name            string
		compacted, keep bool
		wantChunks      bool
	}{
		{"worker compacted", true, false, false},
		{"worker did not compact", false, false, false},
		{"keep chunks", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := fs.Open(t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			writeBuild(t, s, "c", 300, build.Completed, nil)
			// An archive a step uploaded, which a lost worker never removed.
			staged := build.StagingKey("c", "b", "s", "artifacts")
			if _, err := s.Put(ctx, staged, strings.NewReader("archive"), 7, blob.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(ctx, build.WorkspaceKey("c"), strings.NewReader("checkout"), 8, blob.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			if tc.compacted {
				if _, err := build.Compact(ctx, s, "c"); err != nil {
					t.Fatal(err)
				}
			}
			sink := aggregatortest.NewMemorySink()
			a := aggregator.New(s, sink, nil, aggregator.Config{PollInterval: 20 * time.Millisecond, CompactWait: 300 * time.Millisecond, KeepChunks: tc.keep, Logger: quiet})
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			defer func() { cancel(); <-done }()
			chunksLeft := func() int {
				c, err := build.AllChunks(ctx, s, "c", 0)
				if err != nil {
					t.Fatal(err)
				}
				return len(c)
			}
			if err := testenv.WaitFor(ctx, 10*time.Second, 10*time.Millisecond, statuses(sink, "c", 1)); err != nil { // Completed: written before Run started
				t.Fatal(err)
			}
			relayedAt := time.Now()
			if !tc.compacted && !tc.keep && chunksLeft() == 0 {
				t.Fatal("chunks deleted before the worker had its CompactWait to compact")
			}
			err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() error {
				if n := chunksLeft(); n != 0 {
					return fmt.Errorf("%d chunks left", n)
				}
				return nil
			})
			if _, err := s.Stat(ctx, staged); !tc.wantChunks && !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("the steps' archive is still there: %v", err)
			}
			if _, err := s.Stat(ctx, build.WorkspaceKey("c")); !tc.wantChunks && !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("the published workspace is still there: %v", err)
			}
			switch {
			case tc.wantChunks && err == nil:
				t.Fatal("chunks deleted although KeepChunks is set")
			case !tc.wantChunks && err != nil:
				t.Fatalf("chunks of a finished, relayed build: %v", err)
			case !tc.wantChunks && !tc.compacted:
				t.Logf("chunks deleted %v after the final relay (CompactWait 300ms)", time.Since(relayedAt).Round(time.Millisecond))
			}
			rc, err := build.OpenLog(ctx, s, "c")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n := 0
			if err := build.ScanRecords(rc, func(r build.Record) error {
				n++
				if r.Line != uint64(n) {
					return fmt.Errorf("line %d where %d was expected", r.Line, n)
				}
				return nil
			}); err != nil || n != 300 {
				t.Fatalf("log after the chunks went: %d of 300 lines, %v", n, err)
			}
			if recs, _, _ := sink.Received("c"); len(recs) != 300 {
				t.Fatalf("relayed %d of 300 lines", len(recs))
			}
		})
	}
}
