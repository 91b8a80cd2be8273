package build

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Masker hides secret values in log text.
type Masker interface {
	// Mask returns s with every secret in it replaced, or s itself when
	// it holds none. It keeps no reference to s.
	Mask(s string) string
	// MaskPrefix appends to dst the masked form of the longest prefix of
	// src that text following src cannot change (all of src when end is
	// true) and returns dst and the length of that prefix. The rest of
	// src, where a secret may begin that later text completes, is for the
	// next call. Masking a text in pieces this way must give what Mask
	// gives for the whole. It keeps no reference to src.
	MaskPrefix(dst []byte, src string, end bool) ([]byte, int)
}

// Lines is an io.WriteCloser that cuts a step's output stream into records:
// one per line, numbered from a counter the step's streams share, stamped
// with the time the line arrived. A line longer than MaxText is written in
// parts as it arrives, so a stream without newlines cannot exhaust memory.
type Lines struct {
	w       *LogWriter
	tmpl    Record
	counter *atomic.Uint64
	// Mask, when set, hides secrets in the text before it is written (the
	// worker's secret values). A line written in parts is masked as one
	// text, so a secret across a part boundary is masked too.
	Mask Masker

	mu sync.Mutex
	// buf is the current line's text not masked yet; out is the masked
	// text of a long line not written yet. out is empty unless the line
	// outgrew MaxText.
	buf, out []byte
	line     uint64 // line number of the partial line, once it has parts
	part     int
}

// Lines returns a writer for one stream of one step. Streams of the same
// step should share counter so their line numbers interleave.
func (w *LogWriter) Lines(stage, step, stream string, counter *atomic.Uint64) *Lines {
	if counter == nil {
		counter = new(atomic.Uint64)
	}
	return &Lines{w: w, tmpl: Record{Stage: stage, Step: step, Stream: stream}, counter: counter}
}

// Write implements io.Writer. It never fails short of a closed LogWriter.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	now := time.Now()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			if len(l.buf)+len(l.out) > MaxText {
				if err := l.spillLong(now); err != nil {
					return n, err
				}
			}
			break
		}
		var err error
		if len(l.buf) == 0 && len(l.out) == 0 && l.part == 0 {
			err = l.emit(p[:i], now)
		} else {
			// emit may keep working in buf: never in the caller's p.
			l.buf = append(l.buf, p[:i]...)
			err = l.emit(l.buf, now)
		}
		l.buf = l.buf[:0]
		if err != nil {
			return n, err
		}
		p = p[i+1:]
	}
	return n, nil
}

// maskBuf moves what is final of buf, masked, to out.
func (l *Lines) maskBuf(end bool) {
	if l.Mask == nil {
		l.out = append(l.out, l.buf...)
		l.buf = l.buf[:0]
		return
	}
	var n int
	l.out, n = l.Mask.MaskPrefix(l.out, view(l.buf), end)
	l.buf = append(l.buf[:0], l.buf[n:]...)
}

// spillLong writes full MaxText parts of a partial line that grew too
// long. The masker holds back the end of buf, where a secret may have
// begun, so a secret is never cut in two before it is masked; out keeps
// the last MaxText bytes or fewer.
func (l *Lines) spillLong(now time.Time) error {
	l.maskBuf(false)
	return l.writeParts(now, false)
}

// writeParts writes out as parts of the current line: all of it when
// last, else all but its last MaxText bytes or fewer.
func (l *Lines) writeParts(now time.Time, last bool) error {
	done := 0
	defer func() { l.out = append(l.out[:0], l.out[done:]...) }()
	for len(l.out)-done > MaxText || last && done < len(l.out) {
		cut := len(l.out) - done
		if cut > MaxText {
			cut = runeCut(l.out[done:], MaxText)
		}
		if l.part == 0 {
			l.line = l.counter.Add(1)
		}
		l.part++
		if err := l.write(view(l.out[done:done+cut]), l.line, l.part, now); err != nil {
			return err
		}
		done += cut
	}
	return nil
}

// runeCut is where to cut b, longer than n, into at most n bytes: before
// a rune that would straddle n, if any.
func runeCut(b []byte, n int) int {
	cut := n
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(b[cut]); i++ {
		cut--
	}
	if cut == 0 {
		return n
	}
	return cut
}

// emit writes a complete line, text being the part of it not in out.
// Unless the line is whole in text, text is buf.
func (l *Lines) emit(text []byte, now time.Time) error {
	if len(l.out) == 0 && l.part == 0 {
		// The line is whole in text: mask and write it without copying.
		s := view(bytes.TrimSuffix(text, []byte{'\r'}))
		if l.Mask != nil {
			s = l.Mask.Mask(s)
		}
		if len(s) <= MaxText {
			return l.write(s, l.counter.Add(1), 0, now)
		}
		// Masking made it longer than a record holds.
		l.out = append(l.out, s...)
		err := l.writeParts(now, true)
		l.part, l.line = 0, 0
		return err
	}
	// The end of a long line: mask the rest, write the parts left.
	if len(text) == 0 {
		l.out = bytes.TrimSuffix(l.out, []byte{'\r'})
	}
	l.buf = bytes.TrimSuffix(text, []byte{'\r'})
	l.maskBuf(true)
	var err error
	if l.part == 0 && len(l.out) <= MaxText {
		err = l.write(view(l.out), l.counter.Add(1), 0, now)
	} else {
		err = l.writeParts(now, true)
	}
	// Long lines are rare: their buffer is not kept for the next line.
	l.out = nil
	l.part, l.line = 0, 0
	return err
}

// view is b as a string without copying it. Only for strings that do not
// outlive b's next change: here, the text of a record that is encoded into
// the chunk buffer at once.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// write writes one record, its text masked already and at most MaxText
// bytes, so the LogWriter writes it as it is and the part numbers stay
// those of Lines.
func (l *Lines) write(text string, line uint64, part int, now time.Time) error {
	// LogWriter.Write encodes the text before it returns and keeps no
	// reference to it, so a view of the caller's bytes is enough.
	rec := l.tmpl
	rec.Line, rec.Part, rec.Time, rec.Text = line, part, now, text
	return l.w.Write(rec)
}

// Close writes a last line that had no newline.
func (l *Lines) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 && len(l.out) == 0 && l.part == 0 {
		return nil
	}
	err := l.emit(l.buf, time.Now())
	l.buf, l.out = nil, nil
	return err
}
