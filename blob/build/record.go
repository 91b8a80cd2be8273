package build

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
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
	dst = r.appendHead(dst)
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

// appendHead appends the start of r's JSON line, up to its line number.
func (r *Record) appendHead(dst []byte) []byte {
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
	return append(dst, `,"line":`...)
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
	var p recordParser
	var r Record
	if err := p.parse(line, &r, false); err != nil {
		return Record{}, err
	}
	return r, nil
}

// parseJSON decodes one line with encoding/json: records of another
// shape than AppendJSON's, and every line the fast path does not accept.
func parseJSON(line []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("log record: %w", err)
	}
	return r, nil
}

// maxRecordLine is the longest JSON line a reader accepts: MaxText of text
// can grow up to six-fold when escaped, plus the other fields.
const maxRecordLine = 6*MaxText + 64<<10

// scanBufferSize is a record scanner's first buffer: large enough that a
// read from the store moves a good part of a chunk at once.
const scanBufferSize = 256 << 10

// ScanRecords decodes newline-delimited records from r and calls fn for
// each, in order, until r ends or fn returns an error. fn owns the record
// it gets and may keep it.
func ScanRecords(r io.Reader, fn func(Record) error) error {
	s := NewRecordScanner(r)
	s.own = true
	for s.Scan() {
		if err := fn(s.rec); err != nil {
			return err
		}
	}
	return s.Err()
}

// RecordScanner reads newline-delimited records one at a time, for
// readers that look at each record and keep none (printing or counting a
// log): it lends each record, whose Text may point into the scanner's
// buffer, until the next Scan. It allocates nothing per record for lines
// in the shape AppendJSON writes. Empty lines are skipped.
type RecordScanner struct {
	sc  *bufio.Scanner
	p   recordParser
	rec Record
	n   int // lines read
	err error
	own bool // copy each text (ScanRecords)
}

// NewRecordScanner returns a scanner of the records r holds.
func NewRecordScanner(r io.Reader) *RecordScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, scanBufferSize), maxRecordLine)
	return &RecordScanner{sc: sc}
}

// Scan reads the next record. It returns false at the end of the input or
// at the first error: a line that is not a record, or the reader's.
func (s *RecordScanner) Scan() bool {
	if s.err != nil {
		return false
	}
	for s.sc.Scan() {
		s.n++
		if len(s.sc.Bytes()) == 0 {
			continue
		}
		if err := s.p.parse(s.sc.Bytes(), &s.rec, !s.own); err != nil {
			s.err = fmt.Errorf("line %d: %w", s.n, err)
			return false
		}
		return true
	}
	s.err = s.sc.Err()
	return false
}

// Record is the record Scan read, lent until the next Scan.
func (s *RecordScanner) Record() *Record { return &s.rec }

// AppendJSON appends what Record().AppendJSON appends. When the line read
// is in exactly that form already, as AppendJSON wrote it, it is copied
// instead of encoded again.
func (s *RecordScanner) AppendJSON(dst []byte) []byte {
	if s.p.canonical {
		dst = append(dst, s.sc.Bytes()...)
		return append(dst, '\n')
	}
	return s.rec.AppendJSON(dst)
}

// Err returns the error that ended Scan, nil at the end of the input.
func (s *RecordScanner) Err() error { return s.err }

// recordParser decodes log records. Lines in exactly the shape AppendJSON
// writes (its key order, no whitespace, no null, numbers as AppendJSON
// writes them, the time in UTC) are decoded by a hand-written scanner
// without reflection; anything else goes to encoding/json, so a line
// decodes to the same Record either way (FuzzParseRecord checks this).
// The parser keeps the last build, stage, step and stream, which repeat
// from line to line, and hands out the same strings while they do; and
// the last timestamp's second.
type recordParser struct {
	build, stage, step, stream shortField
	// heads are the last lines decoded, up to their line numbers: a
	// build's log interleaves a few (a step's stdout and stderr, the
	// system's lines). next is the one to replace.
	heads [4]head
	next  int
	// prefixCanonical is set when AppendJSON writes the head of the last
	// line decoded as that line has it.
	prefixCanonical bool
	// canonical is set when the last line decoded is AppendJSON's line of
	// its record, byte for byte (but the newline).
	canonical bool
	// scratch holds an unescaped short field; text an unescaped text.
	scratch, text []byte
	// tsKey is the date and time up to the second of the last timestamp
	// ("2006-01-02T15:04:05"), tsSec that time in Unix seconds.
	tsKey [19]byte
	tsSec int64
	tsOK  bool
}

