package build

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/internal/settings"
)

// WriterConfig tunes a LogWriter. Zero fields take the defaults in brackets.
type WriterConfig struct {
	// FlushInterval is the longest a line waits in memory before its chunk
	// is sealed for upload [500ms]: a killed worker loses at most this much.
	// It is also the shortest spacing of chunks sealed by time, so steady
	// output costs at most one upload per interval (size seals aside). The
	// writer's start counts as a seal.
	FlushInterval time.Duration `envconfig:"LOG_FLUSH_INTERVAL" default:"500ms" desc:"longest a log line waits before its chunk is uploaded, and the shortest spacing of chunks sealed by time"`
	// FlushLinger is how long a line that comes after a quiet spell (no
	// chunk sealed within FlushInterval) waits for more output before its
	// chunk is sealed [50ms]: sparse output is shipped at once, a burst
	// in one chunk. At most FlushInterval.
	FlushLinger time.Duration `envconfig:"LOG_FLUSH_LINGER" default:"50ms" desc:"how long a log line after a quiet spell waits for more before its chunk is uploaded (at most the flush interval)"`
	// ChunkSize seals a chunk once it holds this many bytes [256 KiB].
	ChunkSize int `envconfig:"LOG_CHUNK_SIZE" default:"262144" desc:"bytes at which a log chunk is sealed for upload"`
	// MaxObjectSize caps one chunk object. Chunks that queued up behind a
	// slow upload are sent together as one object up to this size, so a
	// fast producer is not held to one store round trip per ChunkSize
	// [4 MiB].
	MaxObjectSize int `envconfig:"LOG_MAX_OBJECT_SIZE" default:"4194304" desc:"bytes of one log object (chunks queued behind a slow upload go together)"`
	// MemoryLimit bounds the bytes of sealed chunks waiting in memory for
	// upload [4 MiB]: beyond it Write waits while the store works, and
	// chunks are spilled to SpillDir while it fails.
	MemoryLimit int `envconfig:"LOG_MEMORY_LIMIT" default:"4194304" desc:"bytes of log chunks held in memory before spilling to disk"`
	// SpillDir holds chunks while the store is slow or unavailable
	// [the system temporary directory].
	SpillDir string `envconfig:"LOG_SPILL_DIR" desc:"directory of spilled log chunks; empty: the system temporary directory"`
	// Retry is the backoff between failed uploads [200ms to 10s].
	RetryMin time.Duration `envconfig:"LOG_RETRY_MIN" default:"200ms" desc:"first backoff after a failed log upload"`
	RetryMax time.Duration `envconfig:"LOG_RETRY_MAX" default:"10s" desc:"longest backoff between failed log uploads"`
	// UploadTimeout bounds one chunk upload [30s].
	UploadTimeout time.Duration `envconfig:"LOG_UPLOAD_TIMEOUT" default:"30s" desc:"bound of one log chunk upload"`
	// Compression is how chunks are stored [zstd]: CompressionZstd (each
	// sealed chunk one zstd frame, compressed by the uploader) or
	// CompressionNone (plain NDJSON). The sizes above (ChunkSize,
	// MaxObjectSize, MemoryLimit) count NDJSON bytes either way: they bound
	// memory and what a reader gets from one object.
	Compression string `envconfig:"LOG_COMPRESSION" default:"zstd" desc:"how log chunks are stored: zstd (NDJSON as zstd frames) or none (plain NDJSON)"`
	// Logger receives upload failures (never log text) [slog.Default()].
	Logger *slog.Logger `ignored:"true"`
}

// Defaults of WriterConfig, which its fields' tags repeat for the
// environment (a test keeps the two equal).
const (
	DefaultFlushInterval = 500 * time.Millisecond
	DefaultFlushLinger   = 50 * time.Millisecond
	DefaultChunkSize     = 256 << 10
	DefaultMaxObjectSize = 4 << 20
	DefaultMemoryLimit   = 4 << 20
	DefaultRetryMin      = 200 * time.Millisecond
	DefaultRetryMax      = 10 * time.Second
	DefaultUploadTimeout = 30 * time.Second
	DefaultCompression   = CompressionZstd
)

