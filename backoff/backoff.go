// Package backoff computes retry delays: exponential growth from a minimum
// to a cap, with full jitter so that many clients that failed together do
// not retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a retry delay policy. The zero value is usable and means
// 100ms growing to 10s.
type Policy struct {
	// Min is the first delay's upper bound.
	Min time.Duration
	// Max caps every delay.
	Max time.Duration
}

func (p Policy) bounds() (time.Duration, time.Duration) {
	lo, hi := p.Min, p.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// Delay returns the delay before retry number attempt (0 for the first
// retry): a random duration in [ceiling/2, ceiling], where the ceiling
// doubles from Min with each attempt up to Max. Half of it is fixed so a
// retry never comes immediately.
func (p Policy) Delay(attempt int) time.Duration {
	lo, hi := p.bounds()
	ceiling := lo
	for i := 0; i < attempt && ceiling < hi; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	half := ceiling / 2
	return half + rand.N(ceiling-half+1)
}

// Sleep waits for Delay(attempt) or until ctx ends, whichever is first, and
// returns ctx.Err() in the latter case.
func (p Policy) Sleep(ctx context.Context, attempt int) error {
	t := time.NewTimer(p.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