// shortField is the last value of a short field.
type shortField struct {
	val string
	// plain is set when val came from a JSON string without escapes: then
	// that string is val in quotes, and the next line's bytes can be
	// compared with it before any decoding.
	plain bool
}

// head is the start of a line up to its line number, and the values it
// decodes to.
type head struct {
	prefix                     []byte
	build, stage, step, stream string
	canonical                  bool
}

// parse decodes line into r. With borrow, r.Text may point into line or into
// the parser's buffer: valid until line changes or the next parse.
func (p *recordParser) parse(line []byte, r *Record, borrow bool) error {
	if p.fast(line, r, borrow) {
		return nil
	}
	p.canonical = false
	rec, err := parseJSON(line)
	if err != nil {
		return err
	}
	*r = rec
	return nil
}

// The keys of a record in AppendJSON's order, with what surrounds them.
const (
	keyBuild  = `{"build":`
	keyStage  = `,"stage":`
	keyStep   = `,"step":`
	keyStream = `,"stream":`
	keyLine   = `,"line":`
	keyPart   = `,"part":`
	keyTS     = `,"ts":"`
	keyText   = `","text":`
)

// fast decodes line if it has the shape AppendJSON writes and reports
// whether it did; when it did not, r is left in any state and the caller
// decodes the line with encoding/json instead. It never accepts a line
// that encoding/json would reject or decode differently.
func (p *recordParser) fast(line []byte, r *Record, borrow bool) bool {
	i, ok := p.head(line, r)
	if !ok {
		return false
	}
	canonical := p.prefixCanonical
	if r.Line, i, ok = parseUint(line, i, math.MaxUint64); !ok {
		return false
	}
	r.Part = 0
	if j, ok := skipKey(line, i, keyPart); ok {
		var part uint64
		if part, i, ok = parseUint(line, j, math.MaxInt); !ok {
			return false
		}
		r.Part = int(part)
		canonical = canonical && part != 0
	}
	if i, ok = skipKey(line, i, keyTS); !ok {
		return false
	}
	var tsCanonical bool
	if r.Time, i, tsCanonical, ok = p.time(line, i); !ok {
		return false
	}
	canonical = canonical && tsCanonical
	if i, ok = skipKey(line, i, keyText); !ok {
		return false
	}
	// The text ends the line: `"...."}`. Most texts are printable ASCII
	// without quotes or backslashes, which a few passes over whole words
	// confirm; any other goes through scanString.
	var val []byte
	if n := len(line); n-i >= 3 && line[i] == '"' && line[n-2] == '"' && line[n-1] == '}' &&
		printableASCII(line[i+1:n-2]) && bytes.IndexByte(line[i+1:n-2], '"') < 0 && bytes.IndexByte(line[i+1:n-2], '\\') < 0 {
		val = line[i+1 : n-2] // as AppendJSON writes such a text
	} else {
		canonical = false
		var esc bool
		if val, esc, i, ok = scanString(line, i, p.text[:0]); !ok || i != len(line)-1 || line[i] != '}' {
			return false
		}
		if esc {
			p.text = val // keep the grown buffer
		}
	}
	if borrow {
		r.Text = view(val)
	} else {
		r.Text = string(val)
	}
	p.canonical = canonical
	return true
}

// head decodes build, stage, step and stream, up to the line number, and
// returns the index of the line number. Lines mostly begin with the same
// bytes up to there as one of the last few: then they decode to the same
// values, which the parser kept.
func (p *recordParser) head(line []byte, r *Record) (int, bool) {
	for k := range p.heads {
		h := &p.heads[k]
		if n := len(h.prefix); n > 0 && len(line) > n && string(line[:n]) == string(h.prefix) {
			r.Build, r.Stage, r.Step, r.Stream = h.build, h.stage, h.step, h.stream
			p.prefixCanonical = h.canonical
			return n, true
		}
	}
	i, ok := skipKey(line, 0, keyBuild)
	if !ok {
		return i, false
	}
	if i, ok = p.short(line, i, &p.build); !ok {
		return i, false
	}
	r.Build = p.build.val
	r.Stage, r.Step = "", ""
	if j, ok := skipKey(line, i, keyStage); ok {
		if i, ok = p.short(line, j, &p.stage); !ok {
			return i, false
		}
		r.Stage = p.stage.val
	}
	if j, ok := skipKey(line, i, keyStep); ok {
		if i, ok = p.short(line, j, &p.step); !ok {
			return i, false
		}
		r.Step = p.step.val
	}
	if i, ok = skipKey(line, i, keyStream); !ok {
		return i, false
	}
	if i, ok = p.short(line, i, &p.stream); !ok {
		return i, false
	}
	r.Stream = p.stream.val
	if i, ok = skipKey(line, i, keyLine); !ok {
		return i, false
	}
	h := &p.heads[p.next]
	p.next = (p.next + 1) % len(p.heads)
	h.prefix = append(h.prefix[:0], line[:i]...)
	h.build, h.stage, h.step, h.stream = r.Build, r.Stage, r.Step, r.Stream
	p.scratch = r.appendHead(p.scratch[:0])
	h.canonical = string(p.scratch) == string(h.prefix)
	p.prefixCanonical = h.canonical
	return i, true
}

