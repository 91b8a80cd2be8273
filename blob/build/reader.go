package build

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Chunk names one stored log chunk.
type Chunk struct {
	Seq  uint64
	Key  string
	Size int64
	ETag string
}

// ListChunks returns up to limit chunks of ref with a sequence number
// greater than after, in order (limit 0 means one store page).
func ListChunks(ctx context.Context, s blob.Store, ref string, after uint64, limit int) ([]Chunk, error) {
	opts := blob.ListOptions{Prefix: ChunkPrefix(ref), Limit: limit}
	if after > 0 {
		opts.After = ChunkKey(ref, after)
	}
	page, err := s.List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list log chunks of build %s: %w", ref, err)
	}
	out := make([]Chunk, 0, len(page))
	for _, info := range page {
		if seq, ok := ParseChunkKey(ref, info.Key); ok {
			out = append(out, Chunk{Seq: seq, Key: info.Key, Size: info.Size, ETag: info.ETag})
		}
	}
	return out, nil
}

// AllChunks lists every chunk of ref after seq after, in order.
func AllChunks(ctx context.Context, s blob.Store, ref string, after uint64) ([]Chunk, error) {
	var out []Chunk
	for {
		page, err := ListChunks(ctx, s, ref, after, blob.DefaultListLimit)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < blob.DefaultListLimit {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
}

// LastChunk returns the highest chunk sequence number ref has used, 0 if
// none: the last stored chunk, or the last compacted one when compaction
// removed the chunks, so numbers are never reused.
func LastChunk(ctx context.Context, s blob.Store, ref string) (uint64, error) {
	compacted, err := compactedState(ctx, s, ref)
	if err != nil {
		return 0, err
	}
	chunks, err := AllChunks(ctx, s, ref, compacted.CompactedThrough)
	if err != nil {
		return 0, err
	}
	if len(chunks) == 0 {
		return compacted.CompactedThrough, nil
	}
	return chunks[len(chunks)-1].Seq, nil
}

// compactedState returns what log.ndjson holds according to the status
// document; zero when there is no compacted log (or no status document).
func compactedState(ctx context.Context, s blob.Store, ref string) (LogState, error) {
	st, _, err := ReadStatus(ctx, s, ref)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return LogState{}, nil
	case err != nil:
		return LogState{}, err
	case st.Log == nil:
		return LogState{}, nil
	}
	return *st.Log, nil
}

// maxChunkRead bounds one chunk read: a chunk is ChunkSize plus one record,
// and a record's text is at most MaxText escaped.
const maxChunkRead = 64 << 20

// ReadChunk returns the raw newline-delimited JSON of chunk seq.
func ReadChunk(ctx context.Context, s blob.Store, ref string, seq uint64) ([]byte, error) {
	b, _, err := blob.ReadAll(ctx, s, ChunkKey(ref, seq), maxChunkRead)
	if err != nil {
		return nil, fmt.Errorf("read log chunk %d of build %s: %w", seq, ref, err)
	}
	return b, nil
}

// OpenLog streams the build's whole log as newline-delimited JSON, in
// order: log.ndjson when the build's log was compacted, then any chunk
// written after the compaction; else the chunks one after the other. The
// compacted log is byte for byte the concatenation of the chunks it
// replaced, so when a chunk disappears mid-read (compaction finished and
// removed it) the reader carries on in log.ndjson at the same offset.
func OpenLog(ctx context.Context, s blob.Store, ref string) (io.ReadCloser, error) {
	if err := ValidateRef(ref); err != nil {
		return nil, err
	}
	st, _, err := ReadStatus(ctx, s, ref)
	known := err == nil
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("open log of build %s: %w", ref, err)
	}
	var through uint64
	if known && st.Log != nil {
		through = st.Log.CompactedThrough
	}
	chunks, err := AllChunks(ctx, s, ref, through)
	if err != nil {
		return nil, err
	}
	if !known && len(chunks) == 0 {
		return nil, fmt.Errorf("open log of build %s: no such build: %w", ref, blob.ErrNotFound)
	}
	r := &chunkReader{ctx: ctx, s: s, ref: ref, chunks: chunks}
	if through > 0 {
		rc, _, err := s.Get(ctx, LogKey(ref))
		if err != nil {
			return nil, fmt.Errorf("open log of build %s: compacted log: %w", ref, err)
		}
		r.cur = rc
	}
	return r, nil
}

// chunkReader concatenates chunks, falling back to the compacted log.
type chunkReader struct {
	ctx    context.Context
	s      blob.Store
	ref    string
	chunks []Chunk
	cur    io.ReadCloser
	offset int64 // bytes of chunks returned so far
	// noFallback is set for compaction itself, which must not read the
	// compacted log it is replacing.
	noFallback bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.chunks) == 0 {
				return 0, io.EOF
			}
			rc, _, err := r.s.Get(r.ctx, r.chunks[0].Key)
			if errors.Is(err, blob.ErrNotFound) && !r.noFallback {
				return r.switchToCompacted(p)
			}
			if err != nil {
				return 0, fmt.Errorf("read log of build %s: %w", r.ref, err)
			}
			r.cur = rc
			r.chunks = r.chunks[1:]
		}
		n, err := r.cur.Read(p)
		r.offset += int64(n)
		if err == io.EOF {
			_ = r.cur.Close()
			r.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read log of build %s: %w", r.ref, err)
		}
		return n, nil
	}
}

