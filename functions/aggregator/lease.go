package aggregator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// lease is the document at builds/<ref>/relay/lease.
type lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// heldLease is a lease this replica holds, with the ETag to renew it by.
type heldLease struct {
	ref     string
	etag    string
	expires time.Time
	// existed: the lease document was there before this acquire, so the
	// build may have been relayed by a holder that is gone (or by this
	// replica before it restarted).
	existed bool
}

// errLeaseHeld means another replica holds the build's lease.
var errLeaseHeld = errors.New("lease held by another replica")

// acquire takes or renews the build's lease for d. It creates the lease
// create-only when there is none, and replaces an expired one (or its own)
// only if its ETag is unchanged, so of two replicas racing for a build
// exactly one wins.
func acquire(ctx context.Context, s blob.Store, ref, holder string, d time.Duration, now time.Time) (heldLease, error) {
	key := build.LeaseKey(ref)
	b, info, err := blob.ReadAll(ctx, s, key, 64<<10)
	opts := blob.PutOptions{ContentType: "application/json"}
	switch {
	case errors.Is(err, blob.ErrNotFound):
		opts.IfNoneMatch = true
	case err != nil:
		return heldLease{}, fmt.Errorf("read lease of build %s: %w", ref, err)
	default:
		var cur lease
		if json.Unmarshal(b, &cur) == nil && cur.Holder != holder && now.Before(cur.Expires) {
			return heldLease{}, fmt.Errorf("build %s: %w (%s until %s)", ref, errLeaseHeld, cur.Holder, cur.Expires.Format(time.RFC3339))
		}
		opts.IfMatch = info.ETag
	}
	l := lease{Holder: holder, Expires: now.Add(d)}
	body, _ := json.Marshal(l)
	out, err := s.Put(ctx, key, bytes.NewReader(body), int64(len(body)), opts)
	if errors.Is(err, blob.ErrPreconditionFailed) {
		return heldLease{}, fmt.Errorf("build %s: %w (lost the race)", ref, errLeaseHeld)
	}
	if err != nil {
		return heldLease{}, fmt.Errorf("write lease of build %s: %w", ref, err)
	}
	return heldLease{ref: ref, etag: out.ETag, expires: l.Expires, existed: !opts.IfNoneMatch}, nil
}

// release gives a lease up early (the build is done) by letting it expire
// now, only if it is still ours.
func release(ctx context.Context, s blob.Store, h heldLease, holder string) {
	body, _ := json.Marshal(lease{Holder: holder, Expires: time.Unix(0, 0).UTC()})
	_, _ = s.Put(ctx, build.LeaseKey(h.ref), bytes.NewReader(body), int64(len(body)), blob.PutOptions{ContentType: "application/json", IfMatch: h.etag})
}
