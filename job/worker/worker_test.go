package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

var (
	srv     *miniotest.Server
	engines *enginetest.Engines
)

// mainFunc runs a TestMain's tests inside another harness's.
type mainFunc func() int

func (f mainFunc) Run() int { return f() }

func TestMain(m *testing.M) {
	if os.Getenv("WORKER_TEST_HELPER") != "" {
		os.Exit(helperWorker())
	}
	// MinIO and the container engines start when a test first asks.
	os.Exit(enginetest.Run(mainFunc(func() int { return miniotest.Run(m, &srv) }), &engines))
}

func newMinIO(t testing.TB) blob.Store { return srv.Store(t, blob.BackendMinIO, "worker") }

// gitRepo turns testdata/<name> into a git repository with one commit on
// branch main and returns its path.
func gitRepo(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "example " + name},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return dir
}

func testConfig(t testing.TB) worker.Config {
	return worker.Config{
		Workdir:   t.TempDir(),
		Heartbeat: 100 * time.Millisecond,
		Log:       build.WriterConfig{FlushInterval: 100 * time.Millisecond, SpillDir: t.TempDir()},
		Logger:    slog.New(slog.DiscardHandler),
		Environ:   []string{},
	}
}

func runBuild(t *testing.T, s blob.Store, req job.Request) (int, build.Status, []build.Record) {
	t.Helper()
	return runBuildWith(t, s, req, localrun.Runner{})
}