// switchToCompacted replaces the chunks that compaction removed by
// log.ndjson from the current offset on.
func (r *chunkReader) switchToCompacted(p []byte) (int, error) {
	state, err := compactedState(r.ctx, r.s, r.ref)
	if err != nil {
		return 0, err
	}
	if state.CompactedThrough < r.chunks[0].Seq {
		return 0, fmt.Errorf("read log of build %s: chunk %d vanished and is not compacted: %w", r.ref, r.chunks[0].Seq, blob.ErrNotFound)
	}
	rc, _, err := r.s.Get(r.ctx, LogKey(r.ref))
	if err != nil {
		return 0, fmt.Errorf("read log of build %s: a chunk vanished and no compacted log: %w", r.ref, err)
	}
	if _, err := io.CopyN(io.Discard, rc, r.offset); err != nil {
		_ = rc.Close()
		return 0, fmt.Errorf("read log of build %s: skip to offset %d of compacted log: %w", r.ref, r.offset, err)
	}
	for len(r.chunks) > 0 && r.chunks[0].Seq <= state.CompactedThrough {
		r.chunks = r.chunks[1:]
	}
	r.cur = rc
	return r.Read(p)
}

func (r *chunkReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

// Compact writes every chunk of ref, in order, into log.ndjson and
// records in the status document which chunks it holds; readers use it
// from then on. It streams: memory use does not grow with the log. Chunks
// stay; DeleteChunks removes them once the relay no longer needs them.
// Compacting again (after late lines) rewrites log.ndjson from all chunks,
// so it refuses when earlier chunks are already gone.
func Compact(ctx context.Context, s blob.Store, ref string) (LogState, error) {
	prev, err := compactedState(ctx, s, ref)
	if err != nil {
		return LogState{}, err
	}
	chunks, err := AllChunks(ctx, s, ref, 0)
	if err != nil {
		return LogState{}, err
	}
	if len(chunks) == 0 {
		return prev, nil
	}
	if chunks[0].Seq != 1 || chunks[len(chunks)-1].Seq != uint64(len(chunks)) {
		if prev.CompactedThrough >= chunks[len(chunks)-1].Seq {
			return prev, nil // nothing new since the last compaction
		}
		return LogState{}, fmt.Errorf("compact log of build %s: chunks %d..%d present, %d expected from 1: earlier chunks were deleted",
			ref, chunks[0].Seq, chunks[len(chunks)-1].Seq, len(chunks))
	}
	var total int64
	for _, c := range chunks {
		total += c.Size
	}
	body := &chunkReader{ctx: ctx, s: s, ref: ref, chunks: chunks, noFallback: true}
	defer body.Close()
	if _, err := s.Put(ctx, LogKey(ref), body, total, blob.PutOptions{ContentType: "application/x-ndjson"}); err != nil {
		return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
	}
	state := LogState{CompactedThrough: chunks[len(chunks)-1].Seq, CompactedSize: total}
	_, err = UpdateStatus(ctx, s, ref, func(st *Status) error {
		if st.Status == "" {
			return fmt.Errorf("build %s has no status document", ref)
		}
		st.Log = &state
		return nil
	})
	if err != nil {
		return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
	}
	return state, nil
}

// ErrNotCompacted means log.ndjson does not hold the chunks to delete.
var ErrNotCompacted = errors.New("log not compacted")

// DeleteChunks removes the chunks that log.ndjson holds, as recorded by
// Compact; later chunks stay. No line can be lost by it.
func DeleteChunks(ctx context.Context, s blob.Store, ref string) error {
	return deleteChunks(ctx, s, ref, false)
}

// DeleteAllChunks removes every chunk of ref, but only when log.ndjson
// holds all of them; otherwise it returns ErrNotCompacted and deletes
// nothing. A build without chunks is left as it is.
func DeleteAllChunks(ctx context.Context, s blob.Store, ref string) error {
	return deleteChunks(ctx, s, ref, true)
}

func deleteChunks(ctx context.Context, s blob.Store, ref string, all bool) error {
	state, err := compactedState(ctx, s, ref)
	if err != nil {
		return err
	}
	chunks, err := AllChunks(ctx, s, ref, 0)
	if err != nil {
		return err
	}
	if all && len(chunks) == 0 {
		return nil
	}
	if state.CompactedThrough == 0 || all && chunks[len(chunks)-1].Seq > state.CompactedThrough {
		return fmt.Errorf("delete chunks of build %s: %w", ref, ErrNotCompacted)
	}
	info, err := s.Stat(ctx, LogKey(ref))
	if err != nil {
		return fmt.Errorf("delete chunks of build %s: compacted log: %w", ref, err)
	}
	if info.Size != state.CompactedSize {
		return fmt.Errorf("delete chunks of build %s: compacted log has %d bytes, status says %d", ref, info.Size, state.CompactedSize)
	}
	for _, c := range chunks {
		if c.Seq > state.CompactedThrough {
			break
		}
		if err := s.Delete(ctx, c.Key); err != nil {
			return fmt.Errorf("delete chunks of build %s: %w", ref, err)
		}
	}
	return nil
}