// skipKey returns the index after key if line has it at i.
func skipKey(line []byte, i int, key string) (int, bool) {
	if len(line)-i < len(key) || string(line[i:i+len(key)]) != key {
		return i, false
	}
	return i + len(key), true
}

// short decodes the string at line[i] into *last, reusing *last when the
// value did not change, and returns the index after it.
func (p *recordParser) short(line []byte, i int, last *shortField) (int, bool) {
	if n := len(last.val); last.plain && len(line)-i >= n+2 && line[i] == '"' && line[i+1+n] == '"' && string(line[i+1:i+1+n]) == last.val {
		// The same as the last line's: its bytes hold no quote, backslash
		// or control character, and are valid UTF-8.
		return i + n + 2, true
	}
	val, esc, i, ok := scanString(line, i, p.scratch[:0])
	if !ok {
		return i, false
	}
	if esc {
		p.scratch = val
	}
	if string(val) != last.val {
		last.val = string(val)
	}
	last.plain = !esc
	return i, true
}

// parseUint decodes the JSON integer at line[i], at most max: digits
// without a leading zero, no sign, fraction or exponent (those end the
// number early, and the caller then finds no key after it).
func parseUint(line []byte, i int, max uint64) (uint64, int, bool) {
	start := i
	var v uint64
	for ; i < len(line); i++ {
		c := line[i]
		if c < '0' || c > '9' {
			break
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, i, false
		}
		v = v*10 + d
	}
	switch {
	case i == start:
		return 0, i, false
	case line[start] == '0' && i-start > 1:
		return 0, i, false // not JSON
	}
	return v, i, true
}

// time decodes the timestamp at line[i] up to its closing quote, in
// exactly the form AppendFormat(RFC3339Nano) gives a UTC time:
// 2006-01-02T15:04:05, then up to nine digits of fraction, then Z.
// encoding/json (time.Time's UnmarshalJSON) accepts more forms, with
// other zones among them; those go to it. canonical reports whether the
// timestamp is as AppendFormat writes its value: without trailing zeros.
func (p *recordParser) time(line []byte, i int) (t time.Time, next int, canonical, ok bool) {
	const secLen = len("2006-01-02T15:04:05")
	if len(line)-i < secLen+2 {
		return time.Time{}, i, false, false
	}
	key := line[i : i+secLen]
	if !p.tsOK || string(key) != string(p.tsKey[:]) {
		sec, ok := parseSecond(key)
		if !ok {
			return time.Time{}, i, false, false
		}
		copy(p.tsKey[:], key)
		p.tsSec, p.tsOK = sec, true
	}
	i += secLen
	nsec := 0
	canonical = true
	if line[i] == '.' {
		i++
		start := i
		for ; i < len(line) && line[i] >= '0' && line[i] <= '9' && i-start < 9; i++ {
			nsec = nsec*10 + int(line[i]-'0')
		}
		n := i - start
		if n == 0 {
			return time.Time{}, i, false, false
		}
		canonical = line[i-1] != '0'
		for ; n < 9; n++ {
			nsec *= 10
		}
	}
	if i >= len(line) || line[i] != 'Z' {
		return time.Time{}, i, false, false
	}
	// The same value (location UTC, no monotonic reading) as time.Date
	// gives, and so as the time package's RFC 3339 parser.
	return time.Unix(p.tsSec, int64(nsec)).UTC(), i + 1, canonical, true
}

