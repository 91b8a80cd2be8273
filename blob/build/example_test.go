package build_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
)

// A step's output goes through a LogWriter into log chunks; any reader
// gets it back in order, as `wharfjobs logs` does.
func ExampleNewLogWriter() {
	dir, _ := os.MkdirTemp("", "log-example-*")
	defer os.RemoveAll(dir)
	s, _ := fs.Open(dir)
	ctx := context.Background()

	w, err := build.NewLogWriter(ctx, s, "42", build.WriterConfig{FlushInterval: time.Second, SpillDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Lines cuts a stream into records, one per line, numbered.
	stdout := w.Lines("build", "compile", build.StreamStdout, nil)
	fmt.Fprint(stdout, "compiling\ncompiled in 2s\n")
	_ = stdout.Close()
	if err := w.Close(ctx); err != nil { // flushes the last chunk
		fmt.Println(err)
		return
	}

	rc, _ := build.OpenLog(ctx, s, "42")
	defer rc.Close()
	_ = build.ScanRecords(rc, func(r build.Record) error {
		fmt.Printf("%s #%d %s\n", r.Source(), r.Line, r.Text)
		return nil
	})
	// Output:
	// build/compile #1 compiling
	// build/compile #2 compiled in 2s
}
