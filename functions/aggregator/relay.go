package aggregator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// ErrOtherInstance is returned by Relay for a build of another wharf-api
// instance than the aggregator's (Config.WharfInstance).
var ErrOtherInstance = errors.New("build of another wharf instance")

// Relay takes the build's lease and relays what is new. It returns
// errLeaseHeld when another replica holds the build, and ErrOtherInstance
// for a build this aggregator must not relay.
func (a *Aggregator) Relay(ctx context.Context, ref string) error {
	start := time.Now()
	if ours, err := a.ours(ctx, ref); err != nil {
		return err
	} else if !ours {
		return fmt.Errorf("relay %s: %w than %q", ref, ErrOtherInstance, a.cfg.WharfInstance)
	}
	a.mu.Lock()
	_, parked := a.parked[ref]
	a.mu.Unlock()
	if parked {
		a.setHot(ref, false)
		a.noteVisit(ref, start, nil, true)
		return nil // logged once when it was parked
	}
	a.mu.Lock()
	h, held := a.leases[ref]
	a.mu.Unlock()
	r := &relay{a: a, ref: ref, lease: h.lease}
	// A lease past two thirds of its life is renewed (which reads it); a
	// renewed or new lease means the cursor must be read again too.
	if held && time.Until(h.lease.expires) > a.cfg.LeaseDuration/3 {
		r.cached = &h
	} else {
		var err error
		if r.lease, err = acquire(ctx, a.store, ref, a.cfg.Holder, a.cfg.LeaseDuration, time.Now()); err != nil {
			if errors.Is(err, errLeaseHeld) {
				a.noteVisit(ref, start, nil, true) // another replica's to relay
			} else {
				a.missedVisit(ref)
			}
			return err
		}
		r.takeover = !held && r.lease.existed
	}
	err := r.run(ctx)
	a.mu.Lock()
	switch {
	case err == nil && r.final:
		a.finals[ref] = true
		delete(a.leases, ref)
		delete(a.watch.seen, ref)
	case err == nil:
		a.leases[ref] = heldBuild{lease: r.lease, cur: r.cur, etag: r.etag}
	default:
		delete(a.leases, ref) // read it all again next time
	}
	a.mu.Unlock()
	switch {
	case err == nil && !r.final:
		a.noteVisit(ref, start, r.status, true)
	case err != nil:
		a.missedVisit(ref)
	}
	if errors.Is(err, ErrPermanent) {
		a.mu.Lock()
		a.parked[ref] = err.Error()
		a.mu.Unlock()
		a.cfg.Logger.Error("sink rejected the build for good; parked", "build", ref, "error", err)
		return nil
	}
	if r.final {
		release(context.WithoutCancel(ctx), a.store, r.lease, a.cfg.Holder)
		a.cleanup(ctx, ref)
		a.dropChunks(ctx, ref, chunkWait{since: time.Now()})
	}
	return err
}

