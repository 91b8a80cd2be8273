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

// ErrPermanent marks a sink rejection that will never succeed, such as a
// build wharf-api does not know.
var ErrPermanent = errors.New("permanent sink rejection")

// ErrRefused marks one file the sink will never take (wharf-api's 400 or
// 413): the aggregator logs and counts it and goes on with the build's
// other files and its status.
var ErrRefused = errors.New("file refused by the sink")

// MemorySink keeps everything it is sent; for tests.
type MemorySink struct {
	mu        sync.Mutex
	lines     map[string][]build.Record
	statuses  map[string][]build.Status
	artifacts map[string]map[string][]byte
	tests     map[string]map[string][]byte
	// Fail, when set, is called before each delivery; its error is returned.
	Fail func(b Build, what string) error
	// active counts deliveries in progress per build, to catch two
	// replicas relaying one build at once.
	active     map[string]int
	Concurrent int // deliveries that overlapped another for the same build
	// MaxBatch is the most lines one Lines call delivered: a batch ends at
	// a chunk boundary, so it can exceed the aggregator's BatchLines.
	MaxBatch int
}

// NewMemorySink returns an empty sink.
func NewMemorySink() *MemorySink {
	return &MemorySink{lines: map[string][]build.Record{}, statuses: map[string][]build.Status{}, artifacts: map[string]map[string][]byte{}, tests: map[string]map[string][]byte{}, active: map[string]int{}}
}

func (m *MemorySink) enter(b Build, what string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active[b.Ref] > 0 {
		m.Concurrent++
	}
	m.active[b.Ref]++
	if m.Fail != nil {
		if err := m.Fail(b, what); err != nil {
			m.active[b.Ref]--
			return err
		}
	}
	return nil
}

func (m *MemorySink) leave(b Build) {
	m.mu.Lock()
	m.active[b.Ref]--
	m.mu.Unlock()
}

// Lines implements Sink.
func (m *MemorySink) Lines(_ context.Context, b Build, recs []build.Record) error {
	if err := m.enter(b, "lines"); err != nil {
		return err
	}
	defer m.leave(b)
	m.mu.Lock()
	m.lines[b.Ref] = append(m.lines[b.Ref], recs...)
	m.MaxBatch = max(m.MaxBatch, len(recs))
	m.mu.Unlock()
	return nil
}

// Status implements Sink.
func (m *MemorySink) Status(_ context.Context, b Build, st build.Status) error {
	if err := m.enter(b, "status"); err != nil {
		return err
	}
	defer m.leave(b)
	m.mu.Lock()
	m.statuses[b.Ref] = append(m.statuses[b.Ref], st)
	m.mu.Unlock()
	return nil
}

// Artifact implements Sink.
func (m *MemorySink) Artifact(_ context.Context, b Build, name string, r io.Reader) error {
	return m.file(b, "artifact", m.artifacts, name, r)
}

// TestResult implements Sink.
func (m *MemorySink) TestResult(_ context.Context, b Build, name string, r io.Reader) error {
	return m.file(b, "test-result", m.tests, name, r)
}

func (m *MemorySink) file(b Build, what string, into map[string]map[string][]byte, name string, r io.Reader) error {
	if err := m.enter(b, what); err != nil {
		return err
	}
	defer m.leave(b)
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if into[b.Ref] == nil {
		into[b.Ref] = map[string][]byte{}
	}
	into[b.Ref][name] = data
	m.mu.Unlock()
	return nil
}

// TestResults returns copies of the test results the sink got for a build.
func (m *MemorySink) TestResults(ref string) map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.tests[ref] {
		out[k] = v
	}
	return out
}

// Received returns copies of what the sink got for a build.
func (m *MemorySink) Received(ref string) ([]build.Record, []build.Status, map[string][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	arts := map[string][]byte{}
	for k, v := range m.artifacts[ref] {
		arts[k] = v
	}
	return append([]build.Record(nil), m.lines[ref]...), append([]build.Status(nil), m.statuses[ref]...), arts
}

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
