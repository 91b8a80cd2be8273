package testcluster

import (
	"sync"
	"testing"
)

// Shared is one control plane for a test package, started by the first
// test that asks for it and stopped by the package's TestMain (Stop), so
// tests that need none do not pay for it.
type Shared struct {
	Options Options

	once    sync.Once
	cluster *Cluster
	err     error
}

// Get starts the cluster on first use and returns it; it fails t when the
// cluster cannot start.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() { s.cluster, s.err = Start(s.Options) })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.cluster
}

// Stop stops the cluster if it was started.
func (s *Shared) Stop() {
	if s.cluster != nil {
		s.cluster.Stop()
	}
}
