package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// parseSeeds are lines for FuzzParseRecord's corpus: records as
// AppendJSON writes them, and lines the fast path must leave to
// encoding/json (other shapes, escapes AppendJSON never writes, invalid
// JSON).
var parseSeeds = []string{
	`{"build":"42","stage":"build","step":"compile","stream":"stdout","line":7,"ts":"2026-11-23T21:07:52.123456789Z","text":"ok"}`,
	`{"build":"42","stream":"system","line":1,"ts":"2026-11-23T21:07:52Z","text":""}`,
	`{"build":"42","stage":"build","step":"compile","stream":"stdout","line":7,"part":3,"ts":"2026-11-23T21:07:52.1Z","text":"x"}`,
	`{"build":"","stage":"","step":"","stream":"","line":0,"part":0,"ts":"0000-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stderr","line":18446744073709551615,"part":9223372036854775807,"ts":"9999-12-31T23:59:59.999999999Z","text":"max"}`,
	// Escapes AppendJSON writes.
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"q\" b\\ n\n r\r t\t \u001b[31m \u0000 \u2028\u2029 \\xff"}`,
	`{"build":"\"","stage":"\\","step":"\t","stream":"\u0001","line":1,"ts":"2026-01-01T00:00:00Z","text":"ünïcödé ✓ 日本 😀"}`,
	// Escapes it does not write, still JSON.
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"\/ \b \f \u00E9 \u00e9 \uD83D\uDE00 \ud83d\ude00"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"lone high \ud800 end"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"lone low \udc00 end"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"high high low \ud800\ud800\udc00"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"high then escape \ud800\n"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"high at end \ud800"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"short \u12"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"bad \x escape"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"bad hex \u00g0"}`,
	// Raw bytes: invalid UTF-8 (encoding/json makes it U+FFFD), control
	// characters (not JSON), U+2028 unescaped (JSON).
	"{\"build\":\"1\",\"stream\":\"stdout\",\"line\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"text\":\"raw \xff\xfe \xc3\"}",
	"{\"build\":\"1\",\"stream\":\"stdout\",\"line\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"text\":\"surrogate in UTF-8 \xed\xa0\x80\"}",
	"{\"build\":\"1\",\"stream\":\"stdout\",\"line\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"text\":\"tab\tinside\"}",
	"{\"build\":\"1\",\"stream\":\"stdout\",\"line\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"text\":\"\u2028 raw\"}",
	// Numbers.
	`{"build":"1","stream":"stdout","line":07,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":18446744073709551616,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1.0,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1e3,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":-1,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"part":-2,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"part":9223372036854775808,"ts":"2026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":,"ts":"2026-01-01T00:00:00Z","text":""}`,
	// Times.
	`{"build":"1","stream":"stdout","line":1,"ts":"2024-02-29T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2023-02-29T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"1900-02-29T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2000-02-29T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-04-31T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-13-01T12:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T24:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T23:59:60Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00.1234567891Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00.Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00,5Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01t00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00+02:00","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00.5-07:30","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"+026-01-01T00:00:00Z","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00","text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":null,"text":""}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026\u002d01-01T00:00:00Z","text":""}`,
	// Other shapes.
	`{"build":"1","stream":"stdout","line":1,"text":"no ts"}`,
	`{"stream":"stdout","build":"1","line":1,"ts":"2026-01-01T00:00:00Z","text":"order"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"extra","x":1}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"dup","text":"dup2"}`,
	`{"Build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"case"}`,
	`{"build":null,"stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"null"}`,
	`{"build":1,"stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"number"}`,
	`{ "build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"space"}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"trailing"} `,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"garbage"}x`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"unterminated}`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"no brace"`,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"two"}{"build":"2"}`,
	`{"build":"1"}`,
	`{}`,
	`null`,
	`[]`,
	``,
	`{"build":"1","stream":"stdout","line":1,"ts":"2026-01-01T00:00:00Z","text":"x"}` + "\n",
}

// checkParse fails t when the fast path accepts line and encoding/json
// rejects it or decodes another record. p may hold caches from earlier
// lines.
func checkParse(t *testing.T, p *recordParser, line []byte) {
	t.Helper()
	want, wantErr := parseJSON(line)
	var got Record
	if !p.fast(line, &got, false) {
		return
	}
	if wantErr != nil {
		t.Fatalf("fast path accepted %q; encoding/json: %v", line, wantErr)
	}
	if got != want {
		t.Fatalf("%q:\nfast path    %#v\nencoding/json %#v", line, got, want)
	}
	if enc := got.AppendJSON(nil); p.canonical && string(enc[:len(enc)-1]) != string(line) {
		t.Fatalf("%q taken as AppendJSON's line; it writes %q", line, enc)
	}
	// Borrowed text, and the parser's caches warm: the same again.
	var again Record
	if !p.fast(line, &again, true) || again != want {
		t.Fatalf("%q: second (borrowed) parse %#v, want %#v", line, again, want)
	}
	// What ParseRecord and ScanRecords give: the fast path's record, or
	// encoding/json's answer.
	rec, err := ParseRecord(line)
	if err != nil || rec != want {
		t.Fatalf("ParseRecord(%q) = %#v, %v", line, rec, err)
	}
}

