package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// Build identifies a build to a sink.
type Build struct {
	// Ref is the build's key in the store.
	Ref string
	// ID is wharf-api's build id (BUILD_REF).
	ID string
}

// Sink receives what the aggregator relays. A method that returns nil has
// acknowledged: the cursor moves past what it got. An error wrapping
// ErrPermanent parks the build (no retries); any other error is retried
// with backoff.
type Sink interface {
	Lines(ctx context.Context, b Build, recs []build.Record) error
	Status(ctx context.Context, b Build, st build.Status) error
	// Artifact and TestResult get one file each; name is its path below
	// builds/<ref>/artifacts/ or test-results/ ("<stage>/<step>/<path>"),
	// and r is read once (a retry calls again with a new reader).
	Artifact(ctx context.Context, b Build, name string, r io.Reader) error
	TestResult(ctx context.Context, b Build, name string, r io.Reader) error
}

// Resumer is a Sink that can find out itself which lines it already has.
// A replica that takes a build over from an earlier holder (one that died,
// was replaced by a rolling update, or this replica before it restarted)
// calls Resume before its first delivery: the earlier holder may have had
// a batch acknowledged, or partly taken, without moving the cursor, and
// the cursor's batch would otherwise be delivered twice.
type Resumer interface {
	Resume(b Build)
}

// ErrPermanent marks a sink rejection that will never succeed, such as a
// build wharf-api does not know.
var ErrPermanent = errors.New("permanent sink rejection")

// ErrRefused marks one file the sink will never take (wharf-api's 400 or
// 413): the aggregator logs and counts it and goes on with the build's
// other files and its status.
var ErrRefused = errors.New("file refused by the sink")

// WriterSink prints relayed lines and statuses (the embedded default
// without wharf-api).
type WriterSink struct {
	W  io.Writer
	mu sync.Mutex
}

// Lines implements Sink.
func (s *WriterSink) Lines(_ context.Context, b Build, recs []build.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		if _, err := fmt.Fprintf(s.W, "[%s] %-20s | %s\n", b.Ref, r.Source(), r.Text); err != nil {
			return err
		}
	}
	return nil
}

// Status implements Sink.
func (s *WriterSink) Status(_ context.Context, b Build, st build.Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	reason := ""
	if st.Reason != "" {
		reason = " (" + st.Reason + ")"
	}
	_, err := fmt.Fprintf(s.W, "[%s] status %s%s\n", b.Ref, st.Status, reason)
	return err
}

// Artifact implements Sink.
func (s *WriterSink) Artifact(_ context.Context, b Build, name string, r io.Reader) error {
	return s.file(b, "artifact", name, r)
}

// TestResult implements Sink.
func (s *WriterSink) TestResult(_ context.Context, b Build, name string, r io.Reader) error {
	return s.file(b, "test result", name, r)
}

func (s *WriterSink) file(b Build, what, name string, r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = fmt.Fprintf(s.W, "[%s] %s %s (%d bytes)\n", b.Ref, what, name, n)
	return err
}
