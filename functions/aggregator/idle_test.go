package aggregator_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// countingStore counts the requests an aggregator makes, in all and, when
// byRef is set, by the build whose objects they read or write ("" for
// the others: discovery's listing, the change stream's probe).
type countingStore struct {
	blob.Store
	n     atomic.Int64
	mu    sync.Mutex
	byRef map[string]int
}

func (c *countingStore) count(key string) {
	c.n.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byRef != nil {
		ref, ok := build.RefOfKey(key)
		if !ok {
			ref = ""
		}
		c.byRef[ref]++
	}
}

// reset starts counting by build anew and returns what was counted.
func (c *countingStore) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.byRef
	c.byRef = map[string]int{}
	return old
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64, o blob.PutOptions) (blob.Info, error) {
	c.count(key)
	return c.Store.Put(ctx, key, r, size, o)
}
func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	c.count(key)
	return c.Store.Get(ctx, key)
}
func (c *countingStore) Stat(ctx context.Context, key string) (blob.Info, error) {
	c.count(key)
	return c.Store.Stat(ctx, key)
}
func (c *countingStore) List(ctx context.Context, o blob.ListOptions) ([]blob.Info, error) {
	c.count(o.Prefix)
	return c.Store.List(ctx, o)
}

// BenchmarkIdleCost: 1000 running builds with no new output; reports the
// store requests per second, CPU seconds per second, heap and RSS of one
// aggregator relaying them at the default 1 s poll interval, once it has
// caught up (every build relayed and no longer hot):
//
//   - notify: MinIO's bucket notifications work, so builds are visited
//     when named, and swept every SafetySweepInterval (30 s), which the
//     measurement lasts: one whole sweep.
//   - poll: no change stream: every build is polled every PollInterval,
//     which is also what a broken stream falls back to.
func BenchmarkIdleCost(b *testing.B) {
	for _, notify := range []bool{true, false} {
		name := map[bool]string{true: "notify", false: "poll"}[notify]
		b.Run(name, func(b *testing.B) { idleCost(b, notify) })
	}
}

func idleCost(b *testing.B, notify bool) {
	ctx := context.Background()
	ms, err := minio.Open(ctx, srv.Config(blob.BackendMinIO, miniotest.BucketName("idle")))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range 1000 {
		ref := fmt.Sprint("idle-", i)
		if _, err := build.WriteStatus(ctx, ms, ref, build.Status{Status: build.Running, Heartbeat: &now}, ""); err != nil {
			b.Fatal(err)
		}
	}
	cs := &countingStore{Store: ms}
	a := aggregator.New(cs, aggregatortest.NewMemorySink(), nil, aggregator.Config{PollInterval: time.Second, HeartbeatTimeout: time.Hour, Logger: quiet})
	if notify {
		a.WatchChanges(func(ctx context.Context) <-chan string { return ms.Watch(ctx, build.Root, nil) })
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	defer func() { cancel(); <-done }()
	// First pass: leases, cursors, Running statuses; then the builds stay
	// hot (polled every HotPollInterval without notifications) for
	// HotPollFor after that delivery; with notifications, each build is
	// visited once more after the stream proved itself. What is measured
	// is the steady state after that.
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
		if notify && !a.CaughtUp() {
			return fmt.Errorf("the change stream is not healthy (%v), or builds are not visited since it is", a.ChangesHealthy())
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	window := 10 * time.Second
	if notify {
		window = a.Settings().SafetySweepInterval
	}
	for b.Loop() {
		before := cs.n.Load()
		var ru0, ru1 runtime.MemStats
		runtime.ReadMemStats(&ru0)
		cpu0 := cpuSeconds()
		start := time.Now()
		// The measurement window: idle time passing is what is measured.
		time.Sleep(window)
		secs := time.Since(start).Seconds()
		runtime.ReadMemStats(&ru1)
		if notify && !a.ChangesHealthy() {
			b.Fatal("the change stream broke off during the measurement")
		}
		b.ReportMetric(float64(cs.n.Load()-before)/secs, "store-req/s")
		b.ReportMetric((cpuSeconds()-cpu0)/secs, "cpu-s/s")
		b.ReportMetric(float64(ru1.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(rssMiB(), "rss-MiB") // the whole test process, MinIO apart
	}
}
