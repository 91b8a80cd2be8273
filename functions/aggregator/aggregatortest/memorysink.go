// Package aggregatortest has test doubles for the aggregator: a Sink that
// keeps what it is sent, for tests of the aggregator and of the commands
// built on it. It is apart from package aggregator so that production
// binaries do not carry it.
package aggregatortest

import (
	"context"
	"io"
	"sync"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
)

// MemorySink is an aggregator.Sink that keeps everything it is sent.
type MemorySink struct {
	mu        sync.Mutex
	lines     map[string][]build.Record
	statuses  map[string][]build.Status
	artifacts map[string]map[string][]byte
	tests     map[string]map[string][]byte
	// Fail, when set, is called before each delivery; its error is returned.
	Fail func(b aggregator.Build, what string) error
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

func (m *MemorySink) enter(b aggregator.Build, what string) error {
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

func (m *MemorySink) leave(b aggregator.Build) {
	m.mu.Lock()
	m.active[b.Ref]--
	m.mu.Unlock()
}

// Lines implements Sink.
func (m *MemorySink) Lines(_ context.Context, b aggregator.Build, recs []build.Record) error {
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
func (m *MemorySink) Status(_ context.Context, b aggregator.Build, st build.Status) error {
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
func (m *MemorySink) Artifact(_ context.Context, b aggregator.Build, name string, r io.Reader) error {
	return m.file(b, "artifact", m.artifacts, name, r)
}

// TestResult implements Sink.
func (m *MemorySink) TestResult(_ context.Context, b aggregator.Build, name string, r io.Reader) error {
	return m.file(b, "test-result", m.tests, name, r)
}

func (m *MemorySink) file(b aggregator.Build, what string, into map[string]map[string][]byte, name string, r io.Reader) error {
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

var _ aggregator.Sink = (*MemorySink)(nil)