// Validate refuses negative durations and sizes; the error names the
// variable and what it expects. Zero takes the default.
func (c WriterConfig) Validate() error {
	if err := settings.NonNegative(c); err != nil {
		return err
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMax < c.RetryMin {
		return fmt.Errorf("WHARFJOBS_LOG_RETRY_MAX=%s: expected at least WHARFJOBS_LOG_RETRY_MIN (%s)", c.RetryMax, c.RetryMin)
	}
	switch c.Compression {
	case "", CompressionZstd, CompressionNone:
	default:
		return fmt.Errorf("WHARFJOBS_LOG_COMPRESSION=%s: expected %s or %s (default %s)", c.Compression, CompressionZstd, CompressionNone, DefaultCompression)
	}
	return nil
}

func (c *WriterConfig) defaults() {
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.FlushLinger <= 0 {
		c.FlushLinger = DefaultFlushLinger
	}
	c.FlushLinger = min(c.FlushLinger, c.FlushInterval)
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxObjectSize < c.ChunkSize {
		c.MaxObjectSize = max(c.ChunkSize, DefaultMaxObjectSize)
	}
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.SpillDir == "" {
		c.SpillDir = os.TempDir()
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.UploadTimeout <= 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// WriterStats counts what a LogWriter did.
type WriterStats struct {
	Records        uint64
	Bytes          uint64 // JSON bytes uploaded
	StoredBytes    uint64 // bytes of the objects uploaded: Bytes compressed
	Chunks         uint64 // chunks uploaded
	Spilled        uint64 // chunks that went through SpillDir
	FailedUploads  uint64 // upload attempts that failed and were retried
	PendingChunks  int    // sealed chunks not uploaded yet
	PendingMemory  int    // bytes of those held in memory
	NextSeq        uint64
	SeqConflicts   uint64 // chunk numbers found taken by another writer
	LastUploadErr  string
	LastUploadTime time.Time
}

// chunk is a sealed chunk waiting for upload, in memory or in a spill file.
type chunk struct {
	data  []byte
	spill string
	size  int
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("log writer closed")

// LogWriter ships a build's log records to the store as chunks.
//
// Write appends to memory: chunks are sealed at ChunkSize, or by time, and
// uploaded in order by one goroutine, create-only under the next sequence
// number (chunks that queued up go together, up to MaxObjectSize). A chunk
// is sealed by time FlushLinger after its first line, but no sooner than
// FlushInterval after the previous seal: a line after a quiet spell goes
// out FlushLinger later, steady output goes in one chunk per FlushInterval,
// and no line waits longer than FlushInterval. While the store works but
// lags, a full memory budget makes Write wait (backpressure). While the
// store is failing, uploads are retried with backoff and jitter and Write
// never waits: sealed chunks queue up in memory up to MemoryLimit and in
// spill files after that, so an outage costs disk space, not lines. A
// retried upload whose earlier attempt did land (same content under the
// same key) counts as done, so no chunk is written twice.
//
// Chunks wait as NDJSON, in memory and in spill files; the uploader
// compresses each into one zstd frame (Compression) just before the
// upload, so Write does not pay for it and the producer and the
// compression run side by side.
type LogWriter struct {
	store blob.Store
	ref   string
	cfg   WriterConfig
	dir   string // this writer's spill directory, made at the first spill

	mu      sync.Mutex
	room    *sync.Cond // signalled when uploads free memory or start failing
	failing bool       // the last upload attempt failed
	cur     []byte
	queue   []*chunk
	memUsed int
	spills  int
	closed  bool
	stats   WriterStats
	// curSince is when the current chunk got its first record, lastSeal
	// when a chunk was last sealed (or the writer started): together they
	// say when the current chunk is due (dueLocked).
	curSince time.Time
	lastSeal time.Time
	now      func() time.Time // time.Now; a test's clock
	kick     chan struct{}    // the current chunk got its first record
	wake     chan struct{}
	drained  chan struct{} // closed by the uploader when closed and empty
	stop     context.CancelFunc
	upCtx    context.Context
	// bufs recycles chunk buffers: a burst of output would otherwise
	// allocate (and make the GC scan) its whole size once more.
	bufs sync.Pool
	// zbuf holds the compressed body of the object being uploaded, enc
	// compresses it; only the uploader goroutine uses them.
	zbuf []byte
	enc  *zstd.Encoder
}

func (w *LogWriter) getBuf() []byte {
	if b, ok := w.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, w.cfg.ChunkSize+4<<10)
}

// putBuf returns a chunk buffer for reuse; oversized ones (a record
// bigger than a chunk) go to the GC.
func (w *LogWriter) putBuf(b []byte) {
	if cap(b) == w.cfg.ChunkSize+4<<10 {
		w.bufs.Put(&b)
	}
}

// WriteSystemLine appends one system line to build ref's log, after
// whatever is there: how the components that are not the worker (a lost
// build, a failed launch, a lost trigger) tell the build's readers why.
func WriteSystemLine(ctx context.Context, s blob.Store, ref, text string, logger *slog.Logger) error {
	// Plain: one line gains nothing from compression, and a plain chunk
	// fits a build of either kind (compaction wraps it in a frame when the
	// rest is zstd), so an operator's WHARFJOBS_LOG_COMPRESSION=none,
	// which only the worker reads, holds for the whole log.
	w, err := NewLogWriter(ctx, s, ref, WriterConfig{Logger: logger, Compression: CompressionNone})
	if err != nil {
		return err
	}
	if err := w.Write(Record{Stream: StreamSystem, Time: time.Now(), Text: text}); err != nil {
		_ = w.Close(ctx)
		return err
	}
	return w.Close(ctx)
}

// NewLogWriter starts a writer for build ref. It continues after the last
// chunk already in the store, so a restarted worker appends rather than
// colliding with its predecessor.
func NewLogWriter(ctx context.Context, s blob.Store, ref string, cfg WriterConfig) (*LogWriter, error) {
	return newLogWriter(ctx, s, ref, cfg, time.Now, true)
}

// newLogWriter is NewLogWriter with its clock, and without the goroutine
// that seals chunks by time when timed is false (a test then calls
// flushDue itself).
func newLogWriter(ctx context.Context, s blob.Store, ref string, cfg WriterConfig, now func() time.Time, timed bool) (*LogWriter, error) {
	if err := ValidateRef(ref); err != nil {
		return nil, err
	}
	cfg.defaults()
	last, err := LastChunk(ctx, s, ref)
	if err != nil {
		return nil, fmt.Errorf("log writer for build %s: %w", ref, err)
	}
	upCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w := &LogWriter{
		store:   s,
		ref:     ref,
		cfg:     cfg,
		now:     now,
		kick:    make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}),
		stop:    stop,
		upCtx:   upCtx,
	}
	w.room = sync.NewCond(&w.mu)
	w.stats.NextSeq = last + 1
	w.cur = w.getBuf()
	w.lastSeal = now()
	go w.upload()
	if timed {
		go w.tick()
	}
	return w, nil
}

// Write appends one record. The record's Build is set to the writer's ref.
// Text longer than MaxText becomes several records (Part 1, 2, ...). Write
// waits only while the store works but lags behind and the memory budget
// is used up; during an outage it never waits.
func (w *LogWriter) Write(rec Record) error {
	rec.Build = w.ref
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if len(rec.Text) <= MaxText {
		w.appendLocked(&rec)
		return nil
	}
	for i, part := range splitText(rec.Text) {
		p := rec
		p.Part, p.Text = i+1, part
		w.appendLocked(&p)
	}
	return nil
}

func (w *LogWriter) appendLocked(rec *Record) {
	if len(w.cur) == 0 {
		w.curSince = w.now()
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	w.cur = rec.AppendJSON(w.cur)
	w.stats.Records++
	if len(w.cur) >= w.cfg.ChunkSize {
		w.sealLocked()
	}
}

// sealLocked moves the current chunk to the upload queue, spilling it to
// disk when the memory budget is used up.
//
// While the store works but is slower than the output, it waits for room
// (backpressure on the step's output) rather than spill: spilling is for
// outages, and writing everything to disk and back would only slow a busy
// build down further.
func (w *LogWriter) sealLocked() {
	for len(w.cur) > 0 && w.memUsed+len(w.cur) > w.cfg.MemoryLimit && !w.failing && !w.closed && len(w.queue) > 0 && w.upCtx.Err() == nil {
		w.room.Wait()
	}
	if len(w.cur) == 0 {
		return // sealed by another writer while this one waited
	}
	c := &chunk{data: w.cur, size: len(w.cur)}
	w.cur = w.getBuf()
	w.lastSeal = w.now()
	if w.memUsed+c.size > w.cfg.MemoryLimit {
		if err := w.spillLocked(c); err != nil {
			// The disk failed too; keep the chunk in memory over budget
			// rather than lose it.
			w.cfg.Logger.Error("log spill failed, keeping chunk in memory", "build", w.ref, "error", err)
		}
	}
	if c.data != nil {
		w.memUsed += c.size
	}
	w.queue = append(w.queue, c)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *LogWriter) spillLocked(c *chunk) error {
	// The directory is made at the first spill: most writers never spill,
	// and a component on a read-only root filesystem (the aggregator
	// writing one system line) must still write its log.
	if w.dir == "" {
		if err := os.MkdirAll(w.cfg.SpillDir, 0o700); err != nil {
			return fmt.Errorf("spill dir: %w", err)
		}
		dir, err := os.MkdirTemp(w.cfg.SpillDir, "wharfjobs-log-"+w.ref+"-*")
		if err != nil {
			return fmt.Errorf("spill dir: %w", err)
		}
		w.dir = dir
	}
	w.spills++
	p := filepath.Join(w.dir, fmt.Sprintf("%012d", w.spills))
	if err := os.WriteFile(p, c.data, 0o600); err != nil {
		_ = os.Remove(p)
		return err
	}
	// The uploader may still be sending this buffer (Close spills chunks
	// in flight), so it is left to the GC rather than reused.
	c.spill, c.data = p, nil
	w.stats.Spilled++
	return nil
}

// Flush seals the current chunk so it is uploaded without waiting for the
// interval. It does not wait for the upload.
func (w *LogWriter) Flush() {
	w.mu.Lock()
	w.sealLocked()
	w.mu.Unlock()
}

// dueLocked is when the current chunk is to be sealed by time: FlushLinger
// after its first record, to take in the rest of a burst, and no sooner
// than FlushInterval after the last seal, so steady output makes one chunk
// per interval. Since the first record came after the last seal, no record
// waits longer than FlushInterval.
func (w *LogWriter) dueLocked() time.Time {
	due := w.curSince.Add(w.cfg.FlushLinger)
	if next := w.lastSeal.Add(w.cfg.FlushInterval); next.After(due) {
		due = next
	}
	return due
}

// flushDue seals the current chunk if it is due at now. It returns how
// long until the current chunk is due, or 0 when there is nothing to wait
// for: the chunk is empty or was sealed now.
func (w *LogWriter) flushDue(now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cur) == 0 {
		return 0
	}
	if wait := w.dueLocked().Sub(now); wait > 0 {
		return wait
	}
	w.sealLocked()
	return 0
}

// tick seals chunks when they are due. It sleeps while the current chunk
// is empty; the first record of a chunk wakes it (kick).
func (w *LogWriter) tick() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		var due <-chan time.Time
		if wait := w.flushDue(w.now()); wait > 0 {
			t.Reset(wait)
			due = t.C
		}
		select {
		case <-w.upCtx.Done():
			t.Stop()
			return
		case <-w.kick:
		case <-due:
		}
		t.Stop()
	}
}

