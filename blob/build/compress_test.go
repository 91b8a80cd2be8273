package build_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// texts returns the text of each record of an NDJSON log.
func texts(t testing.TB, ndjson []byte) []string {
	t.Helper()
	var out []string
	if err := build.ScanRecords(bytes.NewReader(ndjson), func(r build.Record) error { out = append(out, r.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func followTexts(t testing.TB, s blob.Store, ref string) []string {
	t.Helper()
	var out []string
	if _, err := build.Follow(testCtx(t), s, ref, time.Millisecond, func(r build.Record) error { out = append(out, r.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTexts(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d lines, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: line %d is %q, want %q", what, i, got[i], want[i])
		}
	}
}

// decodeWithCLI checks that `zstd -dc` reads b as want, in a subtest
// that is skipped, saying so, when the zstd command is not installed.
func decodeWithCLI(t *testing.T, b, want []byte) {
	t.Run("zstd-cli", func(t *testing.T) {
		p, err := exec.LookPath("zstd")
		if err != nil {
			if os.Getenv("CI") == "true" {
				// make test installs it (make tools): on CI a skip would hide a missing check.
				t.Fatal("the zstd command is not installed (apt-get install zstd): log.ndjson checked with the library's decoder only")
			}
			t.Skip("the zstd command is not installed (apt-get install zstd): log.ndjson checked with the library's decoder only")
		}
		cmd := exec.Command(p, "-dc")
		cmd.Stdin = bytes.NewReader(b)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("zstd -dc: %v: %s", err, stderr.String())
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("zstd -dc gives %d bytes, the chunks hold %d", out.Len(), len(want))
		}
	})
}

// TestMixedChunksReadAlike: a build whose chunks are partly plain (written
// before an upgrade, with WHARFJOBS_LOG_COMPRESSION=none, or a system line
// of another component) and partly zstd reads the same through ReadChunk,
// OpenLog, Follow, and after Compact through log.ndjson, which is plain
// when every chunk is and one zstd stream otherwise: `zstd -dc` reads it
// whole, to exactly the chunks' NDJSON.
func TestMixedChunksReadAlike(t *testing.T) {
	layouts := []struct {
		name  string
		parts []string
		puts  int32 // uploads of log.ndjson Compact makes
	}{
		// The first chunk plain, the last zstd: compaction looks at each.
		{"upgrade", []string{build.CompressionNone, build.CompressionZstd, "system", build.CompressionZstd}, 1},
		// The first and the last zstd: compaction takes the others to be
		// zstd too, finds the plain one, abandons the upload and starts
		// again.
		{"system-inside", []string{build.CompressionZstd, "system", build.CompressionZstd}, 2},
		// A lost worker's reason after its chunks.
		{"system-last", []string{build.CompressionZstd, "system"}, 1},
		{"plain", []string{build.CompressionNone, "system"}, 1},
		{"zstd", []string{build.CompressionZstd}, 1},
	}
	eachStore(t, func(t *testing.T, store blob.Store) {
		for li, l := range layouts {
			t.Run(l.name, func(t *testing.T) {
				s := &countPuts{Store: store, key: "log.ndjson"}
				ctx := testCtx(t)
				ref := fmt.Sprintf("mixed-%d", li)
				if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Running}, ""); err != nil {
					t.Fatal(err)
				}
				var want []string
				var kinds []bool // per chunk: zstd
				for _, part := range l.parts {
					before, err := build.LastChunk(ctx, s, ref)
					if err != nil {
						t.Fatal(err)
					}
					if part == "system" {
						text := fmt.Sprintf("line %d (system)", len(want)+1)
						if err := build.WriteSystemLine(ctx, s, ref, text, slog.New(slog.DiscardHandler)); err != nil {
							t.Fatal(err)
						}
						want = append(want, text)
					} else {
						cfg := fastConfig(t)
						cfg.Compression = part
						w, err := build.NewLogWriter(ctx, s, ref, cfg)
						if err != nil {
							t.Fatal(err)
						}
						for range 400 {
							text := fmt.Sprintf("line %d", len(want)+1)
							_ = w.Write(build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Line: uint64(len(want) + 1), Time: time.Now(), Text: text})
							want = append(want, text)
						}
						if err := w.Close(ctx); err != nil {
							t.Fatal(err)
						}
					}
					after, err := build.LastChunk(ctx, s, ref)
					if err != nil {
						t.Fatal(err)
					}
					for range after - before {
						kinds = append(kinds, part == build.CompressionZstd)
					}
				}
				chunks, err := build.AllChunks(ctx, s, ref, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(chunks) != len(kinds) || len(chunks) < len(l.parts) {
					t.Fatalf("%d chunks, %d written", len(chunks), len(kinds))
				}
				var ndjson []byte
				anyZstd := false
				for i, c := range chunks {
					raw, _, err := blob.ReadAll(ctx, s, c.Key, 64<<20)
					if err != nil {
						t.Fatal(err)
					}
					if bytes.HasPrefix(raw, zstdMagic) != kinds[i] {
						t.Fatalf("chunk %d: zstd %v, written as zstd %v", c.Seq, !kinds[i], kinds[i])
					}
					anyZstd = anyZstd || kinds[i]
					b, err := build.ReadChunk(ctx, s, ref, c.Seq)
					if err != nil {
						t.Fatal(err)
					}
					ndjson = append(ndjson, b...)
				}
				sameTexts(t, "ReadChunk", texts(t, ndjson), want)
				if got := readRaw(t, s, ref); !bytes.Equal(got, ndjson) {
					t.Fatalf("OpenLog of the chunks: %d bytes, ReadChunk %d", len(got), len(ndjson))
				}
				if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Status = build.Completed; return nil }); err != nil {
					t.Fatal(err)
				}
				sameTexts(t, "Follow of the chunks", followTexts(t, s, ref), want)

				// A reader on the first chunk when compaction ends and the
				// chunks go carries on in log.ndjson at the same offset.
				rc, err := build.OpenLog(ctx, s, ref)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				br := bufio.NewReaderSize(rc, 16)
				first, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}

				state, err := build.Compact(ctx, s, ref)
				if err != nil {
					t.Fatal(err)
				}
				if n := s.puts.Load(); n != l.puts {
					t.Fatalf("compaction uploaded log.ndjson %d times, want %d", n, l.puts)
				}
				log, info, err := blob.ReadAll(ctx, s, build.LogKey(ref), 64<<20)
				if err != nil {
					t.Fatal(err)
				}
				if state.CompactedSize != int64(len(ndjson)) || state.ObjectSize != int64(len(log)) || state.CompactedThrough != chunks[len(chunks)-1].Seq {
					t.Fatalf("compacted %+v; the chunks hold %d bytes of NDJSON, log.ndjson is %d bytes", state, len(ndjson), len(log))
				}
				if bytes.HasPrefix(log, zstdMagic) != anyZstd {
					t.Fatalf("log.ndjson zstd %v, chunks zstd %v", !anyZstd, anyZstd)
				}
				if anyZstd {
					if wantType := "application/zstd"; info.ContentType != wantType && info.ContentType != "" {
						t.Fatalf("log.ndjson is %s, want %s", info.ContentType, wantType)
					}
					// One stream of frames, as a reader that knows nothing
					// of chunks reads it.
					d, err := zstd.NewReader(bytes.NewReader(log))
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(d)
					d.Close()
					if err != nil || !bytes.Equal(got, ndjson) {
						t.Fatalf("log.ndjson decodes to %d bytes (%v), the chunks hold %d", len(got), err, len(ndjson))
					}
					decodeWithCLI(t, log, ndjson)
					if len(log) >= len(ndjson) {
						t.Fatalf("compressed log.ndjson has %d bytes for %d of NDJSON", len(log), len(ndjson))
					}
				} else if !bytes.Equal(log, ndjson) {
					t.Fatal("plain log.ndjson differs from the chunks")
				}
				if err := build.DeleteChunks(ctx, s, ref); err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(br)
				if err != nil {
					t.Fatal(err)
				}
				sameTexts(t, "OpenLog across the deletion", texts(t, append([]byte(first), rest...)), want)
				if got := readRaw(t, s, ref); !bytes.Equal(got, ndjson) {
					t.Fatalf("OpenLog of log.ndjson: %d bytes, the chunks held %d", len(got), len(ndjson))
				}
				sameTexts(t, "Follow of log.ndjson", followTexts(t, s, ref), want)

				// A late line after compaction, then compaction again from
				// the chunks that are left is refused; readers see it all.
				if err := build.WriteSystemLine(ctx, s, ref, "late", slog.New(slog.DiscardHandler)); err != nil {
					t.Fatal(err)
				}
				sameTexts(t, "OpenLog with a late line", texts(t, readRaw(t, s, ref)), append(want, "late"))
				sameTexts(t, "Follow with a late line", followTexts(t, s, ref), append(want, "late"))
			})
		}
	})
}