// FuzzParseRecord: for any line, the fast path either defers or decodes
// exactly what encoding/json decodes. The seeds run as a normal test.
func FuzzParseRecord(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkParse(t, new(recordParser), line)
		// A parser whose caches hold other records' values: more heads
		// than it keeps.
		p := new(recordParser)
		for _, warm := range []int{0, 1, 2, 5, 6, 3} {
			var r Record
			if !p.fast([]byte(parseSeeds[warm]), &r, false) {
				t.Fatalf("fast path rejected seed %d", warm)
			}
		}
		checkParse(t, p, line)
	})
}

// FuzzParseRecordRoundTrip: every record AppendJSON writes takes the fast
// path and decodes as encoding/json decodes it.
func FuzzParseRecordRoundTrip(f *testing.F) {
	f.Add("42", "build", "compile", "stdout", uint64(7), 0, int64(1795460872), int64(123456789), "ok")
	f.Add("1", "", "", "system", uint64(1), 2, int64(0), int64(0), "")
	f.Add("x", "s\"", "\\t", "\n", uint64(math.MaxUint64), math.MaxInt, int64(-62135596800), int64(999999999), "\xff\xfe é \u2028 \x1b[0m \x00 😀")
	f.Add("b", "st", "sp", "stderr", uint64(3), 1, int64(253402300799), int64(100), "\xed\xa0\x80 is a surrogate in UTF-8")
	f.Fuzz(func(t *testing.T, b, stage, step, stream string, line uint64, part int, sec, nsec int64, text string) {
		ts := time.Unix(sec, nsec).UTC()
		if part < 0 || ts.Year() < 0 || ts.Year() > 9999 {
			t.Skip("AppendJSON's output for these is not a record's shape")
		}
		rec := Record{Build: b, Stage: stage, Step: step, Stream: stream, Line: line, Part: part, Time: ts, Text: text}
		js := rec.AppendJSON(nil)
		js = js[:len(js)-1]
		want, err := parseJSON(js)
		if err != nil {
			t.Fatalf("encoding/json rejects AppendJSON's %q: %v", js, err)
		}
		var p recordParser
		var got Record
		if !p.fast(js, &got, false) {
			t.Fatalf("fast path deferred AppendJSON's %q", js)
		}
		if got != want {
			t.Fatalf("%q:\nfast path    %#v\nencoding/json %#v", js, got, want)
		}
		if enc := got.AppendJSON(nil); p.canonical && string(enc[:len(enc)-1]) != string(js) {
			t.Fatalf("%q taken as AppendJSON's line; it writes %q", js, enc)
		}
	})
}

// TestParseRecordFastPathTaken: the lines AppendJSON writes do not fall
// back to encoding/json, or the speed is gone without a test failing.
func TestParseRecordFastPathTaken(t *testing.T) {
	ts := time.Date(2026, 11, 23, 21, 7, 52, 123456789, time.UTC)
	for i, rec := range []Record{
		{Build: "42", Stage: "build", Step: "compile", Stream: StreamStdout, Line: 7, Time: ts, Text: "ok"},
		{Build: "42", Stream: StreamSystem, Line: 1, Part: 3, Time: ts.Truncate(time.Second), Text: "step build/compile started"},
		{Build: "42", Stage: "build", Step: "compile", Stream: StreamStderr, Line: 8, Part: 2, Time: ts, Text: "\x1b[31m\"err\"\t\\ \xff \u2028 日本"},
	} {
		line := rec.AppendJSON(nil)
		var p recordParser
		var got Record
		if !p.fast(line[:len(line)-1], &got, false) {
			t.Fatalf("fast path deferred %q", line)
		}
		// A plain text: RecordScanner.AppendJSON copies the line.
		if p.canonical != (i < 2) {
			t.Errorf("%q: canonical %v", line, p.canonical)
		}
		want := rec
		want.Text = strings.ReplaceAll(want.Text, "\xff", `\xff`)
		if got != want {
			t.Fatalf("got %#v\nwant %#v", got, want)
		}
	}
}

