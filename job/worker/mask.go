package worker

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	yaml "go.yaml.in/yaml/v3"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
)

// maskedText replaces a secret in the log.
const maskedText = "*****"

// minFragment is the shortest line of a multi-line secret that is masked
// on its own. Each log record is one line, so a multi-line secret printed
// as it is never appears whole in one record and its lines must be masked
// one by one; but lines such as "}" or "==" occur everywhere in logs, and
// masking every occurrence of them would shred the log while hiding next
// to nothing of the secret.
const minFragment = 4

// masker hides secret values in log text: every occurrence of one of its
// patterns becomes maskedText. It scans left to right and, where several
// patterns start at the same byte, takes the longest, as strings.Replacer
// does with patterns given longest first; so text masked in pieces (see
// MaskPrefix) comes out exactly as when masked whole. A nil *masker masks
// nothing.
type masker struct {
	pats    []string // longest first, distinct, none empty
	longest int
	// filter tells, in one pass over a text, that it holds none of pats
	// (most log lines): Mask then returns at once.
	filter prefilter
}

var _ build.Masker = (*masker)(nil)

// newMasker returns a masker for the given secret values (empty ones are
// ignored). Besides each value it hides the forms a value is commonly
// printed in: base64 (standard and URL alphabets, padded and not), URL
// encoded (query and path escaping) and Go/JSON quoted (%q in error
// messages, JSON documents), and for a multi-line value each of its lines.
func newMasker(secrets []string) *masker {
	set := map[string]bool{}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for i, v := range encodings(s) {
			// The value itself is masked however short; its encoded
			// forms only when they are no trivial fragment either (the
			// base64 of "ab" is "YWI").
			if i == 0 || len(v) >= minFragment {
				set[v] = true
			}
		}
		if !strings.ContainsAny(s, "\r\n") {
			continue
		}
		// Log lines lose their "\r" (build.Lines trims it), so the lines of
		// a secret are compared without it too. Only the raw lines: the
		// encoded forms of a multi-line secret are single lines and are
		// masked whole above.
		for line := range strings.Lines(s) {
			line = strings.TrimRight(line, "\r\n")
			if len(line) >= minFragment {
				set[line] = true
			}
		}
	}
	if len(set) == 0 {
		return nil
	}
	m := &masker{pats: make([]string, 0, len(set))}
	for p := range set {
		m.pats = append(m.pats, p)
	}
	sort.Slice(m.pats, func(i, j int) bool {
		if len(m.pats[i]) != len(m.pats[j]) {
			return len(m.pats[i]) > len(m.pats[j])
		}
		return m.pats[i] < m.pats[j]
	})
	m.longest = len(m.pats[0])
	m.filter = newPrefilter(m.pats)
	return m
}

// encodings is s, first, and the encoded forms of it a build may print.
func encodings(s string) []string {
	b := []byte(s)
	quoted := strconv.Quote(s)
	return []string{
		s,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(s),
		url.PathEscape(s),
		quoted[1 : len(quoted)-1],
	}
}

