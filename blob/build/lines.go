package build

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Lines is an io.WriteCloser that cuts a step's output stream into records:
// one per line, numbered from a counter the step's streams share, stamped
// with the time the line arrived. A line longer than MaxText is written in
// parts as it arrives, so a stream without newlines cannot exhaust memory.
type Lines struct {
	w       *LogWriter
	tmpl    Record
	counter *atomic.Uint64
	// Mask, when set, rewrites each line's text before it is written
	// (the worker hides secret values with it).
	Mask func(string) string

	mu   sync.Mutex
	buf  []byte
	line uint64 // line number of the partial line in buf, once it has parts
	part int
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
			if err := l.spillLong(now); err != nil {
				return n, err
			}
			break
		}
		var text []byte
		if len(l.buf) > 0 {
			l.buf = append(l.buf, p[:i]...)
			text = l.buf
		} else {
			text = p[:i]
		}
		if err := l.emit(bytes.TrimSuffix(text, []byte{'\r'}), now); err != nil {
			return n, err
		}
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// spillLong writes full MaxText parts of a partial line that grew too long.
func (l *Lines) spillLong(now time.Time) error {
	for len(l.buf) > MaxText {
		cut := MaxText
		for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(l.buf[cut]); i++ {
			cut--
		}
		if cut == 0 {
			cut = MaxText
		}
		if l.part == 0 {
			l.line = l.counter.Add(1)
		}
		l.part++
		if err := l.write(view(l.buf[:cut]), l.line, l.part, now); err != nil {
			return err
		}
		l.buf = append(l.buf[:0], l.buf[cut:]...)
	}
	return nil
}

// emit writes a complete line (or the last part of a long one).
func (l *Lines) emit(text []byte, now time.Time) error {
	line, part := l.line, 0
	if l.part > 0 {
		part = l.part + 1
	} else {
		line = l.counter.Add(1)
	}
	l.part, l.line = 0, 0
	return l.write(view(text), line, part, now)
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

func (l *Lines) write(text string, line uint64, part int, now time.Time) error {
	if l.Mask != nil {
		text = l.Mask(text)
	}
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
	if len(l.buf) == 0 && l.part == 0 {
		return nil
	}
	err := l.emit(bytes.TrimSuffix(l.buf, []byte{'\r'}), time.Now())
	l.buf = nil
	return err
}
