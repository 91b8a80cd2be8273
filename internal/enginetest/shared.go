package enginetest

import (
	"errors"
	"os"
	"sync"
	"testing"
)

// Engines is what the tests of a package share: one dockerd and one Podman,
// each started on first use, so that tests that use neither run without
// them.
type Engines struct {
	docker, podman lazy
}

type lazy struct {
	start  func() (*Engine, error)
	once   sync.Once
	engine *Engine
	err    error // of the start, returned to every later caller
}

func (l *lazy) get() (*Engine, error) {
	l.once.Do(func() { l.engine, l.err = l.start() })
	return l.engine, l.err
}

// NewEngines returns Engines that have started nothing yet. Close them
// when done.
func NewEngines() *Engines {
	return &Engines{docker: lazy{start: StartDocker}, podman: lazy{start: StartPodman}}
}

// Docker returns the shared dockerd, starting it on the first call; a
// failed start fails this test and every later caller's.
func (s *Engines) Docker(tb testing.TB) *Engine {
	tb.Helper()
	e, err := s.docker.get()
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// Podman is Docker for the shared Podman.
func (s *Engines) Podman(tb testing.TB) *Engine {
	tb.Helper()
	e, err := s.podman.get()
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// All returns both engines, docker first, for tests that run the same
// thing on each (as subtests named by Engine.Name).
func (s *Engines) All(tb testing.TB) []*Engine {
	tb.Helper()
	return []*Engine{s.Docker(tb), s.Podman(tb)}
}

// Close stops the engines that started; none can start afterwards.
func (s *Engines) Close() {
	for _, l := range []*lazy{&s.docker, &s.podman} {
		l.once.Do(func() { l.err = errors.New("enginetest: engines closed") })
		if l.engine != nil {
			l.engine.Stop()
		}
	}
}

// Main is a TestMain body for a package whose tests share the engines: it
// sets *engines, runs the tests, stops the engines the tests started and
// exits.
func Main(m *testing.M, engines **Engines) { os.Exit(Run(m, engines)) }

// Run is Main without the exit, for a TestMain that nests it in another
// harness's (m.Run inside both).
func Run(m interface{ Run() int }, engines **Engines) int {
	s := NewEngines()
	*engines = s
	defer s.Close()
	return m.Run()
}
