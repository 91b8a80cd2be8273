package build

import (
	"bytes"
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

// maxChunkRead bounds one chunk read, as stored and decoded: a chunk is
// ChunkSize plus one record, and a record's text is at most MaxText
// escaped; an object holds chunks up to MaxObjectSize.
const maxChunkRead = 64 << 20

// ReadChunk returns the newline-delimited JSON of chunk seq: decoded when
// the chunk is stored as zstd.
func ReadChunk(ctx context.Context, s blob.Store, ref string, seq uint64) ([]byte, error) {
	b, _, err := blob.ReadAll(ctx, s, ChunkKey(ref, seq), maxChunkRead)
	if err == nil {
		b, err = decodeObject(b)
	}
	if err != nil {
		return nil, fmt.Errorf("read log chunk %d of build %s: %w", seq, ref, err)
	}
	return b, nil
}

// openObject opens a log object (a chunk, log.ndjson) as NDJSON.
func openObject(ctx context.Context, s blob.Store, key string) (io.ReadCloser, error) {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return newNDJSONReader(rc)
}

// OpenLog streams the build's whole log as newline-delimited JSON, in
// order: log.ndjson when the build's log was compacted, then any chunk
// written after the compaction; else the chunks one after the other.
// Each object is decoded when it is zstd. The compacted log decodes byte
// for byte to the concatenation of the chunks it replaced, so when a
// chunk disappears mid-read (compaction finished and removed it) the
// reader carries on in log.ndjson at the same offset of NDJSON.
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
		rc, err := openObject(ctx, s, LogKey(ref))
		if err != nil {
			return nil, fmt.Errorf("open log of build %s: compacted log: %w", ref, err)
		}
		r.cur = rc
	}
	return r, nil
}

