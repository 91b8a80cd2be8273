package build

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// How a log object (a chunk, log.ndjson) holds its NDJSON: as it is, or
// as zstd frames, which `zstd -d` reads (a concatenation of frames is one
// zstd stream). Readers tell the two apart by the first four bytes of
// each object, so a build may hold both.
const (
	// CompressionZstd stores each sealed chunk as one zstd frame (fastest
	// level, a 256 KiB window, with its content size and checksum).
	CompressionZstd = "zstd"
	// CompressionNone stores plain NDJSON.
	CompressionNone = "none"
)

// zstdMagic starts every zstd frame; NDJSON starts with '{'.
var zstdMagic = [4]byte{0x28, 0xb5, 0x2f, 0xfd}

// isZstd reports whether an object that starts with head is zstd.
func isZstd(head []byte) bool {
	return len(head) >= 4 && [4]byte(head[:4]) == zstdMagic
}

// zstdWindow is the encoder's window: a sealed chunk (256 KiB by default)
// is its own frame, so a larger window would find nothing more, and it
// keeps the encoder's history buffer and a reader's window small.
const zstdWindow = 256 << 10

// encoders are reused across writers and builds: one holds its match
// table and history (about 0.65 MiB) and costs as much to set up. A
// LogWriter's uploader takes one for its life, so that the GC's clearing
// of the pool does not make a busy writer set up new ones.
var encoders sync.Pool

func getEncoder() *zstd.Encoder {
	if enc, ok := encoders.Get().(*zstd.Encoder); ok {
		return enc
	}
	// Single segment: each frame gives its content size (without it,
	// frames under 256 bytes would not), which compaction adds up, and a
	// reader's window is the frame's size (a chunk's). An xxhash checksum
	// ends each frame.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(true),
		zstd.WithSingleSegment(true))
	if err != nil {
		panic(err) // constant options
	}
	return enc
}

func putEncoder(enc *zstd.Encoder) { encoders.Put(enc) }

// appendZstd appends src as one zstd frame to dst. The frame depends only
// on src (an encoder keeps nothing from one frame to the next that changes
// the output), so a retried upload sends the same bytes as the attempt
// that may have landed, and the MD5 check recognises it.
func appendZstd(enc *zstd.Encoder, dst, src []byte) []byte {
	return enc.EncodeAll(src, dst)
}

// decoders are reused across reads; one decodes synchronously (no
// goroutines), so an unused one in the pool costs only its buffers.
var decoders sync.Pool

func getDecoder() *zstd.Decoder {
	if d, ok := decoders.Get().(*zstd.Decoder); ok {
		return d
	}
	// maxChunkRead bounds what DecodeAll returns (a chunk) and a stream's
	// window (log.ndjson is read as a stream).
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxChunkRead))
	if err != nil {
		panic(err) // constant options
	}
	return d
}

func putDecoder(d *zstd.Decoder) {
	_ = d.Reset(nil)
	decoders.Put(d)
}

// decodeObject returns the NDJSON of a whole stored object: b itself, or
// b decoded when it is zstd (at most maxChunkRead bytes).
func decodeObject(b []byte) ([]byte, error) {
	if !isZstd(b) {
		return b, nil
	}
	d := getDecoder()
	defer putDecoder(d)
	out, err := d.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("decode zstd: %w", err)
	}
	return out, nil
}

// ndjsonReader reads the NDJSON of a stored object from its body: the body
// as it is, or decoded when it is zstd.
type ndjsonReader struct {
	rc   io.ReadCloser
	r    io.Reader // what Read reads: the head then rc, or the decoder
	dec  *zstd.Decoder
	head [4]byte
	n, i int // head[i:n] is still to be returned (plain objects)
}

