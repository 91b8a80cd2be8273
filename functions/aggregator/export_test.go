package aggregator

import "context"

// What the tests of package aggregator_test may see of the internals. They
// are an external package because they use aggregatortest, which imports
// this one.

// Acquire and ErrLeaseHeld are the lease's, for the race test.
var (
	Acquire      = acquire
	ErrLeaseHeld = errLeaseHeld
)

// BuildID is wharf-api's id of a build as the relay sends it.
func (a *Aggregator) BuildID(ctx context.Context, ref string) string { return a.buildID(ctx, ref) }

// HotBuilds counts the builds polled every HotPollInterval now.
func (a *Aggregator) HotBuilds() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.hot)
}

// Settings is the Config the aggregator runs with, defaults applied.
func (a *Aggregator) Settings() Config { return a.cfg }