// peek tells whether ref needs a relay pass, without its lease: it reads
// the status and, for a sweep, lists the chunks after the cursor this
// replica last saw, one request each. A pass is needed when the status
// differs from the one last relayed, a chunk is there, or the pass would
// act on the build (actOnLocked: a lost rule, a worker pod's wait to
// tell); also when this replica has never seen the build's cursor, or it
// has no status. The cursor seen may be older than the real one (another
// replica may have relayed since), never newer: a cursor only moves on,
// so whatever is new to the real cursor is new to it too.
func (a *Aggregator) peek(ctx context.Context, ref string, mode visitMode) (bool, error) {
	start := time.Now()
	a.mu.Lock()
	h, held := a.leases[ref]
	final := a.finals[ref]
	_, parked := a.parked[ref]
	a.mu.Unlock()
	if final || parked {
		return false, nil
	}
	if !held {
		return true, nil
	}
	st, _, err := build.ReadStatus(ctx, a.store, ref)
	if errors.Is(err, blob.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	act := a.actOnLocked(ref, st, a.jobOfLocked(ref), time.Now())
	a.mu.Unlock()
	if act || st.Status != h.cur.Status || st.Reason != h.cur.Reason {
		return true, nil
	}
	if mode == visitSweep {
		chunks, err := build.ListChunks(ctx, a.store, ref, h.cur.Seq, 1)
		if err != nil {
			return false, err
		}
		if len(chunks) > 0 {
			return true, nil
		}
	}
	a.noteVisit(ref, start, &st, mode == visitSweep)
	return false, nil
}

// relay is one pass over one build by the lease holder.
type relay struct {
	a     *Aggregator
	ref   string
	lease heldLease
	final bool
	// cached is this replica's last view of the cursor, usable while its
	// lease has been valid throughout; cur and etag are the cursor after
	// the pass.
	cached *heldBuild
	cur    cursor
	etag   string
	// status is the status the pass read (after failIfLost), nil if none.
	status *build.Status
	// takeover: this replica did not hold the lease, which existed: the
	// sink is told to check what it has before the first batch (Resumer).
	takeover bool
}

// keep renews the lease when it is past a third of its life and reports an
// error when it cannot be held.
func (r *relay) keep(ctx context.Context) error {
	d := r.a.cfg.LeaseDuration
	if time.Until(r.lease.expires) > 2*d/3 {
		return nil
	}
	l, err := acquire(ctx, r.a.store, r.ref, r.a.cfg.Holder, d, time.Now())
	if err != nil {
		return err
	}
	r.lease = l
	return nil
}

// deliver calls fn with retries (backoff with jitter) while the lease is
// held; a permanent error ends it at once.
func (r *relay) deliver(ctx context.Context, fn func() error) error {
	policy := backoff.Policy{Min: r.a.cfg.RetryMin, Max: r.a.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
		if err := r.keep(ctx); err != nil {
			return err
		}
		err := fn()
		if err == nil || errors.Is(err, ErrPermanent) || errors.Is(err, ErrRefused) {
			return err
		}
		r.a.countError(errSink)
		if attempt == 0 {
			r.a.cfg.Logger.Warn("sink delivery failed, retrying", "build", r.ref, "error", err)
		}
		if err := policy.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

func (r *relay) run(ctx context.Context) error {
	s := r.a.store
	var cur cursor
	var etag string
	var err error
	if r.cached != nil {
		cur, etag = r.cached.cur, r.cached.etag
	} else if cur, etag, err = readCursor(ctx, s, r.ref); err != nil {
		return err
	}
	// Whatever happens below, remember the cursor as last written.
	defer func() { r.cur, r.etag = cur, etag }()
	delivered := false
	defer func() {
		if cur.Final {
			r.a.setHot(r.ref, false)
		} else if delivered {
			r.a.setHot(r.ref, true)
		}
	}()
	if cur.Final {
		r.final = true
		return nil
	}
	b := Build{Ref: r.ref, ID: r.a.buildID(ctx, r.ref)}
	if rs, ok := r.a.sink.(Resumer); ok && r.takeover {
		rs.Resume(b)
	}
	// Status first: the chunks listed after it hold every line written
	// before it.
	st, _, err := build.ReadStatus(ctx, s, r.ref)
	statusKnown := err == nil
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if statusKnown {
		if st, err = r.a.failIfLost(ctx, r.ref, st); err != nil {
			return err
		}
		r.status = &st
	}
	chunks, err := build.AllChunks(ctx, s, r.ref, cur.Seq)
	if err != nil {
		return err
	}
	// Relay the chunks in batches bounded by lines and bytes.
	for len(chunks) > 0 {
		var recs []build.Record
		var last uint64
		size := 0
		for len(chunks) > 0 && (len(recs) == 0 || len(recs) < r.a.cfg.BatchLines && size < r.a.cfg.BatchBytes) {
			c := chunks[0]
			data, err := build.ReadChunk(ctx, s, r.ref, c.Seq)
			if err != nil {
				return err
			}
			if err := build.ScanRecords(bytes.NewReader(data), func(rec build.Record) error { recs = append(recs, rec); return nil }); err != nil {
				return fmt.Errorf("chunk %d of build %s: %w", c.Seq, r.ref, err)
			}
			size += len(data)
			last = c.Seq
			chunks = chunks[1:]
		}
		if err := r.deliver(ctx, func() error { return r.a.sink.Lines(ctx, b, recs) }); err != nil {
			return err
		}
		if oldest := oldestLine(recs); !oldest.IsZero() {
			r.a.lag.observe(time.Since(oldest))
		}
		next := cur
		next.Seq = last
		if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
			return err
		}
		cur = next
		delivered = true
		r.a.LinesRelayed.Add(uint64(len(recs)))
		r.a.BatchesRelayed.Add(1)
	}
	if !statusKnown {
		return nil
	}
	if st.Status == cur.Status && st.Reason == cur.Reason {
		return nil // artifacts are relayed with a status change
	}
	// Artifacts and test results go before the status, so wharf-api has
	// them when it shows the build as done.
	for _, kind := range []fileKind{artifactFiles, testResultFiles} {
		files, err := build.ListFiles(ctx, s, kind.prefix(r.ref))
		if err != nil {
			return err
		}
		for _, f := range files {
			if slices.Contains(*kind.relayed(&cur), f.Name) {
				continue
			}
			err := r.deliver(ctx, func() error {
				rc, _, err := s.Get(ctx, kind.prefix(r.ref)+f.Name)
				if err != nil {
					return err
				}
				defer rc.Close()
				return kind.send(r.a.sink)(ctx, b, f.Name, rc)
			})
			if errors.Is(err, ErrRefused) {
				r.a.FilesRefused.Add(1)
				r.a.cfg.Logger.Warn("file refused by the sink; not sent again", "build", r.ref, "file", f.Name, "error", err)
			} else if err != nil {
				return err
			} else {
				r.a.FilesRelayed.Add(1)
			}
			next := cur
			list := kind.relayed(&next)
			*list = append(append([]string(nil), *list...), f.Name)
			if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
				return err
			}
			cur = next
		}
	}
	if st.Status != cur.Status || st.Reason != cur.Reason {
		if err := r.deliver(ctx, func() error { return r.a.sink.Status(ctx, b, st) }); err != nil {
			return err
		}
		next := cur
		next.Status, next.Reason = st.Status, st.Reason
		next.Final = st.Status.Final()
		if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
			return err
		}
		cur = next
		delivered = true
		r.a.StatusRelayed.Add(1)
	}
	r.final = cur.Final
	return nil
}

