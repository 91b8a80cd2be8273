package build

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Streams a record can come from.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	// StreamSystem marks lines wharfjobs itself writes into a build's log
	// (clone progress, a step's start and end, why a build failed).
	StreamSystem = "system"
)

// MaxText is the longest text one record holds. Longer lines are split into
// records with the same Line and increasing Part, never dropped.
const MaxText = 1 << 20

// Record is one log line. In a chunk it is one line of JSON:
//
//	{"build":"42","stage":"build","step":"compile","stream":"stdout","line":7,"ts":"2026-11-23T21:07:52.123456789Z","text":"ok"}
type Record struct {
	Build  string `json:"build"`
	Stage  string `json:"stage,omitempty"`
	Step   string `json:"step,omitempty"`
	Stream string `json:"stream"`
	// Line counts the step's lines from 1, stdout and stderr together.
	Line uint64 `json:"line"`
	// Part numbers the pieces of a line longer than MaxText from 1; it is 0
	// for a line that fit in one record.
	Part int       `json:"part,omitempty"`
	Time time.Time `json:"ts"`
	// Text is the line without its newline. Bytes that are not valid UTF-8
	// are written as the four characters \xHH, so a chunk is always valid
	// JSON and no byte of output is silently replaced.
	Text string `json:"text"`
}

// Source names where a line came from, for prefixes in human-readable
// output: "stage/step", or "wharfjobs" for the lines wharfjobs writes.
func (r *Record) Source() string {
	if r.Stage == "" && r.Step == "" {
		return "wharfjobs"
	}
	return r.Stage + "/" + r.Step
}

// AppendJSON appends the record's JSON line (with the trailing newline) to
// dst. It is the hot path of log shipping and avoids reflection.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"build":`...)
	dst = appendString(dst, r.Build)
	if r.Stage != "" {
		dst = append(dst, `,"stage":`...)
		dst = appendString(dst, r.Stage)
	}
	if r.Step != "" {
		dst = append(dst, `,"step":`...)
		dst = appendString(dst, r.Step)
	}
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, r.Stream)
	dst = append(dst, `,"line":`...)
	dst = strconv.AppendUint(dst, r.Line, 10)
	if r.Part != 0 {
		dst = append(dst, `,"part":`...)
		dst = strconv.AppendInt(dst, int64(r.Part), 10)
	}
	dst = append(dst, `,"ts":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","text":`...)
	dst = appendString(dst, r.Text)
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping invalid UTF-8 bytes as
// the text \xHH.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ParseRecord decodes one JSON line.
func ParseRecord(line []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("log record: %w", err)
	}
	return r, nil
}

// maxRecordLine is the longest JSON line a reader accepts: MaxText of text
// can grow up to six-fold when escaped, plus the other fields.
const maxRecordLine = 6*MaxText + 64<<10

// ScanRecords decodes newline-delimited records from r and calls fn for
// each, in order, until r ends or fn returns an error.
func ScanRecords(r io.Reader, fn func(Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRecordLine)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		rec, err := ParseRecord(sc.Bytes())
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return sc.Err()
}

// splitText cuts text into pieces of at most MaxText bytes, at UTF-8
// boundaries where possible.
func splitText(text string) []string {
	if len(text) <= MaxText {
		return []string{text}
	}
	var parts []string
	for len(text) > MaxText {
		cut := MaxText
		for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(text[cut]); i++ {
			cut--
		}
		if cut == 0 {
			cut = MaxText
		}
		parts = append(parts, text[:cut])
		text = text[cut:]
	}
	return append(parts, text)
}