// parseSecond decodes "2006-01-02T15:04:05" as Unix seconds, checking
// every field's range as time's RFC 3339 parser does.
func parseSecond(b []byte) (int64, bool) {
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	ok := true
	num := func(b []byte, min, max int) int {
		x := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return min
			}
			x = x*10 + int(c-'0')
		}
		if x < min || x > max {
			ok = false
		}
		return x
	}
	year := num(b[0:4], 0, 9999)
	month := num(b[5:7], 1, 12)
	hour := num(b[11:13], 0, 23)
	minute := num(b[14:16], 0, 59)
	sec := num(b[17:19], 0, 59)
	if !ok {
		return 0, false
	}
	day := num(b[8:10], 1, daysIn(time.Month(month), year))
	if !ok {
		return 0, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC).Unix(), true
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// plain marks the bytes a JSON string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the index of the first byte from b[i] on that is not
// plain, or len(b). It looks at eight bytes at a time: a word with no
// quote, backslash, control character or byte from 0x80 goes in one step.
func skipPlain(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(b)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ ones*'"'
		bs := x ^ ones*'\\'
		// The high bit of a byte is set where the byte is below 0x20, is
		// a quote or a backslash (zero after the XOR), or is 0x80 or
		// above. A borrow can set bits above the first such byte, never
		// below it, so the lowest bit set is the first byte to stop at.
		m := ((x-ones*0x20)&^x | (q-ones)&^q | (bs-ones)&^bs | x) & highs
		if m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && plain[b[i]] {
		i++
	}
	return i
}

// printableASCII reports whether every byte of b is from 0x20 to 0x7f.
func printableASCII(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// A byte below 0x20 sets the high bit of its difference (or, by a
	// borrow, of the next one's), a byte from 0x80 its own high bit.
	var m uint64
	i := 0
	for ; len(b)-i >= 16; i += 16 {
		x := binary.LittleEndian.Uint64(b[i:])
		y := binary.LittleEndian.Uint64(b[i+8:])
		m |= x | (x - ones*0x20) | y | (y - ones*0x20)
	}
	for ; i < len(b); i++ {
		if b[i] < 0x20 || b[i] >= 0x80 {
			return false
		}
	}
	return m&highs == 0
}

// scanString decodes the JSON string at line[i] (its opening quote) as
// encoding/json does and returns its bytes, whether it had escapes, and
// the index after its closing quote. Without escapes the bytes are a
// slice of line; with them, buf with the unescaped string appended. It
// fails on anything encoding/json rejects, and on bytes that are not
// UTF-8 (encoding/json replaces those by U+FFFD; AppendJSON never writes
// them).
func scanString(line []byte, i int, buf []byte) ([]byte, bool, int, bool) {
	if i >= len(line) || line[i] != '"' {
		return nil, false, i, false
	}
	i++
	start := i
	for {
		i = skipPlain(line, i)
		if i >= len(line) {
			return nil, false, i, false
		}
		c := line[i]
		switch {
		case c == '"':
			return line[start:i], false, i + 1, true
		case c == '\\':
			return unescape(line, start, i, buf)
		case c < utf8.RuneSelf: // a control character
			return nil, false, i, false
		}
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, false, i, false
		}
		i += size
	}
}

// unescape goes on with scanString's string from the escape at line[i],
// start being where the string's bytes begin.
func unescape(line []byte, start, i int, buf []byte) ([]byte, bool, int, bool) {
	buf = append(buf, line[start:i]...)
	for {
		start = i
		i = skipPlain(line, i)
		buf = append(buf, line[start:i]...)
		if i >= len(line) {
			return nil, true, i, false
		}
		c := line[i]
		switch {
		case c == '"':
			return buf, true, i + 1, true
		case c == '\\':
		case c < utf8.RuneSelf:
			return nil, true, i, false
		default:
			r, size := utf8.DecodeRune(line[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, true, i, false
			}
			buf = append(buf, line[i:i+size]...)
			i += size
			continue
		}
		if i+1 >= len(line) {
			return nil, true, i, false
		}
		switch line[i+1] {
		case '"', '\\', '/':
			buf = append(buf, line[i+1])
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			// As encoding/json: a surrogate pair is one rune; a surrogate
			// on its own is U+FFFD, and what follows it is read afresh.
			r := hex4(line, i)
			if r < 0 {
				return nil, true, i, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if dec := utf16.DecodeRune(r, hex4(line, i)); dec != unicode.ReplacementChar {
					buf = utf8.AppendRune(buf, dec)
					i += 6
					continue
				}
				r = unicode.ReplacementChar
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			return nil, true, i, false
		}
		i += 2
	}
}

// hex4 decodes the escape \uXXXX at line[i], or returns -1.
func hex4(line []byte, i int) rune {
	if len(line)-i < 6 || line[i] != '\\' || line[i+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range line[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
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