func runBuildWith(t *testing.T, s blob.Store, req job.Request, runner worker.StepRunner) (int, build.Status, []build.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	code, st := worker.Run(ctx, s, req, runner, testConfig(t))
	rc, err := build.OpenLog(ctx, s, req.Ref())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var recs []build.Record
	if err := build.ScanRecords(rc, func(r build.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return code, st, recs
}

func lines(recs []build.Record, stage, step string) []string {
	var out []string
	for _, r := range recs {
		if r.Stage == stage && r.Step == step && r.Stream != build.StreamSystem && !strings.HasPrefix(r.Text, "[wharfjobs]") {
			out = append(out, r.Text)
		}
	}
	return out
}

func allText(recs []build.Record) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestExamples runs every example repository in testdata end to end with
// the local runner against a real MinIO and checks the expected outcome.
func TestExamples(t *testing.T) {
	s := newMinIO(t)
	cases := []struct {
		name, env string
		vars      map[string]any
		code      int
		status    build.Phase
		reason    string
		check     func(t *testing.T, st build.Status, recs []build.Record)
	}{
		{name: "pass", code: 0, status: build.Completed, check: func(t *testing.T, st build.Status, recs []build.Record) {
			if got := lines(recs, "build", "compile"); strings.Join(got, "|") != "hello from compile on main|compile done" {
				t.Fatalf("compile lines = %q", got)
			}
			unit := lines(recs, "test", "unit")
			if len(unit) != 100 || unit[99] != "test line 100" {
				t.Fatalf("unit: %d lines, last %q", len(unit), unit[len(unit)-1])
			}
			if len(st.Commit) != 40 {
				t.Fatalf("commit %q is not a SHA", st.Commit)
			}
			// The two build steps ran in parallel: each started before the
			// other finished.
			var c, l build.StepStatus
			for _, s := range st.Steps {
				switch s.Step {
				case "compile":
					c = s
				case "lint":
					l = s
				}
			}
			if c.StartedAt == nil || l.StartedAt == nil || !c.StartedAt.Before(*l.FinishedAt) || !l.StartedAt.Before(*c.FinishedAt) {
				t.Fatalf("build steps did not overlap: %+v %+v", c, l)
			}
			for _, r := range recs {
				if r.Step == "lint" && r.Text == "lint done" && r.Stream != build.StreamStderr {
					t.Fatal("stderr line not marked stderr")
				}
			}
		}},
		{name: "fail-then-notify", code: worker.ExitFailed, status: build.Failed, reason: "StepFailed: build/compile exit 2", check: func(t *testing.T, st build.Status, recs []build.Record) {
			if got := lines(recs, "build", "docs"); len(got) != 1 {
				t.Fatalf("the parallel step did not finish: %q", got)
			}
			if got := lines(recs, "deploy", "ship"); len(got) != 0 {
				t.Fatalf("a success-only stage ran after a failure: %q", got)
			}
			if got := lines(recs, "notify", "report"); strings.Join(got, "") != "build 7 failed" {
				t.Fatalf("runs-if fail stage: %q", got)
			}
			if got := lines(recs, "cleanup", "tidy"); strings.Join(got, "") != "tidy" {
				t.Fatalf("runs-if always stage: %q", got)
			}
			// The build failed because of compile, though tidy finished last.
			for _, s := range st.Steps {
				if s.Step == "compile" && (s.Status != build.Failed || *s.ExitCode != 2) {
					t.Fatalf("compile step status %+v", s)
				}
			}
		}},
		{name: "secret", vars: map[string]any{"DEPLOY_PASSWORD": "hunter2-secret"}, code: 0, status: build.Completed, check: func(t *testing.T, st build.Status, recs []build.Record) {
			text := allText(recs)
			if strings.Contains(text, "hunter2-secret") {
				t.Fatal("the password reached the log")
			}
			if !strings.Contains(text, "logging in with ***** and again *****") {
				t.Fatalf("masked line missing:\n%s", text)
			}
		}},
		{name: "environments", env: "stage", code: 0, status: build.Completed, check: func(t *testing.T, st build.Status, recs []build.Record) {
			if got := lines(recs, "deploy", "to"); strings.Join(got, "") != "deploying to https://stage.example.org from stage" {
				t.Fatalf("deploy: %q", got)
			}
			if got := lines(recs, "prod-only", "never"); len(got) != 0 {
				t.Fatalf("prod stage ran in stage: %q", got)
			}
		}},
		// wharf-cmd ignores unknown fields in a step type
		// (pkg/wharfyml/visit at 421514f reads only the fields it knows).
		{name: "warnings", code: 0, status: build.Completed, check: func(t *testing.T, st build.Status, recs []build.Record) {
			if !strings.Contains(allText(recs), "warning: .wharf-ci.yml:7:7: stages.build.steps.compile.container.imagePullPolicy:") ||
				strings.Join(lines(recs, "build", "compile"), "") != "compiled" {
				t.Fatalf("no warning, or the step did not run:\n%s", allText(recs))
			}
		}},
		{name: "invalid", code: worker.ExitInvalid, status: build.Failed, reason: "InvalidPipeline: 1 problem(s)", check: func(t *testing.T, st build.Status, recs []build.Record) {
			if !strings.Contains(allText(recs), ".wharf-ci.yml:4:7: stages.build.steps.compile.container.cmds: required field is missing") {
				t.Fatalf("log does not explain the problem:\n%s", allText(recs))
			}
		}},
	}
	// The same cases in every runner: as processes, and in containers of
	// the pipelines' images on Docker and on Podman.
	for _, rn := range []string{"local", "docker", "podman"} {
		t.Run(rn, func(t *testing.T) {
			runner := exampleRunner(t, rn)
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					repo := gitRepo(t, c.name)
					req := job.Request{BuildRef: fmt.Sprint(7 + i*0), Instance: rn + "-" + c.name, GitFullURL: repo, GitBranch: "main", RepoName: c.name,
						Environment: c.env, Vars: c.vars}
					code, st, recs := runBuildWith(t, s, req, runner)
					if code != c.code || st.Status != c.status || !strings.HasPrefix(st.Reason, c.reason) {
						t.Fatalf("exit %d status %s reason %q; want %d %s %q\nlog:\n%s", code, st.Status, st.Reason, c.code, c.status, c.reason, allText(recs))
					}
					stored, _, err := build.ReadStatus(context.Background(), s, req.Ref())
					if err != nil || stored.Status != c.status || stored.FinishedAt == nil || stored.Log == nil {
						t.Fatalf("stored status %+v, %v", stored, err)
					}
					c.check(t, st, recs)
				})
			}
		})
	}
}