// TestScanRecordsSameAsEncodingJSON: a log mixing AppendJSON's lines and
// foreign ones decodes as encoding/json decodes each line, read a byte at
// a time too, and a bad line is reported with its number as before.
func TestScanRecordsSameAsEncodingJSON(t *testing.T) {
	var log bytes.Buffer
	var want []Record
	ts := time.Date(2026, 11, 23, 21, 7, 52, 0, time.UTC)
	for i := range 300 {
		rec := Record{Build: "42", Stage: "build", Step: "compile", Stream: StreamStdout, Line: uint64(i + 1), Time: ts.Add(time.Duration(i) * 7 * time.Millisecond), Text: strings.Repeat("é\"x", i%7)}
		if i%50 == 0 {
			rec.Stage, rec.Step, rec.Stream = "", "", StreamSystem
		}
		log.Write(rec.AppendJSON(nil))
		want = append(want, rec)
		if i%40 == 0 {
			// Another shape (key order, spaces, a zone): encoding/json's.
			foreign := `{"text": "foreign \u00e9", "line": 3, "stream": "stdout", "build": "42", "ts": "2026-11-23T22:07:52+01:00"}`
			log.WriteString(foreign + "\n\n")
			r, err := parseJSON([]byte(foreign))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, r)
		}
	}
	for _, name := range []string{"whole", "one byte at a time"} {
		var r io.Reader = bytes.NewReader(log.Bytes())
		if name != "whole" {
			r = iotest.OneByteReader(r)
		}
		var got []Record
		if err := ScanRecords(r, func(rec Record) error { got = append(got, rec); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: record %d:\n got %#v\nwant %#v", name, i, got[i], want[i])
			}
			want, _ := json.Marshal(want[i])
			if g, _ := json.Marshal(got[i]); !bytes.Equal(g, want) {
				t.Fatalf("%s: record %d marshals differently", name, i)
			}
		}
	}
	// RecordScanner: the same values while they are lent, and
	// AppendJSON as the record's.
	i := 0
	sc := NewRecordScanner(bytes.NewReader(log.Bytes()))
	for sc.Scan() {
		if *sc.Record() != want[i] {
			t.Fatalf("lent record %d:\n got %#v\nwant %#v", i, *sc.Record(), want[i])
		}
		if got, want := sc.AppendJSON([]byte("x")), want[i].AppendJSON([]byte("x")); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON %d: %q, want %q", i, got, want)
		}
		i++
	}
	if sc.Err() != nil || i != len(want) {
		t.Fatalf("RecordScanner: %d records, %v", i, sc.Err())
	}
	bad := append(bytes.Clone(log.Bytes()[:bytes.IndexByte(log.Bytes(), '\n')+1]), `{"build":"42","line":"seven"}`+"\n"...)
	sc = NewRecordScanner(bytes.NewReader(bad))
	for sc.Scan() {
	}
	if err := sc.Err(); err == nil || !strings.HasPrefix(err.Error(), "line 2: log record: ") || sc.Scan() {
		t.Fatalf("RecordScanner, bad line: %v", err)
	}
	err := ScanRecords(bytes.NewReader(bad), func(Record) error { return nil })
	var typeErr *json.UnmarshalTypeError
	if err == nil || !strings.HasPrefix(err.Error(), "line 2: log record: ") || !errors.As(err, &typeErr) {
		t.Fatalf("bad line: %v", err)
	}
}

// TestScanRecordsKeptRecordsStayIntact: records ScanRecords hands out are
// the caller's: reading further lines does not change them.
func TestScanRecordsKeptRecordsStayIntact(t *testing.T) {
	var log bytes.Buffer
	for i := range 5000 {
		rec := Record{Build: "1", Stage: "s", Step: "t", Stream: StreamStdout, Line: uint64(i), Time: time.Unix(int64(i), 0).UTC(), Text: strings.Repeat(string(rune('a'+i%26)), 100) + "\\"}
		log.Write(rec.AppendJSON(nil))
	}
	var kept []Record
	if err := ScanRecords(bytes.NewReader(log.Bytes()), func(r Record) error { kept = append(kept, r); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, r := range kept {
		if want := strings.Repeat(string(rune('a'+i%26)), 100) + "\\"; r.Text != want || r.Line != uint64(i) {
			t.Fatalf("record %d changed: %q", i, r.Text)
		}
	}
}

func BenchmarkParseRecord(b *testing.B) {
	rec := Record{Build: "42", Stage: "build", Step: "compile", Stream: StreamStdout, Line: 1, Time: time.Now(), Text: strings.Repeat("x", 100)}
	line := rec.AppendJSON(nil)
	line = line[:len(line)-1]
	b.Run("fast", func(b *testing.B) {
		var p recordParser
		var r Record
		b.SetBytes(100)
		for b.Loop() {
			if !p.fast(line, &r, true) {
				b.Fatal("deferred")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(100)
		for b.Loop() {
			if _, err := parseJSON(line); err != nil {
				b.Fatal(err)
			}
		}
	})
}
