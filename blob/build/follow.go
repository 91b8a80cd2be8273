package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Follow calls fn for every log record of ref in order, as chunks appear,
// polling the store every interval, until the build's status is final and
// every chunk written before that has been read, or ctx ends. It returns
// the last status read.
func Follow(ctx context.Context, s blob.Store, ref string, interval time.Duration, fn func(Record) error) (Status, error) {
	if interval <= 0 {
		interval = time.Second
	}
	f := &follower{s: s, ref: ref, fn: fn}
	for {
		// Read the status before listing: the chunks listed after a final
		// status are all there will be.
		st, _, err := ReadStatus(ctx, s, ref)
		if err != nil && !errors.Is(err, blob.ErrNotFound) {
			return Status{}, err
		}
		// The compacted log holds chunks this follower has not read yet:
		// read them there, because once a build's relay is final its chunks
		// are deleted, and a listing then shows nothing past what was read.
		if st.Log != nil && st.Log.CompactedThrough > f.after {
			if err := f.compacted(ctx, *st.Log); err != nil {
				return st, err
			}
		}
		if err := f.chunks(ctx); err != nil {
			return st, err
		}
		if st.Status.Final() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(interval):
		}
	}
}

type follower struct {
	s      blob.Store
	ref    string
	fn     func(Record) error
	after  uint64 // last chunk read
	offset int64  // bytes of NDJSON read so far, the same in chunks and log.ndjson
}

func (f *follower) chunks(ctx context.Context) error {
	chunks, err := AllChunks(ctx, f.s, f.ref, f.after)
	if err != nil {
		return err
	}
	for _, c := range chunks {
		b, err := ReadChunk(ctx, f.s, f.ref, c.Seq)
		if errors.Is(err, blob.ErrNotFound) {
			// Compacted and removed since the listing: go on in log.ndjson.
			state, serr := compactedState(ctx, f.s, f.ref)
			if serr != nil || state.CompactedThrough < c.Seq {
				return fmt.Errorf("follow log of build %s: chunk %d vanished: %w", f.ref, c.Seq, err)
			}
			if err := f.compacted(ctx, state); err != nil {
				return err
			}
			return f.chunks(ctx)
		}
		if err != nil {
			return err
		}
		if err := ScanRecords(bytes.NewReader(b), f.fn); err != nil {
			return err
		}
		f.after, f.offset = c.Seq, f.offset+int64(len(b))
	}
	return nil
}

// compacted reads log.ndjson (decoded when it is zstd) from the current
// offset to its end; CompactedSize, the offset after it, counts NDJSON.
func (f *follower) compacted(ctx context.Context, state LogState) error {
	rc, err := openObject(ctx, f.s, LogKey(f.ref))
	if err != nil {
		return fmt.Errorf("follow log of build %s: %w", f.ref, err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, f.offset); err != nil {
		return fmt.Errorf("follow log of build %s: skip %d bytes: %w", f.ref, f.offset, err)
	}
	if err := ScanRecords(rc, f.fn); err != nil {
		return err
	}
	f.after, f.offset = state.CompactedThrough, state.CompactedSize
	return nil
}
