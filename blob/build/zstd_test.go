package build

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zstdCLI returns the path of the zstd command (Debian's package zstd),
// or skips the calling test, saying so, when it is not installed: the
// library's decoder has checked the same bytes by then.
func zstdCLI(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("zstd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			// make test installs it (make tools): on CI a skip would hide a missing check.
			t.Fatal("the zstd command is not installed (apt-get install zstd): not checked with the reference decoder, only with the library")
		}
		t.Skip("the zstd command is not installed (apt-get install zstd): not checked with the reference decoder, only with the library")
	}
	return p
}

// cliDecode runs `zstd -dc` on b.
func cliDecode(t testing.TB, b []byte) []byte {
	t.Helper()
	cmd := exec.Command(zstdCLI(t), "-dc")
	cmd.Stdin = bytes.NewReader(b)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("zstd -dc: %v: %s", err, stderr.String())
	}
	return out.Bytes()
}

// sample returns n bytes of log-like text: compressible, not trivially.
func sample(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := strings.Fields("compile link test ok FAIL PASS github.com/acme/widget internal/cache 0.013s warning: unused variable")
	var b []byte
	for len(b) < n {
		b = fmt.Appendf(b, `{"line":%d,"text":"%s %s %x"}`+"\n", len(b), words[r.IntN(len(words))], words[r.IntN(len(words))], r.Uint32())
	}
	return b[:n]
}

func newTestEncoder(t testing.TB, opts ...zstd.EOption) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// sizeFrames runs b through a frameSizer in pieces of step bytes.
func sizeFrames(b []byte, step int) (*frameSizer, error) {
	f := newFrameSizer()
	for len(b) > 0 {
		k := min(step, len(b))
		if _, err := f.Write(b[:k]); err != nil {
			return f, err
		}
		b = b[k:]
	}
	return f, f.close()
}

