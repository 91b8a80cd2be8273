package build

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// countingStore counts the chunk PUTs that reached a local directory.
type countingStore struct {
	blob.Store
	puts atomic.Int64
}

func (s *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	info, err := s.Store.Put(ctx, key, r, size, opts)
	if err == nil && strings.Contains(key, "/log/") {
		s.puts.Add(1)
	}
	return info, err
}

func newCountingStore(t *testing.T) *countingStore {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &countingStore{Store: s}
}

// fakeClock is a writer's clock that moves only when the test says.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func flushConfig(t *testing.T) WriterConfig {
	return WriterConfig{
		FlushInterval: 500 * time.Millisecond,
		FlushLinger:   50 * time.Millisecond,
		SpillDir:      t.TempDir(),
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// clockedWriter is a writer on a fake clock whose chunks are sealed by
// time only when the test calls advance, which moves the clock to a time,
// sealing the current chunk at exactly the times it is due on the way
// (what the writer's timer goroutine does in real time). Each sealed chunk
// is uploaded before advance goes on, so chunks are not batched and PUTs
// count seals.
type clockedWriter struct {
	t     *testing.T
	w     *LogWriter
	clock *fakeClock
	store *countingStore
	start time.Time
	seals int
	line  uint64
}

func newClockedWriter(t *testing.T, cfg WriterConfig) *clockedWriter {
	start := time.Date(2026, 11, 23, 21, 0, 0, 0, time.UTC)
	c := &clockedWriter{t: t, clock: &fakeClock{t: start}, store: newCountingStore(t), start: start}
	w, err := newLogWriter(context.Background(), c.store, "1", cfg, c.clock.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	c.w = w
	return c
}

func (c *clockedWriter) write() {
	c.t.Helper()
	c.line++
	if err := c.w.Write(Record{Stream: StreamStdout, Line: c.line, Time: c.clock.Now(), Text: fmt.Sprint("line ", c.line)}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *clockedWriter) advance(to time.Time) {
	c.t.Helper()
	for {
		now := c.clock.Now()
		c.w.mu.Lock()
		if len(c.w.cur) > 0 && now.Sub(c.w.curSince) > c.w.cfg.FlushInterval {
			c.t.Fatalf("at %v a line has waited %v, longer than the flush interval", now.Sub(c.start), now.Sub(c.w.curSince))
		}
		pending := len(c.w.cur) > 0
		c.w.mu.Unlock()
		wait := c.w.flushDue(now)
		if pending && wait == 0 {
			c.seals++
			c.waitUploaded()
			continue
		}
		if wait == 0 || now.Add(wait).After(to) {
			break
		}
		c.clock.Set(now.Add(wait))
	}
	c.clock.Set(to)
}

func (c *clockedWriter) waitUploaded() {
	c.t.Helper()
	if err := testenv.WaitFor(context.Background(), 10*time.Second, time.Millisecond, func() error {
		if st := c.w.Stats(); st.PendingChunks > 0 {
			return fmt.Errorf("%d chunks not uploaded", st.PendingChunks)
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *clockedWriter) close() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.w.Close(ctx); err != nil {
		c.t.Fatal(err)
	}
	rc, err := OpenLog(ctx, c.store, "1")
	if err != nil {
		c.t.Fatal(err)
	}
	defer rc.Close()
	n := uint64(0)
	if err := ScanRecords(rc, func(r Record) error {
		if n++; r.Line != n {
			return fmt.Errorf("record %d is line %d", n, r.Line)
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
	if n != c.line {
		c.t.Fatalf("%d lines in the log, %d written", n, c.line)
	}
}

// TestSteadyOutputIsBatched: a line every 10 ms for 20 s costs at most one
// chunk per flush interval (2 PUTs a second with the default 500ms), and no
// line waits longer than the interval.
func TestSteadyOutputIsBatched(t *testing.T) {
	cfg := flushConfig(t)
	c := newClockedWriter(t, cfg)
	const d = 20 * time.Second
	for at := time.Duration(0); at < d; at += 10 * time.Millisecond {
		c.advance(c.start.Add(at))
		c.write()
	}
	c.advance(c.start.Add(d))
	perInterval := int(d / cfg.FlushInterval)
	if c.seals > perInterval || c.seals < perInterval-1 {
		t.Errorf("%d chunks sealed in %v of steady output, want %d (one per %v)", c.seals, d, perInterval, cfg.FlushInterval)
	}
	c.close()
	if puts, most := c.store.puts.Load(), int64(perInterval)+1; puts > most {
		t.Errorf("%d chunk PUTs in %v of steady output (%.1f/s), want at most %d", puts, d, float64(puts)/d.Seconds(), most)
	}
	t.Logf("%d chunk PUTs for %v of a line every 10 ms", c.store.puts.Load(), d)
}

// TestSparseLineIsFlushedEarly: a line after a quiet spell is sealed
// FlushLinger after it, with the rest of its burst; one soon after a seal
// waits for the flush interval.
func TestSparseLineIsFlushedEarly(t *testing.T) {
	cfg := flushConfig(t)
	c := newClockedWriter(t, cfg)

	at := c.start.Add(2 * time.Second) // quiet since the writer started
	c.advance(at)
	c.write()
	if wait := c.w.flushDue(at); wait != cfg.FlushLinger {
		t.Fatalf("a line after a quiet spell is due in %v, want the linger %v", wait, cfg.FlushLinger)
	}
	c.advance(at.Add(cfg.FlushLinger - time.Millisecond))
	if c.seals != 0 {
		t.Fatalf("sealed before the linger ended")
	}
	c.advance(at.Add(cfg.FlushLinger))
	if c.seals != 1 || c.store.puts.Load() != 1 {
		t.Fatalf("a lone line after a quiet spell: %d seals, %d PUTs after the linger, want 1", c.seals, c.store.puts.Load())
	}

	// A burst after a quiet spell goes in one chunk.
	at = at.Add(5 * time.Second)
	for i := range 20 {
		c.advance(at.Add(time.Duration(i) * 2 * time.Millisecond))
		c.write()
	}
	c.advance(at.Add(cfg.FlushLinger))
	if c.seals != 2 {
		t.Fatalf("a 40 ms burst after a quiet spell made %d chunks, want 1", c.seals-1)
	}

	// The next line comes soon after that seal: it waits for the interval.
	at = at.Add(cfg.FlushLinger + 100*time.Millisecond)
	c.advance(at)
	c.write()
	sealed := at.Add(-100 * time.Millisecond)
	if wait, want := c.w.flushDue(at), sealed.Add(cfg.FlushInterval).Sub(at); wait != want {
		t.Fatalf("a line 100 ms after a seal is due in %v, want %v (the interval after the seal)", wait, want)
	}
	c.advance(sealed.Add(cfg.FlushInterval))
	if c.seals != 3 {
		t.Fatalf("%d seals, want 3", c.seals)
	}
	c.close()
	if puts := c.store.puts.Load(); puts != 3 {
		t.Fatalf("%d chunk PUTs, want 3", puts)
	}
}

// TestLingerIsCappedByInterval: a linger longer than the interval (as when
// only the interval is set low) is cut to it.
func TestLingerIsCappedByInterval(t *testing.T) {
	cfg := WriterConfig{FlushInterval: 20 * time.Millisecond}
	cfg.defaults()
	if cfg.FlushLinger != 20*time.Millisecond {
		t.Fatalf("linger %v with a 20ms interval, want 20ms", cfg.FlushLinger)
	}
}

// TestTimedFlushInRealTime runs the writer's own timer: steady output
// makes at most one PUT per flush interval (plus Close's), and a line
// after a quiet spell lands long before the interval.
func TestTimedFlushInRealTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("steady", func(t *testing.T) {
		s := newCountingStore(t)
		cfg := flushConfig(t)
		cfg.FlushInterval, cfg.FlushLinger = 200*time.Millisecond, 20*time.Millisecond
		start := time.Now()
		w, err := NewLogWriter(ctx, s, "1", cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 240 { // about 1.2 s
			if err := w.Write(Record{Stream: StreamStdout, Line: uint64(i + 1), Time: time.Now(), Text: "x"}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		before := s.puts.Load()
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Measured after Close: a timed seal may come just before it.
		elapsed := time.Since(start)
		puts := s.puts.Load()
		if most := int64(elapsed/cfg.FlushInterval) + 1; puts > most {
			t.Errorf("%d chunk PUTs in %v with a %v interval, want at most %d", puts, elapsed, cfg.FlushInterval, most)
		}
		if before < 2 {
			t.Errorf("%d chunk PUTs in %v of output before Close, want some by time", before, elapsed)
		}
		t.Logf("%d chunk PUTs (%d before Close) in %v", puts, before, elapsed.Round(time.Millisecond))
	})
	t.Run("sparse", func(t *testing.T) {
		s := newCountingStore(t)
		cfg := flushConfig(t)
		cfg.FlushInterval, cfg.FlushLinger = 2*time.Second, 20*time.Millisecond
		w, err := NewLogWriter(ctx, s, "1", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx)
		time.Sleep(cfg.FlushInterval + 100*time.Millisecond) // a quiet spell
		wrote := time.Now()
		if err := w.Write(Record{Stream: StreamStdout, Line: 1, Time: wrote, Text: "x"}); err != nil {
			t.Fatal(err)
		}
		if err := testenv.WaitFor(ctx, cfg.FlushInterval/2, time.Millisecond, func() error {
			if s.puts.Load() == 0 {
				return fmt.Errorf("not uploaded %v after it was written", time.Since(wrote))
			}
			return nil
		}); err != nil {
			t.Fatalf("a line after a quiet spell (linger %v, interval %v): %v", cfg.FlushLinger, cfg.FlushInterval, err)
		}
		t.Logf("uploaded %v after it was written", time.Since(wrote).Round(time.Millisecond))
	})
}
