package build

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRecordJSONMatchesEncodingJSON(t *testing.T) {
	ts := time.Date(2026, 11, 23, 21, 7, 52, 123456789, time.UTC)
	texts := []string{"", "plain", `quote " and \ backslash`, "tab\there", "cr\rbell\a", "ünïcödé ✓ 日本", "\u2028 sep \u2029", "\x00\x1f"}
	for _, text := range texts {
		rec := Record{Build: "42", Stage: "build", Step: "compile", Stream: StreamStdout, Line: 7, Time: ts, Text: text}
		line := rec.AppendJSON(nil)
		if !json.Valid(line) || line[len(line)-1] != '\n' {
			t.Fatalf("%q: invalid JSON line %s", text, line)
		}
		got, err := ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if got != rec {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", text, got, rec)
		}
	}
}

func TestRecordInvalidUTF8IsEscapedNotLost(t *testing.T) {
	rec := Record{Build: "1", Stream: StreamStderr, Line: 1, Time: time.Unix(0, 0), Text: "ok \xff\xfe end \xc3"}
	line := rec.AppendJSON(nil)
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %s", line)
	}
	got, err := ParseRecord(line)
	if err != nil {
		t.Fatal(err)
	}
	if got.Text != `ok \xff\xfe end \xc3` {
		t.Fatalf("text = %q", got.Text)
	}
}

func TestSplitText(t *testing.T) {
	// A multi-byte rune straddles the MaxText boundary: the cut must not
	// split it.
	s := strings.Repeat("a", MaxText-1) + "é" + strings.Repeat("b", MaxText+10)
	parts := splitText(s)
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	if strings.Join(parts, "") != s {
		t.Fatal("parts do not join to the text")
	}
	for i, p := range parts {
		if len(p) > MaxText || !utf8.ValidString(p) {
			t.Fatalf("part %d: %d bytes, valid=%v", i, len(p), utf8.ValidString(p))
		}
	}
	if got := splitText("short"); len(got) != 1 || got[0] != "short" {
		t.Fatalf("short text split: %q", got)
	}
}

func TestKeys(t *testing.T) {
	if got := ChunkKey("42", 7); got != "builds/42/log/0000000007" {
		t.Fatalf("ChunkKey = %s", got)
	}
	if seq, ok := ParseChunkKey("42", "builds/42/log/0000000007"); !ok || seq != 7 {
		t.Fatalf("ParseChunkKey = %d %v", seq, ok)
	}
	for _, bad := range []string{"builds/42/log/7", "builds/4/log/0000000007", "builds/42/log.ndjson"} {
		if _, ok := ParseChunkKey("42", bad); ok {
			t.Fatalf("ParseChunkKey accepted %s", bad)
		}
	}
	if ref, ok := RefOfKey("builds/abc-1/status.json"); !ok || ref != "abc-1" {
		t.Fatalf("RefOfKey = %q %v", ref, ok)
	}
	for _, bad := range []string{"", ".hidden", "a/b", "sp ace", strings.Repeat("x", 129)} {
		if ValidateRef(bad) == nil {
			t.Fatalf("ValidateRef accepted %q", bad)
		}
	}
	// Keys sort in time order.
	if !(ChunkKey("1", 9) < ChunkKey("1", 10)) {
		t.Fatal("chunk keys do not sort by sequence")
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	rec := Record{Build: "42", Stage: "build", Step: "compile", Stream: StreamStdout, Line: 1, Time: time.Now(), Text: strings.Repeat("x", 100)}
	buf := make([]byte, 0, 512)
	b.SetBytes(100)
	for b.Loop() {
		buf = rec.AppendJSON(buf[:0])
	}
}