// TestFrameSizer: the sizer adds up the content sizes of frames of every
// shape (content size fields of 1, 2, 4 and 8 bytes, window descriptor or
// single segment, checksum or none, raw, RLE and compressed blocks,
// skippable frames), fed in any pieces, and refuses a stream cut short.
func TestFrameSizer(t *testing.T) {
	ours := getEncoder()
	defer putEncoder(ours)
	encs := map[string]*zstd.Encoder{
		"ours":          ours,
		"default-nocrc": newTestEncoder(t, zstd.WithEncoderCRC(false)),
		"better-single": newTestEncoder(t, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithSingleSegment(true)),
		"multi-segment": newTestEncoder(t, zstd.WithSingleSegment(false), zstd.WithWindowSize(1<<10)),
	}
	for name, enc := range encs {
		for _, n := range []int{1, 200, 255, 256, 300, 65791, 65792, 300_000, 5 << 20} {
			for _, what := range []string{"text", "zeros", "random"} {
				if n > 1<<20 && (what != "zeros" || name != "ours") {
					continue // a 4-byte content size is enough once
				}
				src := sample(n, uint64(n))
				switch what {
				case "zeros":
					src = make([]byte, n) // RLE blocks
				case "random":
					src = make([]byte, n) // raw blocks
					r := rand.New(rand.NewPCG(uint64(n), 2))
					for i := range src {
						src[i] = byte(r.Uint32())
					}
				}
				// Two frames with a skippable frame between them.
				b := enc.EncodeAll(src, nil)
				b = append(b, 0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z')
				b = enc.EncodeAll(src[:n/2], b)
				for _, step := range []int{1, 7, 1 << 20} {
					if n > 1000 && step == 1 || n > 70_000 && step < 1<<10 {
						continue
					}
					f, err := sizeFrames(b, step)
					if err == nil && f.unknown && n/2 < 256 && name != "ours" && name != "better-single" {
						continue // frames under 256 bytes in several segments do not say their size
					}
					if err != nil || f.unknown || f.total != int64(n+n/2) {
						t.Fatalf("%s %s %d bytes in steps of %d: total %d unknown %v, %v; want %d", name, what, n, step, f.total, f.unknown, err, n+n/2)
					}
				}
			}
		}
	}
	b := ours.EncodeAll(sample(1000, 3), nil)
	for cut := 1; cut < len(b); cut++ {
		if _, err := sizeFrames(b[:cut], 3); err == nil {
			t.Fatalf("a frame cut at %d of %d bytes passed", cut, len(b))
		}
	}
	if _, err := sizeFrames([]byte(`{"line":1}`+"\n"), 5); !errors.Is(err, errNotZstd) {
		t.Fatalf("NDJSON through the sizer: %v", err)
	}
	if f, err := sizeFrames(nil, 1); err != nil || f.total != 0 {
		t.Fatalf("empty stream: %d %v", f.total, err)
	}
}

// TestFrameSizerUnknownSize: a frame written by a streaming encoder (the
// zstd command reading a pipe) need not give its size; the sizer says so.
func TestFrameSizerUnknownSize(t *testing.T) {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	src := sample(2<<20, 4)
	for i := 0; i < len(src); i += 64 << 10 {
		_, _ = enc.Write(src[i : i+64<<10])
	}
	_ = enc.Close()
	f, err := sizeFrames(buf.Bytes(), 4096)
	if err != nil || !f.unknown {
		t.Fatalf("streamed frame: unknown %v, %v", f.unknown, err)
	}
	// Ours always do, however small.
	ours := getEncoder()
	defer putEncoder(ours)
	for _, n := range []int{1, 100, 255, 1024, 1025} {
		if f, err := sizeFrames(ours.EncodeAll(sample(n, 5), nil), 1); err != nil || f.unknown || f.total != int64(n) {
			t.Fatalf("our frame of %d bytes: total %d unknown %v, %v", n, f.total, f.unknown, err)
		}
	}
}

// TestRawFrame: a plain chunk wrapped as a frame of stored blocks has the
// size rawFrameSize reckons, and decodes to the chunk with the library
// and with the zstd command.
func TestRawFrame(t *testing.T) {
	var all, want []byte
	for _, n := range []int{0, 1, 255, 256, 131_071, 131_072, 131_073, 300_000} {
		src := sample(n, uint64(n))
		// One byte at a time: Read must cope with any buffer.
		var out []byte
		r := newRawFrameReader(bytes.NewReader(src), int64(n))
		p := make([]byte, 1)
		for {
			k, err := r.Read(p)
			out = append(out, p[:k]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if int64(len(out)) != rawFrameSize(int64(n)) {
			t.Fatalf("raw frame of %d bytes: %d bytes, reckoned %d", n, len(out), rawFrameSize(int64(n)))
		}
		got, err := decodeObject(out)
		if n > 0 && (err != nil || !bytes.Equal(got, src)) {
			t.Fatalf("raw frame of %d bytes decodes to %d bytes, %v", n, len(got), err)
		}
		if f, err := sizeFrames(out, 1000); err != nil || f.total != int64(n) {
			t.Fatalf("raw frame of %d bytes sized %d, %v", n, f.total, err)
		}
		all, want = append(all, out...), append(want, src...)
	}
	if got := cliDecode(t, all); !bytes.Equal(got, want) {
		t.Fatalf("zstd -dc of the raw frames: %d bytes, want %d", len(got), len(want))
	}
	// A chunk shorter than its listed size fails the upload.
	r := newRawFrameReader(strings.NewReader("short"), 10)
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short chunk: %v", err)
	}
}

// TestEncoderIsDeterministic: a pooled encoder that compressed other
// chunks before writes the same frame as a fresh one. A retried upload
// relies on it: the MD5 of its body must equal the attempt's that landed.
func TestEncoderIsDeterministic(t *testing.T) {
	used := getEncoder()
	defer putEncoder(used)
	for i, n := range []int{100, 70_000, 262_144 + 300, 1 << 20} {
		_ = used.EncodeAll(sample(n, uint64(i+100)), nil)
		src := sample(n, uint64(i))
		fresh := getEncoder()
		want := fresh.EncodeAll(src, nil)
		if got := used.EncodeAll(src, nil); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: a used encoder writes %d bytes, a fresh one %d", n, len(got), len(want))
		}
		// Not back into the pool: the next round wants a fresh one.
	}
}

// TestNDJSONReader: an object is read as it is unless it starts with the
// zstd magic number, however short it is.
func TestNDJSONReader(t *testing.T) {
	for _, plain := range []string{"", "{", "{}", "{}\n", `{"line":1}` + "\n"} {
		r, err := newNDJSONReader(io.NopCloser(strings.NewReader(plain)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != plain {
			t.Fatalf("%q read as %q, %v", plain, got, err)
		}
		_ = r.Close()
	}
	src := sample(500_000, 9)
	enc := getEncoder()
	z := appendZstd(enc, appendZstd(enc, nil, src[:100]), src[100:])
	putEncoder(enc)
	r, err := newNDJSONReader(io.NopCloser(bytes.NewReader(z)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("two frames read as %d bytes, %v", len(got), err)
	}
	_ = r.Close()
	// A damaged frame is an error, not silently short.
	bad := bytes.Clone(z)
	bad[len(bad)-10] ^= 0xff
	r, err = newNDJSONReader(io.NopCloser(bytes.NewReader(bad)))
	if err == nil {
		_, err = io.ReadAll(r)
		_ = r.Close()
	}
	if err == nil {
		t.Fatal("a damaged frame read without an error")
	}
	if _, err := decodeObject(bad); err == nil {
		t.Fatal("decodeObject of a damaged frame: no error")
	}
}

// TestDecodeObjectIsBounded: a chunk that decodes to more than
// maxChunkRead is refused, as a larger stored one is.
func TestDecodeObjectIsBounded(t *testing.T) {
	enc := getEncoder()
	defer putEncoder(enc)
	z := enc.EncodeAll(make([]byte, maxChunkRead+1), nil)
	if _, err := decodeObject(z); err == nil {
		t.Fatalf("a %d-byte chunk that decodes to %d bytes was read", len(z), maxChunkRead+1)
	}
}