// countPuts counts the uploads of keys that end in key.
type countPuts struct {
	blob.Store
	key  string
	puts atomic.Int32
}

func (c *countPuts) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	if strings.HasSuffix(key, c.key) {
		c.puts.Add(1)
	}
	return c.Store.Put(ctx, key, r, size, opts)
}

// TestZstdChunksReadWithStandardTools: each chunk the writer stores is a
// zstd stream `zstd -dc` reads to exactly the chunk's NDJSON.
func TestZstdChunksReadWithStandardTools(t *testing.T) {
	s := newMinIO(t)
	ctx := testCtx(t)
	cfg := fastConfig(t)
	cfg.MaxObjectSize = 64 << 10 // some objects of several chunks
	w, err := build.NewLogWriter(ctx, s, "cli", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3000; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: strings.Repeat(fmt.Sprint(i), i%50)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.StoredBytes == 0 || st.StoredBytes >= st.Bytes {
		t.Fatalf("stored %d bytes for %d of NDJSON", st.StoredBytes, st.Bytes)
	}
	chunks, err := build.AllChunks(ctx, s, "cli", 0)
	if err != nil {
		t.Fatal(err)
	}
	var all, stored []byte
	for _, c := range chunks {
		raw, info, err := blob.ReadAll(ctx, s, c.Key, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, zstdMagic) || info.ContentType != "application/zstd" {
			t.Fatalf("chunk %d: %q... as %s, want zstd", c.Seq, raw[:min(8, len(raw))], info.ContentType)
		}
		b, err := build.ReadChunk(ctx, s, "cli", c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		all, stored = append(all, b...), append(stored, raw...)
	}
	// The chunks one after the other: what `mc cat` of each, piped into
	// one `zstd -dc`, reads.
	decodeWithCLI(t, stored, all)
	if got := readRaw(t, s, "cli"); !bytes.Equal(got, all) {
		t.Fatalf("OpenLog: %d bytes, chunks %d", len(got), len(all))
	}
}

// TestCompactRefusesACutFrame: a chunk whose last frame is cut off would
// make every frame after it in log.ndjson unreadable; compaction fails
// and leaves the chunks, and the status, as they were.
func TestCompactRefusesACutFrame(t *testing.T) {
	s := newFS(t)
	ctx := testCtx(t)
	const ref = "cut"
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Completed}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	raw, _, err := blob.ReadAll(ctx, s, build.ChunkKey(ref, 2), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, build.ChunkKey(ref, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, build.ChunkKey(ref, 2), bytes.NewReader(raw[:len(raw)-5]), int64(len(raw)-5), blob.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := build.Compact(ctx, s, ref); err == nil || !strings.Contains(err.Error(), "chunk 2") {
		t.Fatalf("compaction over a cut chunk: %v", err)
	}
	if st, _, _ := build.ReadStatus(ctx, s, ref); st.Log != nil {
		t.Fatalf("status after a failed compaction: %+v", st.Log)
	}
	if _, err := s.Stat(ctx, build.LogKey(ref)); err == nil {
		t.Fatal("a failed compaction left log.ndjson")
	}
}

// TestDeleteChunksOldStatus: a status written before log.ndjson could be
// compressed has no compactedObjectSize; its compactedSize is the plain
// log's size, and DeleteChunks checks against it.
func TestDeleteChunksOldStatus(t *testing.T) {
	s := newFS(t)
	ctx := testCtx(t)
	const ref = "old"
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Completed}, ""); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(t)
	cfg.Compression = build.CompressionNone
	w, err := build.NewLogWriter(ctx, s, ref, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 500; i++ {
		_ = w.Write(build.Record{Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	state, err := build.Compact(ctx, s, ref)
	if err != nil || state.ObjectSize != state.CompactedSize {
		t.Fatalf("plain compaction: %+v %v", state, err)
	}
	if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Log.ObjectSize = 0; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := build.DeleteChunks(ctx, s, ref); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, readLog(t, s, ref), 500)
}
