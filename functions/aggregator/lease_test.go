package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
)

func TestLeaseRaceHasOneWinner(t *testing.T) {
	s := newMinIO(t)
	var wg sync.WaitGroup
	wins := make([]bool, 10)
	for i := range wins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := aggregator.Acquire(context.Background(), s, "race", fmt.Sprint("r", i), time.Minute, time.Now())
			wins[i] = err == nil
		}()
	}
	wg.Wait()
	n := 0
	for _, w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas hold the lease", n)
	}
	// An expired lease can be taken over; a live one cannot.
	if _, err := aggregator.Acquire(context.Background(), s, "race", "late", time.Minute, time.Now()); !errors.Is(err, aggregator.ErrLeaseHeld) {
		t.Fatalf("took a live lease: %v", err)
	}
	if _, err := aggregator.Acquire(context.Background(), s, "race", "late", time.Minute, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatalf("could not take an expired lease: %v", err)
	}
}

// resumeSink records the order of Resume and Lines calls.
type resumeSink struct {
	*aggregatortest.MemorySink
	mu    sync.Mutex
	calls []string
}

func (s *resumeSink) Resume(b aggregator.Build) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "resume "+b.Ref)
}

func (s *resumeSink) Lines(ctx context.Context, b aggregator.Build, recs []build.Record) error {
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("lines %s %d", b.Ref, len(recs)))
	s.mu.Unlock()
	return s.MemorySink.Lines(ctx, b, recs)
}

func (s *resumeSink) took() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// A replica that takes a build over from an earlier holder tells a
// Resumer sink before its first batch (the earlier holder may have had
// that batch taken without moving the cursor); a replica relaying a
// build it holds, or one nobody relayed before, does not.
func TestTakeoverResumesTheSink(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	writeBuild(t, s, "7", 10, "", nil)
	first := &resumeSink{MemorySink: aggregatortest.NewMemorySink()}
	a := aggregator.New(s, first, nil, aggregator.Config{Holder: "first", LeaseDuration: 200 * time.Millisecond, Logger: quiet})
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	more := func(line int) {
		w, _ := build.NewLogWriter(ctx, s, "7", build.WriterConfig{SpillDir: t.TempDir(), Logger: quiet})
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(line), Time: time.Now(), Text: fmt.Sprint("line ", line)})
		_ = w.Close(ctx)
	}
	more(11)
	if err := a.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := first.took(), []string{"lines 7 10", "lines 7 1"}; !slices.Equal(got, want) {
		t.Fatalf("the first holder's sink got %q, want %q", got, want)
	}

	// The first holder is gone; after its lease expired another replica
	// takes the build over.
	time.Sleep(300 * time.Millisecond) // the lease's expiry, which the replica judges by the clock
	more(12)
	second := &resumeSink{MemorySink: aggregatortest.NewMemorySink()}
	b := aggregator.New(s, second, nil, aggregator.Config{Holder: "second", Logger: quiet})
	if err := b.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := second.took(), []string{"resume 7", "lines 7 1"}; !slices.Equal(got, want) {
		t.Fatalf("the second replica's sink got %q, want %q", got, want)
	}
}