// newNDJSONReader looks at the first bytes of body to tell zstd from
// plain NDJSON. Closing the result closes body.
func newNDJSONReader(body io.ReadCloser) (io.ReadCloser, error) {
	r := &ndjsonReader{rc: body}
	n, err := io.ReadFull(body, r.head[:])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		r.n = n // shorter than a frame header: plain
		r.r = eofReader{}
		return r, nil
	case err != nil:
		_ = body.Close()
		return nil, err
	}
	r.n = n
	if !isZstd(r.head[:]) {
		r.r = body
		return r, nil
	}
	r.dec = getDecoder()
	if err := r.dec.Reset(io.MultiReader(bytes.NewReader(r.head[:]), body)); err != nil {
		r.Close()
		return nil, err
	}
	r.n, r.r = 0, r.dec
	return r, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func (r *ndjsonReader) Read(p []byte) (int, error) {
	if r.i < r.n {
		k := copy(p, r.head[r.i:r.n])
		r.i += k
		return k, nil
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.dec != nil {
		err = fmt.Errorf("decode zstd: %w", err)
	}
	return n, err
}

func (r *ndjsonReader) Close() error {
	if r.dec != nil {
		putDecoder(r.dec)
		r.dec = nil
	}
	return r.rc.Close()
}

// Raw frames: a plain chunk in a build whose log is compacted as zstd
// goes into log.ndjson as a zstd frame of raw (stored) blocks, so that
// the whole log stays one zstd stream. Its size follows from the chunk's,
// which the compacted object's size must be known for before its upload.

const (
	rawFrameHeader = 4 + 1 + 8 // magic, descriptor, 8-byte content size
	rawBlockMax    = 128 << 10 // zstd's largest block
	rawBlockHeader = 3
)

// rawFrameSize is the size of the raw frame of n bytes (none for 0).
func rawFrameSize(n int64) int64 {
	if n == 0 {
		return 0
	}
	return rawFrameHeader + n + rawBlockHeader*((n+rawBlockMax-1)/rawBlockMax)
}

// rawFrameReader reads the n bytes of r as one zstd frame of raw blocks.
type rawFrameReader struct {
	r    io.Reader
	left int64 // content bytes not yet read
	hdr  []byte
	blk  int64 // content bytes left in the current block
	buf  [rawFrameHeader]byte
}

func newRawFrameReader(r io.Reader, n int64) *rawFrameReader {
	f := &rawFrameReader{r: r, left: n}
	if n == 0 {
		return f
	}
	copy(f.buf[:], zstdMagic[:])
	// Single_Segment (window = content size, no window descriptor) with
	// an 8-byte Frame_Content_Size; no checksum, no dictionary.
	f.buf[4] = 3<<6 | 1<<5
	binary.LittleEndian.PutUint64(f.buf[5:], uint64(n))
	f.hdr = f.buf[:]
	return f
}

func (f *rawFrameReader) Read(p []byte) (int, error) {
	if len(f.hdr) == 0 && f.blk == 0 {
		if f.left == 0 {
			return 0, io.EOF
		}
		f.blk = min(f.left, rawBlockMax)
		h := uint32(f.blk) << 3 // Block_Type 0: raw
		if f.blk == f.left {
			h |= 1 // Last_Block
		}
		f.buf[0], f.buf[1], f.buf[2] = byte(h), byte(h>>8), byte(h>>16)
		f.hdr = f.buf[:rawBlockHeader]
	}
	if len(f.hdr) > 0 {
		n := copy(p, f.hdr)
		f.hdr = f.hdr[n:]
		return n, nil
	}
	if int64(len(p)) > f.blk {
		p = p[:f.blk]
	}
	n, err := f.r.Read(p)
	f.blk -= int64(n)
	f.left -= int64(n)
	if err == io.EOF && f.left > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return n, err
}

// frameSizer follows a stream of zstd frames written to it without
// decoding them: it adds up their content sizes (from the frame headers)
// and checks the stream ends at the end of a frame. Compaction uses it
// to learn what log.ndjson decodes to, and to refuse a chunk whose last
// frame is cut off (it would make every frame after it unreadable).
type frameSizer struct {
	total   int64 // content bytes of the frames seen
	unknown bool  // a frame did not give its content size

	state  int
	buf    [14]byte
	have   int
	want   int
	skip   int64 // bytes to pass over before state
	fhd    byte
	fcsLen int
}

const (
	fsMagic = iota
	fsSkippableSize
	fsDescriptor
	fsHeader
	fsBlock
)

var errNotZstd = errors.New("not a zstd frame")

func newFrameSizer() *frameSizer { return &frameSizer{state: fsMagic, want: 4} }

func (f *frameSizer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.skip > 0 {
			k := min(int64(len(p)), f.skip)
			p, f.skip = p[k:], f.skip-k
			continue
		}
		k := copy(f.buf[f.have:f.want], p)
		f.have += k
		p = p[k:]
		if f.have == f.want {
			if err := f.step(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// expect makes the sizer collect n header bytes for state next.
func (f *frameSizer) expect(next, n int) { f.state, f.have, f.want = next, 0, n }

func (f *frameSizer) step() error {
	b := f.buf[:f.want]
	switch f.state {
	case fsMagic:
		m := binary.LittleEndian.Uint32(b)
		switch {
		case [4]byte(b) == zstdMagic:
			f.expect(fsDescriptor, 1)
		case m&0xfffffff0 == 0x184d2a50: // a skippable frame
			f.expect(fsSkippableSize, 4)
		default:
			return fmt.Errorf("%w (starts with %x)", errNotZstd, b)
		}
	case fsSkippableSize:
		f.skip = int64(binary.LittleEndian.Uint32(b))
		f.expect(fsMagic, 4)
	case fsDescriptor:
		f.fhd = b[0]
		if f.fhd&0x08 != 0 {
			return fmt.Errorf("%w: reserved bit set", errNotZstd)
		}
		single := f.fhd&0x20 != 0
		f.fcsLen = [4]int{0, 2, 4, 8}[f.fhd>>6]
		if f.fcsLen == 0 && single {
			f.fcsLen = 1
		}
		rest := [4]int{0, 1, 2, 4}[f.fhd&3] + f.fcsLen
		if !single {
			rest++ // Window_Descriptor
		}
		if f.fcsLen == 0 {
			f.unknown = true
		}
		if rest == 0 {
			f.expect(fsBlock, 3)
			break
		}
		f.expect(fsHeader, rest)
	case fsHeader:
		if f.fcsLen > 0 {
			var fcs [8]byte
			copy(fcs[:], b[len(b)-f.fcsLen:])
			size := int64(binary.LittleEndian.Uint64(fcs[:]))
			if f.fcsLen == 2 {
				size += 256
			}
			f.total += size
		}
		f.expect(fsBlock, 3)
	case fsBlock:
		h := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		size := int64(h >> 3)
		switch h >> 1 & 3 {
		case 1: // RLE: one byte, repeated size times
			size = 1
		case 3:
			return fmt.Errorf("%w: reserved block type", errNotZstd)
		}
		f.skip = size
		if h&1 == 0 {
			f.expect(fsBlock, 3)
			break
		}
		if f.fhd&0x04 != 0 {
			f.skip += 4 // Content_Checksum
		}
		f.expect(fsMagic, 4)
	}
	return nil
}

// close reports whether the stream ended between two frames.
func (f *frameSizer) close() error {
	if f.state != fsMagic || f.have != 0 || f.skip != 0 {
		return fmt.Errorf("zstd stream cut off in a frame")
	}
	return nil
}
