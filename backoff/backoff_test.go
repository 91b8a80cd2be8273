package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayGrowsWithJitterAndCap(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	for attempt, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("attempt %d: only %d distinct delays in 200, no jitter", attempt, len(seen))
		}
	}
	if d := p.Delay(1000); d > time.Second {
		t.Fatalf("huge attempt count: %v beyond the cap", d)
	}
}

func TestZeroPolicyDefaults(t *testing.T) {
	var p Policy
	if d := p.Delay(0); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("zero policy first delay %v", d)
	}
	if d := p.Delay(50); d > 10*time.Second || d < 5*time.Second {
		t.Fatalf("zero policy capped delay %v", d)
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Policy{Min: time.Hour, Max: time.Hour}).Sleep(ctx, 0); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v", err)
	}
}