// upload sends queued chunks in order until the writer is closed and empty
// or its context is cancelled.
func (w *LogWriter) upload() {
	defer func() {
		if w.enc != nil {
			putEncoder(w.enc)
			w.enc = nil
		}
	}()
	policy := backoff.Policy{Min: w.cfg.RetryMin, Max: w.cfg.RetryMax}
	failures := 0
	pending := 0 // chunks in the batch of a failed attempt, to resend as is
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			if w.closed {
				w.mu.Unlock()
				close(w.drained)
				return
			}
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.upCtx.Done():
				return
			}
		}
		// Take the queued chunks that fit in one object. A retry resends
		// exactly the batch of the failed attempt, since that attempt may
		// have landed and is recognised only by identical content. Close
		// may spill chunks concurrently, so copy them under the lock.
		batch := make([]chunk, 0, 4)
		size := 0
		for i, c := range w.queue {
			if pending > 0 && i == pending || pending == 0 && len(batch) > 0 && size+c.size > w.cfg.MaxObjectSize {
				break
			}
			batch = append(batch, *c)
			size += c.size
		}
		pending = len(batch)
		seq := w.stats.NextSeq
		w.mu.Unlock()

		parts, stored, err := w.put(batch, size, seq)
		w.mu.Lock()
		if err == nil {
			for i := range batch {
				c := w.queue[i]
				if c.data != nil {
					w.memUsed -= c.size
					w.putBuf(c.data)
				} else if batch[i].data == nil {
					w.putBuf(parts[i]) // read back from the spill file
				}
				if c.spill != "" {
					_ = os.Remove(c.spill)
				}
				w.queue[i] = nil
			}
			w.queue = w.queue[len(batch):]
			w.stats.NextSeq++
			w.stats.Chunks++
			w.stats.Bytes += uint64(size)
			w.stats.StoredBytes += uint64(stored)
			w.stats.LastUploadTime = time.Now()
			w.failing = false
			w.room.Broadcast()
			w.mu.Unlock()
			failures, pending = 0, 0
			continue
		}
		if errors.Is(err, errSeqTaken) {
			pending = 0 // it did not land there: free to batch anew
		}
		w.stats.FailedUploads++
		w.stats.LastUploadErr = err.Error()
		w.failing = true
		w.room.Broadcast()
		w.mu.Unlock()
		if failures == 0 {
			w.cfg.Logger.Warn("log chunk upload failed, retrying", "build", w.ref, "seq", seq, "error", err)
		}
		if w.upCtx.Err() != nil {
			return
		}
		if sleepErr := policy.Sleep(w.upCtx, failures); sleepErr != nil {
			return
		}
		failures++
	}
}