// oldestLine is the earliest timestamp of recs (zero when none has one).
func oldestLine(recs []build.Record) time.Time {
	var t time.Time
	for _, r := range recs {
		if !r.Time.IsZero() && (t.IsZero() || r.Time.Before(t)) {
			t = r.Time
		}
	}
	return t
}

// heldBuild is a build whose lease this replica holds.
type heldBuild struct {
	lease heldLease
	cur   cursor
	etag  string
}

// cursor is the document at builds/<ref>/relay/cursor.
type cursor struct {
	Seq       uint64      `json:"seq"`
	Status    build.Phase `json:"status,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Artifacts []string    `json:"artifacts,omitempty"`
	// TestResults are the test result files relayed (or refused).
	TestResults []string `json:"testResults,omitempty"`
	Final       bool     `json:"final,omitempty"`
}

// fileKind is artifacts or test results, which the relay treats alike.
type fileKind int

const (
	artifactFiles fileKind = iota
	testResultFiles
)

func (k fileKind) prefix(ref string) string {
	if k == testResultFiles {
		return build.TestResultPrefix(ref)
	}
	return build.ArtifactPrefix(ref)
}

func (k fileKind) relayed(c *cursor) *[]string {
	if k == testResultFiles {
		return &c.TestResults
	}
	return &c.Artifacts
}

func (k fileKind) send(s Sink) func(context.Context, Build, string, io.Reader) error {
	if k == testResultFiles {
		return s.TestResult
	}
	return s.Artifact
}

func readCursor(ctx context.Context, s blob.Store, ref string) (cursor, string, error) {
	b, info, err := blob.ReadAll(ctx, s, build.CursorKey(ref), 1<<20)
	if errors.Is(err, blob.ErrNotFound) {
		return cursor{}, "", nil
	}
	if err != nil {
		return cursor{}, "", err
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return cursor{}, "", fmt.Errorf("cursor of build %s: %w", ref, err)
	}
	return c, info.ETag, nil
}

func writeCursor(ctx context.Context, s blob.Store, ref string, c cursor, etag string) (string, error) {
	b, _ := json.Marshal(c)
	info, err := s.Put(ctx, build.CursorKey(ref), bytes.NewReader(b), int64(len(b)),
		blob.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatch: etag == ""})
	if err != nil {
		return "", fmt.Errorf("advance cursor of build %s: %w", ref, err)
	}
	return info.ETag, nil
}
