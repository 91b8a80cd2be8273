package aggregator_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// countingStore counts the requests an aggregator makes.
type countingStore struct {
	blob.Store
	n atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64, o blob.PutOptions) (blob.Info, error) {
	c.n.Add(1)
	return c.Store.Put(ctx, key, r, size, o)
}
func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	c.n.Add(1)
	return c.Store.Get(ctx, key)
}
func (c *countingStore) Stat(ctx context.Context, key string) (blob.Info, error) {
	c.n.Add(1)
	return c.Store.Stat(ctx, key)
}
func (c *countingStore) List(ctx context.Context, o blob.ListOptions) ([]blob.Info, error) {
	c.n.Add(1)
	return c.Store.List(ctx, o)
}

// BenchmarkIdleCost: 1000 running builds with no new output; reports the
// store requests per second, CPU seconds per second, heap and RSS of one
// aggregator polling them at the default 1 s interval.
func BenchmarkIdleCost(b *testing.B) {
	ms := newMinIO(b)
	ctx := context.Background()
	now := time.Now()
	for i := range 1000 {
		ref := fmt.Sprint("idle-", i)
		if _, err := build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Running, Heartbeat: &now}, ""); err != nil {
			b.Fatal(err)
		}
	}
	cs := &countingStore{Store: ms}
	a := aggregator.New(cs, aggregatortest.NewMemorySink(), nil, aggregator.Config{PollInterval: time.Second, HeartbeatTimeout: time.Hour, Logger: quiet})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.Run(rctx)
	// First pass: leases, cursors, Running statuses; then the builds stay
	// hot (polled every HotPollInterval) for HotPollFor after that
	// delivery. What is measured is the steady state after that: from the
	// moment no build is hot any more.
	if err := testenv.WaitFor(ctx, 3*time.Minute, 50*time.Millisecond, func() error {
		if n := a.StatusRelayed.Load(); n < 1000 {
			return fmt.Errorf("first pass: %d of 1000 statuses relayed", n)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := testenv.WaitFor(ctx, a.Settings().HotPollFor+time.Minute, 50*time.Millisecond, func() error {
		if n := a.HotBuilds(); n > 0 {
			return fmt.Errorf("%d builds still hot (HotPollFor %v): no steady state to measure", n, a.Settings().HotPollFor)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		before := cs.n.Load()
		var ru0, ru1 runtime.MemStats
		runtime.ReadMemStats(&ru0)
		cpu0 := cpuSeconds()
		start := time.Now()
		// The measurement window: idle time passing is what is measured.
		time.Sleep(10 * time.Second)
		secs := time.Since(start).Seconds()
		runtime.ReadMemStats(&ru1)
		b.ReportMetric(float64(cs.n.Load()-before)/secs, "store-req/s")
		b.ReportMetric((cpuSeconds()-cpu0)/secs, "cpu-s/s")
		b.ReportMetric(float64(ru1.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(rssMiB(), "rss-MiB") // the whole test process, MinIO apart
	}
}