// put uploads the batch as chunk seq and returns the chunks' NDJSON and
// the bytes stored. Compressed, each chunk of the batch is one zstd frame
// of the object. When the key is taken it tells apart its own earlier
// attempt that landed (same MD5 of the same body: a retry compresses the
// same chunks into the same frames) from another writer's chunk, and in
// the latter case moves on to the first free number.
func (w *LogWriter) put(batch []chunk, size int, seq uint64) ([][]byte, int, error) {
	parts := make([][]byte, len(batch))
	for i, c := range batch {
		parts[i] = c.data
		if parts[i] == nil {
			var err error
			if parts[i], err = w.readSpill(c.spill, c.size); err != nil {
				return nil, 0, fmt.Errorf("read spilled chunk: %w", err)
			}
		}
	}
	if seq > MaxSeq {
		return nil, 0, fmt.Errorf("build %s: log chunk sequence exhausted", w.ref)
	}
	contentType, stored := "application/x-ndjson", size
	body := func() io.Reader {
		rs := make([]io.Reader, len(parts))
		for i, p := range parts {
			rs[i] = bytes.NewReader(p)
		}
		return io.MultiReader(rs...)
	}
	if w.cfg.Compression == CompressionZstd {
		// zbuf is the uploader's alone (put runs on its goroutine), reused
		// from one object to the next.
		if w.enc == nil {
			w.enc = getEncoder()
		}
		w.zbuf = w.zbuf[:0]
		for _, p := range parts {
			w.zbuf = appendZstd(w.enc, w.zbuf, p)
		}
		z := w.zbuf
		contentType, stored = "application/zstd", len(z)
		body = func() io.Reader { return bytes.NewReader(z) }
	}
	ctx, cancel := context.WithTimeout(w.upCtx, w.cfg.UploadTimeout)
	defer cancel()
	key := ChunkKey(w.ref, seq)
	_, err := w.store.Put(ctx, key, body(), int64(stored),
		blob.PutOptions{ContentType: contentType, IfNoneMatch: true})
	if err == nil || !errors.Is(err, blob.ErrPreconditionFailed) {
		return parts, stored, err
	}
	info, serr := w.store.Stat(ctx, key)
	if serr != nil {
		return nil, 0, fmt.Errorf("chunk %s exists but cannot be checked: %w", key, serr)
	}
	h := md5.New()
	_, _ = io.Copy(h, body())
	if info.ETag == hex.EncodeToString(h.Sum(nil)) {
		return parts, stored, nil // an earlier attempt landed; its answer was lost
	}
	last, lerr := LastChunk(ctx, w.store, w.ref)
	if lerr != nil {
		return nil, 0, lerr
	}
	w.mu.Lock()
	w.stats.SeqConflicts++
	w.stats.NextSeq = max(w.stats.NextSeq, last+1)
	w.mu.Unlock()
	return nil, 0, fmt.Errorf("chunk %s: %w", key, errSeqTaken)
}

