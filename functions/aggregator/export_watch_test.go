package aggregator

import "time"

// What the tests of the change stream's health may see (run.go).

// ChangesHealthy reports whether Run relies on the change stream now
// rather than polling every build.
func (a *Aggregator) ChangesHealthy() bool {
	ok, _ := a.changesHealthy(time.Now())
	return ok
}

// CaughtUp reports whether the change stream is healthy and every build
// this aggregator has seen was visited since it became so: from then on
// builds are visited on notifications and sweeps only.
func (a *Aggregator) CaughtUp() bool {
	ok, since := a.changesHealthy(time.Now())
	if !ok {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.watch.seen {
		if s.at.Before(since) {
			return false
		}
	}
	return true
}

// ProbeKey is the object written to hear from a quiet change stream.
var ProbeKey = probeKey