func TestRunStagesAndCloneFailure(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo := gitRepo(t, "pass")
	code, st, recs := runBuild(t, s, job.Request{BuildRef: "1", GitFullURL: repo, GitBranch: "main", RunStages: []string{"test"}})
	if code != 0 || len(lines(recs, "build", "compile")) != 0 || len(lines(recs, "test", "unit")) != 100 {
		t.Fatalf("RUN_STAGES=test: exit %d, status %+v", code, st)
	}
	code, st, _ = runBuild(t, s, job.Request{BuildRef: "2", GitFullURL: repo, GitBranch: "main", RunStages: []string{"nope"}})
	if code != worker.ExitInvalid || !strings.Contains(st.Reason, `RUN_STAGES names stage "nope"`) {
		t.Fatalf("unknown stage: exit %d reason %q", code, st.Reason)
	}
	code, st, recs = runBuild(t, s, job.Request{BuildRef: "3", GitFullURL: repo, GitBranch: "no-such-branch", GitToken: "tok-very-secret"})
	if code != worker.ExitInvalid || !strings.HasPrefix(st.Reason, "CloneFailed") {
		t.Fatalf("clone of a missing branch: exit %d reason %q", code, st.Reason)
	}
	if strings.Contains(allText(recs)+st.Reason, "tok-very-secret") {
		t.Fatal("git token in the log or status")
	}
}

func TestStepTimeoutAndCancel(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), []byte("slow:\n  sleep:\n    container:\n      image: alpine\n      cmds: [\"echo start\", \"sleep 30\"]\n"), 0o644)
	cfg := testConfig(t)
	cfg.Workdir, cfg.SkipClone, cfg.StepTimeout = dir, true, 300*time.Millisecond
	ctx := context.Background()
	build.WriteStatus(ctx, s, "9", build.Status{Status: build.Scheduling}, "")
	code, st := worker.Run(ctx, s, job.Request{BuildRef: "9"}, localrun.Runner{KillGrace: time.Second}, cfg)
	if code != worker.ExitFailed || !strings.Contains(st.Reason, "Timeout: step ran longer than 300ms") {
		t.Fatalf("step timeout: exit %d reason %q", code, st.Reason)
	}

	// SIGTERM of the worker (its context cancelled) records Cancelled.
	cfg.StepTimeout = 0
	build.WriteStatus(ctx, s, "10", build.Status{Status: build.Scheduling}, "")
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	code, st = worker.Run(cctx, s, job.Request{BuildRef: "10"}, localrun.Runner{KillGrace: time.Second}, cfg)
	if code != worker.ExitFailed || st.Status != build.Failed || st.Reason != string(build.ReasonCancelled) {
		t.Fatalf("cancel: exit %d status %s reason %q", code, st.Status, st.Reason)
	}
	rc, _ := build.OpenLog(ctx, s, "10")
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(b), `"text":"start"`) || !strings.Contains(string(b), "build stopped: Cancelled") {
		t.Fatalf("log of the cancelled build:\n%s", b)
	}

	// And the build deadline records DeadlineExceeded.
	cfg.Deadline = 300 * time.Millisecond
	build.WriteStatus(ctx, s, "11", build.Status{Status: build.Scheduling}, "")
	code, st = worker.Run(ctx, s, job.Request{BuildRef: "11"}, localrun.Runner{KillGrace: time.Second}, cfg)
	if code != worker.ExitFailed || st.Reason != string(build.ReasonDeadlineExceeded) {
		t.Fatalf("deadline: exit %d reason %q", code, st.Reason)
	}
}

