package build_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// replaceMask is a build.Masker for one secret: the simplest correct one,
// to test Lines apart from the worker's masker.
type replaceMask string

func (m replaceMask) Mask(s string) string { return strings.ReplaceAll(s, string(m), "*****") }

func (m replaceMask) MaskPrefix(dst []byte, src string, end bool) ([]byte, int) {
	// A match may start only where the whole secret is in src.
	limit := len(src)
	if !end {
		limit = max(0, len(src)-len(m)+1)
	}
	pos := 0
	for {
		i := strings.Index(src[pos:], string(m))
		if i < 0 || pos+i >= limit {
			done := max(pos, limit)
			return append(dst, src[pos:done]...), done
		}
		dst = append(append(dst, src[pos:pos+i]...), "*****"...)
		pos += i + len(m)
	}
}

// writeLines writes each text to a new Lines of a new build in pieces
// whose sizes come from sizes (cycled), and returns the records.
func writeLines(t *testing.T, mask build.Masker, sizes []int, texts ...string) []build.Record {
	t.Helper()
	s := newFS(t)
	ctx := testCtx(t)
	w, err := build.NewLogWriter(ctx, s, "12", fastConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	out := w.Lines("test", "unit", build.StreamStdout, new(atomic.Uint64))
	out.Mask = mask
	k := 0
	for _, text := range texts {
		for len(text) > 0 {
			n := min(sizes[k%len(sizes)], len(text))
			k++
			if _, err := io.WriteString(out, text[:n]); err != nil {
				t.Fatal(err)
			}
			text = text[n:]
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return readLog(t, s, "12")
}

// joinLines puts parts back together: one string per line number, and
// checks that parts are numbered 1, 2, ... and hold at most MaxText.
func joinLines(t *testing.T, recs []build.Record) []string {
	t.Helper()
	var out []string
	var last build.Record
	for i, r := range recs {
		if len(r.Text) > build.MaxText {
			t.Fatalf("record %d has %d bytes", i, len(r.Text))
		}
		switch {
		case i > 0 && r.Line == last.Line:
			if last.Part == 0 || r.Part != last.Part+1 {
				t.Fatalf("line %d: part %d after part %d", r.Line, r.Part, last.Part)
			}
			out[len(out)-1] += r.Text
		case r.Line != uint64(len(out)+1) || r.Part > 1:
			t.Fatalf("record %d is line %d part %d after line %d", i, r.Line, r.Part, last.Line)
		default:
			out = append(out, r.Text)
		}
		last = r
	}
	return out
}

// TestLinesMasksAcrossParts puts a secret across the boundary of the
// first part of a long line, at either end of it and between, written in
// pieces of several sizes: a masker that sees one part at a time would let
// it through in two halves.
func TestLinesMasksAcrossParts(t *testing.T) {
	const secret = "hunter2-is-my-password"
	for _, sizes := range [][]int{{4096}, {build.MaxText + 7}, {1, 3, 5000, 17}} {
		for _, off := range []int{-len(secret), -len(secret) + 1, -12, -1, 0, 1} {
			t.Run(fmt.Sprintf("writes%v/at%+d", sizes, off), func(t *testing.T) {
				line := strings.Repeat("x", build.MaxText+off) + secret + strings.Repeat("y", 10_000)
				got := joinLines(t, writeLines(t, replaceMask(secret), sizes, line+"\n", "after\n"))
				want := []string{strings.Repeat("x", build.MaxText+off) + "*****" + strings.Repeat("y", 10_000), "after"}
				if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
					t.Fatalf("got %d lines, secret present: %v; want the line masked", len(got), strings.Contains(strings.Join(got, ""), secret))
				}
			})
		}
	}
}

// TestLinesMaskedTextLongerThanMaxText: masking a short secret makes a
// line longer; the record parts must still hold at most MaxText and be
// numbered in order, for a line that fits a record unmasked and for one
// that did not.
func TestLinesMaskedTextLongerThanMaxText(t *testing.T) {
	short := strings.Repeat("ab", build.MaxText/2)
	long := strings.Repeat("ab", build.MaxText)
	got := joinLines(t, writeLines(t, replaceMask("ab"), []int{4096}, short+"\n", long+"\n", "end ab"))
	want := []string{strings.Repeat("*****", build.MaxText/2), strings.Repeat("*****", build.MaxText), "end *****"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("got %d lines of %d bytes; want 3 fully masked", len(got), len(strings.Join(got, "")))
	}
}

// TestLinesMaskedStreamRandom writes random text holding secrets, with
// and without newlines, in random pieces and compares with masking each
// line whole.
func TestLinesMaskedStreamRandom(t *testing.T) {
	const secret = "s3cr3t"
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for b.Len() < 3*build.MaxText {
		switch r.IntN(6) {
		case 0:
			b.WriteString(secret)
		case 1:
			b.WriteString("\n")
		case 2:
			b.WriteString("s3cr") // a prefix, not a match
		default:
			b.WriteString(strings.Repeat("z", r.IntN(200_000)))
		}
	}
	text := b.String() + "end"
	sizes := make([]int, 100)
	for i := range sizes {
		sizes[i] = 1 + r.IntN(300_000)
	}
	got := joinLines(t, writeLines(t, replaceMask(secret), sizes, text))
	want := strings.Split(strings.ReplaceAll(text, secret, "*****"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("masked stream differs from masking each line whole (%d lines, want %d)", len(got), len(want))
	}
}

// TestChunksHoldWholeRecords: the chunk writer never cuts a record, so a
// secret masked in a record cannot reappear split across two chunks.
func TestChunksHoldWholeRecords(t *testing.T) {
	s := newFS(t)
	ctx := testCtx(t)
	w, err := build.NewLogWriter(ctx, s, "13", fastConfig(t)) // 4 KiB chunks
	if err != nil {
		t.Fatal(err)
	}
	out := w.Lines("test", "unit", build.StreamStdout, nil)
	out.Mask = replaceMask("hunter2")
	for i := range 2000 {
		fmt.Fprintf(out, "line %d with hunter2 %s\n", i, strings.Repeat("p", i%300))
	}
	_ = out.Close()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	chunks, err := build.AllChunks(ctx, s, "13", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 10 {
		t.Fatalf("%d chunks: too few to test chunk boundaries", len(chunks))
	}
	n := 0
	for _, c := range chunks {
		b, err := build.ReadChunk(ctx, s, "13", c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "hunter2") || len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("chunk %d: a secret or a cut record", c.Seq)
		}
		if err := build.ScanRecords(strings.NewReader(string(b)), func(build.Record) error { n++; return nil }); err != nil {
			t.Fatalf("chunk %d: %v", c.Seq, err)
		}
	}
	if n != 2000 {
		t.Fatalf("%d records in the chunks, want 2000", n)
	}
}
