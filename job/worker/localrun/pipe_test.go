package localrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

func pipeStep(t *testing.T, cmds ...string) worker.Step {
	return worker.Step{Ref: "1", Stage: "test", Name: "pipe", Workspace: t.TempDir(),
		Container: pipeline.Container{Image: "alpine", Cmds: cmds}}
}

// blockedWriter blocks its first Write until release is closed.
type blockedWriter struct {
	release chan struct{}
	buf     bytes.Buffer
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.buf.Write(p)
}

// TestStepRunsAheadOfABusyWorker: while the worker is busy with what it
// read (its Write into the log waits), a step can write as much as the
// pipe holds, 256 KiB, rather than Linux's default 64 KiB.
func TestStepRunsAheadOfABusyWorker(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pipes are resized on Linux only")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	growPipe(pw, pipeSize)
	size, _, errno := syscall.Syscall(syscall.SYS_FCNTL, pw.Fd(), 1032 /* F_GETPIPE_SZ */, 0)
	pr.Close()
	pw.Close()
	if errno != 0 || size < pipeSize {
		t.Skipf("the kernel keeps pipes at %d bytes (%v)", size, errno)
	}
	marker := filepath.Join(t.TempDir(), "written")
	out := &blockedWriter{release: make(chan struct{})}
	var res worker.Result
	done := make(chan error, 1)
	go func() {
		var err error
		res, err = Runner{}.Run(context.Background(), pipeStep(t, "head -c 204800 /dev/zero", "touch "+marker, "echo end"), out, &bytes.Buffer{})
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			close(out.release)
			t.Fatal("the step could not write 200 KiB while the worker was busy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(out.release)
	if err := <-done; err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	if got := out.buf.String(); len(got) != 204800+4 || !strings.HasSuffix(got, "\x00end\n") {
		t.Fatalf("stdout: %d bytes, ends %q", len(got), got[max(0, len(got)-8):])
	}
}

// TestStdoutAndStderrTheSameWriter: as with exec.Cmd, one writer for both
// gets one pipe, so the step's order of lines is kept.
func TestStdoutAndStderrTheSameWriter(t *testing.T) {
	var out bytes.Buffer
	res, err := Runner{}.Run(context.Background(), pipeStep(t, "echo one", "echo two >&2", "echo three"), &out, &out)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	if got := out.String(); !strings.HasSuffix(got, "one\ntwo\nthree\n") {
		t.Fatalf("output %q", got)
	}
}

// failingWriter fails every Write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("log closed") }

// TestWriteErrorEndsTheStep: when its output cannot be written, the step
// no longer has a reader: its writes fail (SIGPIPE), as with exec.Cmd,
// and it does not hang on a full pipe.
func TestWriteErrorEndsTheStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Runner{}.Run(ctx, pipeStep(t, "yes"), failingWriter{}, &bytes.Buffer{})
	if ctx.Err() != nil {
		t.Fatal("the step went on writing into a pipe no one reads")
	}
	if err == nil && res.ExitCode != 128+int(syscall.SIGPIPE) {
		t.Fatalf("Run: %+v, %v; want SIGPIPE's exit code or the write's error", res, err)
	}
}

// TestFileOutputIsTheStepsOwn: as with exec.Cmd, a file given for the
// output is the step's stdout itself, without a pipe and a copy.
func TestFileOutputIsTheStepsOwn(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Runner{}.Run(context.Background(), pipeStep(t, "readlink /proc/self/fd/1"), f, &bytes.Buffer{})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	b, _ := os.ReadFile(f.Name())
	if strings.TrimSpace(string(b)) != f.Name() {
		t.Fatalf("the step's stdout was %q, not the file %s", b, f.Name())
	}
}
