package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/stepfiles"
)

// printer shows log records as lines prefixed by stage/step, colored when
// the output is a terminal.
type printer struct {
	w     io.Writer
	color bool
	raw   bool
}

func newPrinter(w io.Writer) *printer {
	return &printer{w: w, color: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

var palette = []string{"\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m", "\x1b[96m", "\x1b[95m", "\x1b[93m"}

const (
	colorReset = "\x1b[0m"
	colorDim   = "\x1b[2m"
	colorRed   = "\x1b[31m"
)

func (p *printer) record(r build.Record) error {
	if p.raw {
		_, err := fmt.Fprintln(p.w, r.Text)
		return err
	}
	prefix := r.Source()
	if !p.color {
		_, err := fmt.Fprintf(p.w, "%-24s | %s\n", prefix, r.Text)
		return err
	}
	h := fnv.New32a()
	h.Write([]byte(prefix))
	c := palette[h.Sum32()%uint32(len(palette))]
	if r.Stream == build.StreamSystem {
		c = colorDim
	}
	text := r.Text
	if r.Stream == build.StreamStderr {
		text = colorRed + text + colorReset
	}
	_, err := fmt.Fprintf(p.w, "%s%-24s%s | %s\n", c, prefix, colorReset, text)
	return err
}

// summary prints a table of the build's steps.
func (p *printer) summary(st build.Status) {
	fmt.Fprintln(p.w)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	// The files columns only when some step kept files: most pipelines
	// declare none.
	files := slices.ContainsFunc(st.Steps, func(s build.StepStatus) bool { return s.Tests != nil || s.Artifacts > 0 })
	if files {
		fmt.Fprintln(tw, "STAGE\tSTEP\tSTATUS\tEXIT\tDURATION\tTESTS\tARTIFACTS\tREASON")
	} else {
		fmt.Fprintln(tw, "STAGE\tSTEP\tSTATUS\tEXIT\tDURATION\tREASON")
	}
	for _, s := range st.Steps {
		exit, dur := "", ""
		if s.ExitCode != nil {
			exit = fmt.Sprint(*s.ExitCode)
		}
		if s.StartedAt != nil && s.FinishedAt != nil {
			dur = s.FinishedAt.Sub(*s.StartedAt).Round(time.Millisecond).String()
		}
		if !files {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Stage, s.Step, s.Status, exit, dur, s.Reason)
			continue
		}
		tests, arts := "", ""
		if t := s.Tests; t != nil {
			tests = fmt.Sprintf("%d passed, %d failed, %d skipped", t.Passed, t.Failed, t.Skipped)
		}
		if s.Artifacts > 0 {
			arts = fmt.Sprintf("%d (%s)", s.Artifacts, stepfiles.FormatSize(s.ArtifactBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Stage, s.Step, s.Status, exit, dur, tests, arts, s.Reason)
	}
	tw.Flush()
	total := ""
	if st.StartedAt != nil && st.FinishedAt != nil {
		total = " in " + st.FinishedAt.Sub(*st.StartedAt).Round(time.Millisecond).String()
	}
	reason := ""
	if st.Reason != "" {
		reason = ": " + st.Reason
	}
	fmt.Fprintf(p.w, "\n%s %s%s%s\n", strings.ToUpper(string(st.Status)), st.Ref, total, reason)
}
