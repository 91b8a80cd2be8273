package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// runLogs prints a build's log from the store: the chunks while it runs,
// the compacted log after, months after its pod is gone.
func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("logs", "[-f] [--step NAME] [--since 10m|RFC3339] [--raw|--json] [store flags] REF", "Prints a build's log from the store: the chunks while it runs, the compacted log\nafter, months after its pod is gone; -f follows it until the build ends.", stdout, stderr)
	fl := cl.fl
	follow := fl.Bool("follow", false, "keep printing new lines until the build ends (also -f)")
	fl.BoolVar(follow, "f", false, "short for --follow")
	step := fl.String("step", "", "only this step (NAME or STAGE/NAME)")
	since := fl.String("since", "", "only lines after this: a duration back from now (10m) or an RFC 3339 time")
	raw := fl.Bool("raw", false, "print the lines' text only")
	asJSON := fl.Bool("json", false, "print the JSON records")
	interval := fl.Duration("interval", time.Second, "how often --follow polls the store")
	sf := addStoreFlags(cl, ".wharfjobs/store")
	positional, err := cl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ref := positional[0]
	var after time.Time
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			after = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			after = t
		} else {
			return fmt.Errorf("--since %q: expected a duration such as 10m or an RFC 3339 time", *since)
		}
	}
	store, cfg, err := sf.open(ctx)
	if err != nil {
		return err
	}
	if ref, err = resolveRef(ctx, store, ref, stderr); err != nil {
		return err
	}
	lp := &logPrinter{color: isTerminal(stdout), raw: *raw, json: *asJSON}
	out := newLogOutput(stdout, *follow)
	defer out.stop()
	// emit prints r; sc, when r comes from one, is the scanner that read
	// it.
	emit := func(r *build.Record, sc *build.RecordScanner) error {
		if *step != "" && !stepIs(r, *step) {
			return nil
		}
		if !after.IsZero() && !r.Time.After(after) {
			return nil
		}
		return out.line(lp, r, sc)
	}
	if *follow {
		// A build exists from its trigger on (the provisioner writes its
		// status before it answers): following one that does not would
		// wait for ever.
		if _, err := store.Stat(ctx, build.StatusKey(ref)); errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("no build %s in %s", ref, cfg.Where())
		}
		_, err := build.Follow(ctx, store, ref, *interval, func(r build.Record) error { return emit(&r, nil) })
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return errors.Join(err, out.flush())
	}
	rc, err := build.OpenLog(ctx, store, ref)
	if errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("no build %s in %s", ref, cfg.Where())
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	// The records are only looked at and printed: the scanner lends each
	// without copying its text.
	sc := build.NewRecordScanner(rc)
	for sc.Scan() {
		if err := emit(sc.Record(), sc); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		_ = out.flush() // the lines before the bad one
		return err
	}
	return out.flush()
}

// stepIs reports whether r is of step, given as NAME or STAGE/NAME.
func stepIs(r *build.Record, step string) bool {
	if r.Step == step {
		return true
	}
	return len(step) == len(r.Stage)+1+len(r.Step) && step[len(r.Stage)] == '/' &&
		strings.HasPrefix(step, r.Stage) && strings.HasSuffix(step, r.Step)
}

// logPrinter formats records as the printer of run and dev does (the same
// bytes; TestLogPrinterMatchesPrinter checks), without fmt and without an
// allocation per line: the part before the text is built once for each
// stage, step and stream in turn.
type logPrinter struct {
	color, raw, json bool
	// head is what comes before a line's text for the source and stream
	// in stage, step, stream; tail what comes after it.
	stage, step, stream string
	head, tail          []byte
	valid               bool
}

// appendRecord appends r's output line to dst. sc, when not nil, is the
// scanner r is lent by: it copies a JSON line that needs no encoding.
func (p *logPrinter) appendRecord(dst []byte, r *build.Record, sc *build.RecordScanner) []byte {
	switch {
	case p.json && sc != nil:
		return sc.AppendJSON(dst)
	case p.json:
		return r.AppendJSON(dst)
	case p.raw:
		dst = append(dst, r.Text...)
		return append(dst, '\n')
	}
	if !p.valid || r.Stage != p.stage || r.Step != p.step || r.Stream != p.stream {
		p.setSource(r)
	}
	dst = append(dst, p.head...)
	dst = append(dst, r.Text...)
	return append(dst, p.tail...)
}

// sourceWidth is the width the source is padded to, in runes as fmt's
// %-24s pads.
const sourceWidth = 24

func (p *logPrinter) setSource(r *build.Record) {
	p.stage, p.step, p.stream, p.valid = r.Stage, r.Step, r.Stream, true
	prefix := r.Source()
	head := p.head[:0]
	if p.color {
		h := fnv.New32a()
		h.Write([]byte(prefix))
		c := palette[h.Sum32()%uint32(len(palette))]
		if r.Stream == build.StreamSystem {
			c = colorDim
		}
		head = append(head, c...)
	}
	head = append(head, prefix...)
	for n := utf8.RuneCountInString(prefix); n < sourceWidth; n++ {
		head = append(head, ' ')
	}
	if p.color {
		head = append(head, colorReset...)
	}
	head = append(head, " | "...)
	tail := p.tail[:0]
	if p.color && r.Stream == build.StreamStderr {
		head = append(head, colorRed...)
		tail = append(tail, colorReset...)
	}
	p.head, p.tail = head, append(tail, '\n')
}

// logOutput buffers the lines logs prints. Following a build, a timer
// flushes what is buffered shortly after it was written, so lines still
// show as they come.
type logOutput struct {
	mu      sync.Mutex
	w       *bufio.Writer
	follow  bool
	pending *time.Timer // the flush scheduled, while one is
}

// followFlushDelay is how long a line printed by --follow may wait in the
// buffer for more.
const followFlushDelay = 50 * time.Millisecond

func newLogOutput(w io.Writer, follow bool) *logOutput {
	return &logOutput{w: bufio.NewWriterSize(w, 64<<10), follow: follow}
}

// line writes r's line. An error of the output (a closed pipe) comes back
// from this or a later call.
func (o *logOutput) line(p *logPrinter, r *build.Record, sc *build.RecordScanner) error {
	if o.follow {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	// Format straight into the writer's free space, which Write then does
	// not copy.
	_, err := o.w.Write(p.appendRecord(o.w.AvailableBuffer(), r, sc))
	if err == nil && o.follow && o.pending == nil {
		o.pending = time.AfterFunc(followFlushDelay, func() { _ = o.flush() })
	}
	return err
}

// flush writes out what is buffered.
func (o *logOutput) flush() error {
	if o.follow {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.pending != nil {
			o.pending.Stop()
			o.pending = nil
		}
	}
	return o.w.Flush()
}

// stop cancels a scheduled flush: nothing is written after logs returns.
func (o *logOutput) stop() {
	if o.follow {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.pending != nil {
			o.pending.Stop()
			o.pending = nil
		}
	}
}