// Mask returns s with every secret in it replaced. When s holds none it
// returns s itself and allocates nothing: this runs for every log line.
func (m *masker) Mask(s string) string {
	if m == nil || !m.filter.mayContain(s) || !m.contains(s) {
		return s
	}
	b, _ := m.MaskPrefix(make([]byte, 0, len(s)+len(maskedText)), s, true)
	// b is new and nothing else refers to it: no need to copy it.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (m *masker) contains(s string) bool {
	for _, p := range m.pats {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// filterMin is the shortest pattern the prefilter's window covers;
// shorter ones (raw secret values of 1-3 bytes) are searched for apart.
const filterMin = minFragment

// filterMax caps the prefilter's window, so shifts fit a byte.
const filterMax = 64

// prefilter finds out whether a text can hold one of a set of patterns in
// one pass over it, most of it skipped: checking the patterns one by one
// (strings.Contains) costs a pass over the line per pattern, and a
// build's secrets with their encoded forms are a dozen patterns or more.
//
// It is Wu and Manber's multi-pattern search on the patterns' heads, their
// first w bytes, w the length of the shortest pattern (at most filterMax):
// a text that holds a pattern holds its head. A window of w bytes slides
// over the text; the two bytes it ends with say how far it may move
// without passing over a head: shift[block] is the least distance from
// where that block ends in a head to the head's end, or w-1 where it is
// in none. Where no shift is allowed the window is compared with the
// heads. Blocks are hashed into a small table; a collision only makes a
// shift shorter.
type prefilter struct {
	w     int
	shift *[1 << filterBits]uint8
	heads []string // distinct
	short []string // the patterns under filterMin bytes
}

const filterBits = 12

func blockHash(a, b byte) uint32 { return (uint32(a)<<8 | uint32(b)) * 0x9E3779B1 >> (32 - filterBits) }

func newPrefilter(pats []string) prefilter {
	var f prefilter
	for _, p := range pats {
		switch {
		case len(p) < filterMin:
			f.short = append(f.short, p)
		case f.w == 0 || len(p) < f.w:
			f.w = len(p)
		}
	}
	if f.w == 0 {
		return f
	}
	f.w = min(f.w, filterMax)
	f.shift = new([1 << filterBits]uint8)
	for i := range f.shift {
		f.shift[i] = uint8(f.w - 1)
	}
	seen := map[string]bool{}
	for _, p := range pats {
		if len(p) < filterMin || seen[p[:f.w]] {
			continue
		}
		h := p[:f.w]
		seen[h] = true
		f.heads = append(f.heads, h)
		// The block ending at h[j] is w-1-j bytes from the head's end.
		for j := 1; j < f.w; j++ {
			b := blockHash(h[j-1], h[j])
			f.shift[b] = min(f.shift[b], uint8(f.w-1-j))
		}
	}
	return f
}

// mayContain reports whether s may hold one of the patterns; false means
// it holds none.
func (f *prefilter) mayContain(s string) bool {
	for _, p := range f.short {
		if strings.Contains(s, p) {
			return true
		}
	}
	if f.w == 0 {
		return false
	}
	// pos is where the window ends. It never passes the end of a head in
	// s: from a block outside the head's place the shift is at most
	// w-1, which reaches the head's end at most; from a block inside it,
	// at most the distance to its end.
	for pos := f.w - 1; pos < len(s); {
		if sh := f.shift[blockHash(s[pos-1], s[pos])]; sh > 0 {
			pos += int(sh)
			continue
		}
		win := s[pos+1-f.w : pos+1]
		for _, h := range f.heads {
			if h[0] == win[0] && win == h {
				return true
			}
		}
		pos++
	}
	return false
}

// MaskPrefix implements build.Masker. Unless end, it holds back the text
// in which a secret could still begin: a match is taken only when every
// pattern starting at or before it lies wholly within src, and plain text
// is passed on only up to len(src)-longest, after which a secret could
// start that more text would complete. What it holds back is therefore
// shorter than the longest pattern.
func (m *masker) MaskPrefix(dst []byte, src string, end bool) ([]byte, int) {
	if m == nil {
		return append(dst, src...), len(src)
	}
	limit := len(src) // matches must start before limit
	if !end {
		limit = len(src) - m.longest + 1
		if limit <= 0 {
			return dst, 0
		}
	}
	// next[i] is where pats[i] next occurs at or after pos, or -1.
	var stack [32]int
	next := stack[:0]
	if len(m.pats) > len(stack) {
		next = make([]int, 0, len(m.pats))
	}
	for _, p := range m.pats {
		next = append(next, strings.Index(src, p))
	}
	pos := 0
	for {
		best := -1
		for i, at := range next {
			// Strictly less: of patterns at the same byte the first, the
			// longest, wins.
			if at >= 0 && (best < 0 || at < next[best]) {
				best = i
			}
		}
		if best < 0 || next[best] >= limit {
			break
		}
		start := next[best]
		dst = append(dst, src[pos:start]...)
		dst = append(dst, maskedText...)
		pos = start + len(m.pats[best])
		for i, at := range next {
			if at >= 0 && at < pos {
				if j := strings.Index(src[pos:], m.pats[i]); j >= 0 {
					next[i] = pos + j
				} else {
					next[i] = -1
				}
			}
		}
	}
	// No match starts in [pos, limit): that text is final as it is.
	done := max(pos, limit)
	return append(dst, src[pos:done]...), done
}

// liveMask is the build's current masker as log writers see it: it starts
// with the git token and setSecrets widens it to the password inputs
// while lines may be being written.
type liveMask struct{ m atomic.Pointer[masker] }

var _ build.Masker = (*liveMask)(nil)

// Mask implements build.Masker.
func (l *liveMask) Mask(s string) string { return l.m.Load().Mask(s) }

// MaskPrefix implements build.Masker.
func (l *liveMask) MaskPrefix(dst []byte, src string, end bool) ([]byte, int) {
	return l.m.Load().MaskPrefix(dst, src, end)
}

// setSecrets makes the masker hide the git token and the given values.
func (r *run) setSecrets(values []string) {
	r.mask.m.Store(newMasker(append(values, r.req.GitToken)))
}

// maskText hides every secret value in s.
func (r *run) maskText(s string) string { return r.mask.Mask(s) }

// passwordValues are the values of the pipeline's password inputs: the
// request's value (VARS) or else the input's default. The inputs come
// from def, which may be nil or partial when the file has errors, and
// from a lenient read of the file's inputs list of its own: that read is
// ready before anything about the pipeline is printed, and it finds an
// input whose declaration the parser rejected (an error message can quote
// a value, as in `runs-if: ${REGISTRY_PW}`).
func passwordValues(src []byte, def *pipeline.Definition, given map[string]any) []string {
	type input struct {
		name string
		def  any
	}
	var inputs []input
	if def != nil {
		for _, in := range def.Inputs {
			if in.Type == pipeline.InputPassword {
				inputs = append(inputs, input{in.Name, in.Default})
			}
		}
	}
	var doc struct {
		Inputs []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Default any    `yaml:"default"`
		} `yaml:"inputs"`
	}
	// Errors are the parser's to report; whatever decoded is used. A file
	// over the size limit is not read at all (the parser rejects it
	// unread, too).
	if len(src) <= pipeline.MaxFileSize {
		_ = yaml.Unmarshal(src, &doc)
	}
	for _, in := range doc.Inputs {
		if strings.EqualFold(strings.TrimSpace(in.Type), string(pipeline.InputPassword)) {
			inputs = append(inputs, input{in.Name, in.Default})
		}
	}
	var values []string
	for _, in := range inputs {
		if v, ok := given[in.name]; ok && v != nil {
			values = append(values, fmt.Sprint(v))
		} else if in.def != nil {
			values = append(values, fmt.Sprint(in.def))
		}
	}
	return values
}