// helperWorker is the body of a child process that runs one build as a
// real worker process would: for the SIGKILL test and the benchmark. The
// store and build come from the environment.
func helperWorker() (code int) {
	ctx := context.Background()
	cfg := blob.Config{Backend: blob.BackendMinIO, Endpoint: os.Getenv("WT_ENDPOINT"), Bucket: os.Getenv("WT_BUCKET"), Region: "us-east-1",
		AccessKey: os.Getenv("WT_ACCESS"), SecretKey: os.Getenv("WT_SECRET"), PathStyle: true, Timeout: 10 * time.Second,
		UnsignedPayload: os.Getenv("WT_UNSIGNED") != ""}
	s, err := minio.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	wcfg := worker.Config{Workdir: os.Getenv("WT_DIR"), SkipClone: true, Heartbeat: time.Second, Environ: []string{},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), Log: build.WriterConfig{SpillDir: os.Getenv("WT_SPILL")}}
	fmt.Sscan(os.Getenv("WT_LOG_MEMORY"), &wcfg.Log.MemoryLimit)
	if p := os.Getenv("WT_CPUPROFILE"); p != "" {
		f, _ := os.Create(p)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if p := os.Getenv("WT_MEMPROFILE"); p != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			f, _ := os.Create(p)
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	code, _ = worker.Run(ctx, s, job.Request{BuildRef: os.Getenv("WT_REF")}, localrun.Runner{}, wcfg)
	return code
}