// readSpill reads a spilled chunk into a pooled buffer.
func (w *LogWriter) readSpill(path string, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := w.getBuf()
	if cap(b) < size {
		b = make([]byte, size)
	}
	b = b[:size]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// errSeqTaken means another writer holds the chunk number tried.
var errSeqTaken = errors.New("chunk number taken by another writer")

// Stats returns a snapshot of the counters.
func (w *LogWriter) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.PendingChunks = len(w.queue)
	st.PendingMemory = w.memUsed
	return st
}

// Close seals the last chunk and waits until every chunk is uploaded or ctx
// ends. In the latter case the chunks still in memory are spilled to disk
// and the error names the directory that holds what did not reach the
// store. Close may be called more than once.
func (w *LogWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true // first: the last seal must not wait for room
		w.room.Broadcast()
		w.sealLocked()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	select {
	case <-w.drained:
		w.stop()
		if w.dir != "" {
			_ = os.RemoveAll(w.dir)
		}
		return nil
	case <-ctx.Done():
	}
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.room.Broadcast()
	for _, c := range w.queue {
		if c.data != nil {
			if err := w.spillLocked(c); err == nil {
				w.memUsed -= c.size
			}
		}
	}
	kept := "in memory: no spill directory could be made"
	if w.dir != "" {
		kept = "spilled to " + w.dir + " where they could be written"
	}
	return fmt.Errorf("close log of build %s: %d chunks not uploaded (%s): %w", w.ref, len(w.queue), kept, ctx.Err())
}
