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

// Notified is wharfjobs_relay_notifications_total: the keys the change
// stream delivered, so a test can tell that the stream is up.
func (a *Aggregator) Notified() uint64 { return a.notified.Load() }

// ErrorsOf is wharfjobs_relay_errors_total of one kind ("sink", "relay",
// "discovery", "compare", "cleanup"); it panics on another name.
func (a *Aggregator) ErrorsOf(kind string) uint64 {
	for k, name := range errKindNames {
		if name == kind {
			return a.errs[k].Load()
		}
	}
	panic("aggregator: no error kind " + kind)
}