// helperCmd prepares a child worker process for build ref in dir.
func helperCmd(t testing.TB, s blob.Store, bucket, ref, dir string, unsigned bool) *exec.Cmd {
	t.Helper()
	if _, err := build.WriteStatus(context.Background(), s, ref, build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	m := srv.Ensure(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GOMEMLIMIT as a build Job sets it for the worker container.
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=24MiB", "WORKER_TEST_HELPER=1", "WT_ENDPOINT="+m.Endpoint, "WT_BUCKET="+bucket, "WT_ACCESS="+m.AccessKey,
		"WT_SECRET="+m.SecretKey, "WT_DIR="+dir, "WT_REF="+ref, "WT_SPILL="+t.TempDir(),
		// A killed helper cannot remove its step's temporary copy: the
		// test's directory goes with the test.
		"TMPDIR="+t.TempDir())
	if unsigned {
		cmd.Env = append(cmd.Env, "WT_UNSIGNED=1")
	}
	// Its own process group, so a kill takes the step's processes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func pipelineDir(t testing.TB, yml string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".wharf-ci.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSIGKILLLosesAtMostTheLastSecond kills a worker process (and its
// step) with SIGKILL while the step prints a numbered, timestamped line
// every millisecond, and checks that the store holds every line printed
// more than the flush interval (1s) before the kill, in order, once.
func TestSIGKILLLosesAtMostTheLastSecond(t *testing.T) {
	bucket := miniotest.BucketName("kill")
	cfg := srv.Config(blob.BackendMinIO, bucket)
	s, err := minio.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The step's own copy of its lines goes outside its workspace, which
	// is a copy of dir that the killed worker leaves in a temporary place.
	written := filepath.Join(t.TempDir(), "written.txt")
	dir := pipelineDir(t, `
emit:
  lines:
    container:
      image: alpine
      cmds:
        - i=1; while true; do l="$i $(date +%s%N)"; echo "$l"; echo "$l" >> `+written+`; i=$((i+1)); sleep 0.001; done
`)
	cmd := helperCmd(t, s, bucket, "kill-1", dir, false)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the step has printed for two flush intervals and some of
	// its lines are stored: mid-stream, at no particular point of a flush.
	ctx := context.Background()
	if err := testenv.WaitFor(ctx, time.Minute, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(written)
		if err != nil {
			return err
		}
		var first int
		var ns int64
		if _, err := fmt.Sscan(string(b), &first, &ns); err != nil {
			return fmt.Errorf("the step printed %q so far: %w", b, err)
		}
		if age := time.Since(time.Unix(0, ns)); age < 2*time.Second {
			return fmt.Errorf("the step has printed for %v, want 2s", age)
		}
		chunks, err := build.AllChunks(ctx, s, "kill-1", 0)
		if err == nil && len(chunks) == 0 {
			err = errors.New("no chunk stored yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	var nums []int
	var last time.Time
	chunks, err := build.AllChunks(ctx, s, "kill-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		b, err := build.ReadChunk(ctx, s, "kill-1", c.Seq)
		if err != nil {
			t.Fatal(err)
		}
		build.ScanRecords(strings.NewReader(string(b)), func(r build.Record) error {
			if r.Step != "lines" || r.Stream != build.StreamStdout {
				return nil
			}
			var n int
			var ns int64
			if _, err := fmt.Sscan(r.Text, &n, &ns); err == nil {
				nums = append(nums, n)
				last = time.Unix(0, ns)
			}
			return nil
		})
	}
	if len(nums) < 10 {
		t.Fatalf("only %d lines stored before the kill", len(nums))
	}
	for i, n := range nums {
		if n != i+1 {
			t.Fatalf("stored line %d is number %d: lost or repeated lines", i, n)
		}
	}
	// What the step printed, from its own copy of every line.
	own, err := os.ReadFile(written)
	if err != nil {
		t.Fatal(err)
	}
	wlines := strings.Split(strings.TrimSpace(string(own)), "\n")
	var lastN int
	var lastNs int64
	fmt.Sscan(wlines[len(wlines)-1], &lastN, &lastNs)
	lost := time.Unix(0, lastNs).Sub(last)
	t.Logf("%d of %d printed lines stored in %d chunks; the lost ones span the last %v of output (killed %v after the last line)",
		len(nums), lastN, len(chunks), lost.Round(time.Millisecond), killedAt.Sub(time.Unix(0, lastNs)).Round(time.Millisecond))
	// The flush interval is 500ms (WHARFJOBS_LOG_FLUSH_INTERVAL); the
	// bound is the 1s of the test's name and 300ms for an upload in
	// flight, which leaves room for a loaded machine's slow PUT.
	if lost > 1300*time.Millisecond {
		t.Fatalf("lost the last %v of output, more than the test's 1.3s bound (500ms flush interval) allows", lost)
	}
}

// BenchmarkWorkerMillionLines: a step prints 1,000,000 lines of 100 bytes
// through the local runner into a real MinIO, the worker a child process
// with GOMEMLIMIT=24MiB as in a build Job. Every iteration also runs the
// LogWriter alone into the same MinIO (blob/build's BenchmarkWriterMinIO:
// the same records, written in this process, and Close), with the timer
// stopped and before or after the worker in turn, so the two are compared
// under the same load of the machine.
//
//   - MB/s: text over the worker process's life: start, step, closing the
//     log, the final status and compacting the log into log.ndjson;
//   - step-MB/s: text over the step, which ends when its last line is
//     queued (the writer holds lines back while the store lags);
//   - ship-MB/s: text over the step's start to the final status, which the
//     worker records once the log is closed: every line is in the store;
//   - writer-MB/s: the LogWriter alone, NewLogWriter to Close;
//   - ratio-to-writer: ship-MB/s over writer-MB/s, both from the first
//     line written to the last one stored; e2e-ratio: MB/s over
//     writer-MB/s;
//   - compact-s: per run, the final status to the process's exit: mostly
//     compacting the log (read back from the store, written as one object);
//   - peak-RSS-MiB: the worker process's (getrusage), and peak-anon-MiB its
//     anonymous memory sampled every 20ms, without the file pages of the
//     binary's code and data (about 25 MiB of RSS at the start already).
//
// WT_CPUPROFILE=path makes each worker process write a CPU profile to
// path (the last run's is left), WT_MEMPROFILE=path its allocations.
func BenchmarkWorkerMillionLines(b *testing.B) {
	for _, unsigned := range []bool{false, true} {
		name := "signed"
		if unsigned {
			name = "unsigned"
		}
		b.Run(name, func(b *testing.B) {
			bucket := miniotest.BucketName("bench")
			cfg := srv.Config(blob.BackendMinIO, bucket)
			cfg.UnsignedPayload = unsigned
			s, err := minio.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			dir := pipelineDir(b, `
emit:
  lines:
    container:
      image: alpine
      cmds:
        - yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -n 1000000
`)
			const lines, text = 1_000_000, 100 * 1_000_000
			var maxRSS, maxAnon int64
			var stepTime, shipTime, compactTime, writerTime time.Duration
			i := 0
			for b.Loop() {
				i++
				if i%2 == 0 {
					b.StopTimer()
					writerTime += writeAlone(b, s, lines)
					b.StartTimer()
				}
				ref := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
				cmd := helperCmd(b, s, bucket, ref, dir, unsigned)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				anon := sampleAnon(cmd.Process.Pid)
				err := cmd.Wait()
				exited := time.Now()
				maxAnon = max(maxAnon, anon())
				if err != nil {
					b.Fatalf("worker: %v\n%s", err, out.Bytes())
				}
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					maxRSS = max(maxRSS, ru.Maxrss*1024)
				}
				st, _, err := build.ReadStatus(context.Background(), s, ref)
				if err != nil || st.Status != build.Completed {
					b.Fatalf("status %+v %v", st, err)
				}
				step := st.Steps[0]
				stepTime += step.FinishedAt.Sub(*step.StartedAt)
				shipTime += st.FinishedAt.Sub(*step.StartedAt)
				compactTime += exited.Sub(*st.FinishedAt)

				if i%2 == 1 {
					b.StopTimer()
					writerTime += writeAlone(b, s, lines)
					b.StartTimer()
				}
			}
			mbps := func(d time.Duration) float64 { return float64(text*i) / 1e6 / d.Seconds() }
			b.SetBytes(text)
			writer := mbps(writerTime)
			b.ReportMetric(float64(lines*i)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(mbps(stepTime), "step-MB/s")
			b.ReportMetric(mbps(shipTime), "ship-MB/s")
			b.ReportMetric(writer, "writer-MB/s")
			b.ReportMetric(mbps(shipTime)/writer, "ratio-to-writer")
			b.ReportMetric(mbps(b.Elapsed())/writer, "e2e-ratio")
			b.ReportMetric(compactTime.Seconds()/float64(i), "compact-s")
			b.ReportMetric(float64(maxRSS)/(1<<20), "peak-RSS-MiB")
			b.ReportMetric(float64(maxAnon)/(1<<20), "peak-anon-MiB")
		})
	}
}

// writeAlone is blob/build's BenchmarkWriterMinIO once: lines 100-byte
// records through a LogWriter with the production defaults, and Close,
// into a new build of s. It returns the time taken.
func writeAlone(b *testing.B, s blob.Store, lines int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	w, err := build.NewLogWriter(ctx, s, fmt.Sprintf("alone-%d", time.Now().UnixNano()), build.WriterConfig{SpillDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	rec := build.Record{Stage: "build", Step: "compile", Stream: build.StreamStdout, Text: strings.Repeat("0123456789", 10)}
	for n := 1; n <= lines; n++ {
		rec.Line, rec.Time = uint64(n), time.Now()
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// sampleAnon samples process pid's anonymous resident memory (RssAnon)
// every 20ms until the process is gone; the function it returns stops the
// sampling and gives the peak in bytes.
func sampleAnon(pid int) func() int64 {
	var peak atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for l := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
					var kb int64
					fmt.Sscan(v, &kb)
					if kb*1024 > peak.Load() {
						peak.Store(kb * 1024)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}
