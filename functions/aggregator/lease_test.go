package aggregator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/functions/aggregator"
)

func TestLeaseRaceHasOneWinner(t *testing.T) {
	s := newMinIO(t)
	var wg sync.WaitGroup
	wins := make([]bool, 10)
	for i := range wins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := aggregator.Acquire(context.Background(), s, "race", fmt.Sprint("r", i), time.Minute, time.Now())
			wins[i] = err == nil
		}()
	}
	wg.Wait()
	n := 0
	for _, w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas hold the lease", n)
	}
	// An expired lease can be taken over; a live one cannot.
	if _, err := aggregator.Acquire(context.Background(), s, "race", "late", time.Minute, time.Now()); !errors.Is(err, aggregator.ErrLeaseHeld) {
		t.Fatalf("took a live lease: %v", err)
	}
	if _, err := aggregator.Acquire(context.Background(), s, "race", "late", time.Minute, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatalf("could not take an expired lease: %v", err)
	}
}