// chunkReader concatenates the NDJSON of chunks, falling back to the
// compacted log.
type chunkReader struct {
	ctx    context.Context
	s      blob.Store
	ref    string
	chunks []Chunk
	cur    io.ReadCloser
	offset int64 // bytes of NDJSON returned so far
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.chunks) == 0 {
				return 0, io.EOF
			}
			rc, err := openObject(r.ctx, r.s, r.chunks[0].Key)
			if errors.Is(err, blob.ErrNotFound) {
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
	rc, err := openObject(r.ctx, r.s, LogKey(r.ref))
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
//
// The chunks' bytes are concatenated as they are stored, so log.ndjson is
// plain NDJSON when every chunk is, and one zstd stream (frame after
// frame, which `zstd -d` reads whole) when any chunk is zstd: a plain
// chunk among zstd ones (written before an upgrade, or a system line of
// another component) goes in as a frame of stored blocks.
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
	// The size of log.ndjson, which its upload needs first, depends on
	// which chunks are zstd. A log is all of one kind, but for a build
	// that changed hands mid-way (an upgrade) or ends in a plain system
	// line (a lost worker): when the first and the last chunk are of one
	// kind, the others are taken to be too, and checked as they are read;
	// otherwise, or when that turns out wrong (the upload is then
	// abandoned), each chunk is looked at first.
	body := &compactBody{ctx: ctx, s: s, ref: ref, chunks: chunks,
		kinds: make([]logKind, len(chunks)), known: make([]bool, len(chunks))}
	first, last := 0, len(chunks)-1
	for _, i := range []int{first, last} {
		if body.known[i] {
			continue
		}
		if err := body.look(i); err != nil {
			return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
		}
	}
	lookAll := body.kinds[first] != body.kinds[last]
	var size int64
	for attempt := 0; ; attempt++ {
		for i := range chunks {
			switch {
			case body.known[i]:
			case lookAll:
				if err := body.look(i); err != nil {
					return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
				}
			default:
				body.kinds[i] = body.kinds[first]
			}
		}
		size = body.start()
		contentType := "application/x-ndjson"
		if body.zstd {
			contentType = "application/zstd"
		}
		_, err = s.Put(ctx, LogKey(ref), body, size, blob.PutOptions{ContentType: contentType})
		body.close()
		if err == nil {
			break
		}
		if !body.changed || attempt > 0 {
			return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
		}
		lookAll = true
	}
	ndjson := body.ndjson
	if body.unknownSize {
		// A frame without its content size (not one this package wrote):
		// count what the log decodes to.
		if ndjson, err = decodedSize(ctx, s, LogKey(ref)); err != nil {
			return LogState{}, fmt.Errorf("compact log of build %s: %w", ref, err)
		}
	}
	state := LogState{CompactedThrough: chunks[len(chunks)-1].Seq, CompactedSize: ndjson, ObjectSize: size}
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

// decodedSize reads the object key as NDJSON and returns its length.
func decodedSize(ctx context.Context, s blob.Store, key string) (int64, error) {
	rc, err := openObject(ctx, s, key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

// logKind is how a log object stores its NDJSON.
type logKind uint8

const (
	kindPlain logKind = iota
	kindZstd
)

// errKindChanged abandons a compaction whose guess of a chunk's kind was
// wrong.
var errKindChanged = errors.New("a log chunk is not of the kind the compaction expected")

// compactBody is log.ndjson as it is uploaded: the chunks one after the
// other, each checked to be of the kind its size was reckoned with.
type compactBody struct {
	ctx    context.Context
	s      blob.Store
	ref    string
	chunks []Chunk
	kinds  []logKind // of each chunk, known or taken to be
	known  []bool    // kinds[i] was seen
	zstd   bool      // log.ndjson is zstd

	i       int // chunk being read
	rc      io.ReadCloser
	cur     io.Reader // what of chunk i goes into log.ndjson
	sizer   *frameSizer
	changed bool // a chunk was not of its kind in kinds

	ndjson      int64 // bytes of NDJSON the chunks read so far hold
	unknownSize bool  // a zstd frame did not say its content size
}

// look reads the first bytes of chunk i to learn its kind.
func (b *compactBody) look(i int) error {
	rc, _, err := b.s.Get(b.ctx, b.chunks[i].Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	var head [4]byte
	n, err := io.ReadFull(rc, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	b.kinds[i], b.known[i] = kindPlain, true
	if isZstd(head[:n]) {
		b.kinds[i] = kindZstd
	}
	return nil
}

// start readies the body for an upload and returns its size.
func (b *compactBody) start() int64 {
	b.close()
	b.i, b.changed, b.ndjson, b.unknownSize, b.zstd = 0, false, 0, false, false
	for _, k := range b.kinds {
		b.zstd = b.zstd || k == kindZstd
	}
	var size int64
	for i, c := range b.chunks {
		if b.zstd && b.kinds[i] == kindPlain {
			size += rawFrameSize(c.Size)
		} else {
			size += c.Size
		}
	}
	return size
}

func (b *compactBody) close() {
	if b.rc != nil {
		_ = b.rc.Close()
		b.rc, b.cur, b.sizer = nil, nil, nil
	}
}

// open starts reading chunk b.i.
func (b *compactBody) open() error {
	c := b.chunks[b.i]
	rc, _, err := b.s.Get(b.ctx, c.Key)
	if err != nil {
		return fmt.Errorf("chunk %d: %w", c.Seq, err)
	}
	var head [4]byte
	n, err := io.ReadFull(rc, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		_ = rc.Close()
		return fmt.Errorf("chunk %d: %w", c.Seq, err)
	}
	kind := kindPlain
	if isZstd(head[:n]) {
		kind = kindZstd
	}
	b.known[b.i] = true
	if kind != b.kinds[b.i] {
		_ = rc.Close()
		b.kinds[b.i], b.changed = kind, true
		return errKindChanged
	}
	b.rc = rc
	src := io.MultiReader(bytes.NewReader(head[:n]), rc)
	switch {
	case kind == kindZstd:
		b.cur, b.sizer = src, newFrameSizer()
	case b.zstd:
		b.cur = newRawFrameReader(src, c.Size)
		b.ndjson += c.Size
	default:
		b.cur = src
	}
	return nil
}

func (b *compactBody) Read(p []byte) (int, error) {
	for {
		if b.cur == nil {
			if b.i == len(b.chunks) {
				return 0, io.EOF
			}
			if err := b.open(); err != nil {
				return 0, err
			}
		}
		n, err := b.cur.Read(p)
		switch {
		case b.sizer != nil:
			if _, serr := b.sizer.Write(p[:n]); serr != nil {
				return 0, fmt.Errorf("chunk %d: %w", b.chunks[b.i].Seq, serr)
			}
		case !b.zstd:
			b.ndjson += int64(n)
		}
		if err == io.EOF {
			if b.sizer != nil {
				if serr := b.sizer.close(); serr != nil {
					return 0, fmt.Errorf("chunk %d: %w", b.chunks[b.i].Seq, serr)
				}
				b.ndjson += b.sizer.total
				b.unknownSize = b.unknownSize || b.sizer.unknown
			}
			b.close()
			b.i++
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, fmt.Errorf("chunk %d: %w", b.chunks[b.i].Seq, err)
		}
		return n, nil
	}
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
	if info.Size != state.objectSize() {
		return fmt.Errorf("delete chunks of build %s: compacted log has %d bytes, status says %d", ref, info.Size, state.objectSize())
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
