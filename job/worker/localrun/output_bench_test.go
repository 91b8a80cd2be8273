package localrun_test

import (
	"context"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// counter counts what is written to it, and the writes.
type counter struct{ bytes, writes atomic.Int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.bytes.Add(int64(len(p)))
	c.writes.Add(1)
	return len(p), nil
}

// BenchmarkStepOutputPipe: a step prints 1M lines of 100 bytes (yes |
// head, as in job/worker's BenchmarkWorkerMillionLines) and the runner
// hands its stdout over: to a counter ("pipe": the pipe alone), and to
// build.Lines over a LogWriter whose store discards ("lines": what the
// worker does with it, without a store). write-KiB is the average size
// of the runner's writes; cpu-s/op the CPU time of this process and the
// step's, worker-cpu-s/op this process's alone, and ctxsw/op the context
// switches of both: on a busy machine they vary less than the time.
//
//	go test -run '^$' -bench StepOutputPipe -benchtime 3x ./job/worker/localrun/
func BenchmarkStepOutputPipe(b *testing.B) {
	const lines, text = 1_000_000, 100
	step := func(b *testing.B) worker.Step {
		return worker.Step{Ref: "1", Stage: "bench", Name: "emit", Workspace: b.TempDir(),
			Container: pipeline.Container{Image: "alpine", Cmds: []string{
				"yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -n 1000000"}}}
	}
	b.Run("pipe", func(b *testing.B) {
		b.SetBytes(lines * text)
		var c counter
		defer reportCPU(b)()
		for b.Loop() {
			if res, err := (localrun.Runner{}).Run(context.Background(), step(b), &c, io.Discard); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
		}
		if c.bytes.Load() != int64(b.N*lines*(text+1)) {
			b.Fatalf("%d bytes", c.bytes.Load())
		}
		b.ReportMetric(float64(c.bytes.Load())/float64(c.writes.Load())/1024, "write-KiB")
	})
	b.Run("lines", func(b *testing.B) {
		b.SetBytes(lines * text)
		defer reportCPU(b)()
		for b.Loop() {
			w, err := build.NewLogWriter(context.Background(), blobtest.Discard{}, "bench", build.WriterConfig{SpillDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Uint64
			out := w.Lines("bench", "emit", build.StreamStdout, &n)
			if res, err := (localrun.Runner{}).Run(context.Background(), step(b), out, io.Discard); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
			_ = out.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = w.Close(ctx)
			cancel()
			if err != nil || w.Stats().Records != lines {
				b.Fatal(w.Stats().Records, err)
			}
		}
	})
}

// reportCPU reports the CPU time of this process and its children (the
// step's) per op, which a busy machine changes less than the wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var self, children syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
		return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
	}
	self := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	csw := func() int64 {
		var self, children syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
		return self.Nvcsw + self.Nivcsw + children.Nvcsw + children.Nivcsw
	}
	startCsw := csw()
	start, startSelf := cpu(), self()
	return func() {
		b.ReportMetric(float64(csw()-startCsw)/float64(b.N), "ctxsw/op")
		b.ReportMetric((cpu()-start).Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric((self()-startSelf).Seconds()/float64(b.N), "worker-cpu-s/op")
	}
}
