package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

var srv *miniotest.Server

func TestMain(m *testing.M) {
	if os.Getenv("WORKER_TEST_HELPER") != "" {
		os.Exit(helperWorker())
	}
	var err error
	srv, err = miniotest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

func newMinIO(t testing.TB) blob.Store {
	s, err := minio.Open(context.Background(), srv.Config(blob.BackendMinIO, miniotest.BucketName("worker")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := build.WriteStatus(ctx, s, req.Ref(), build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	code, st := worker.Run(ctx, s, req, localrun.Runner{}, testConfig(t))
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
		name, env  string
		vars       map[string]any
		secretVars map[string]string
		code       int
		status     build.Phase
		reason     string
		check      func(t *testing.T, st build.Status, recs []build.Record)
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
		{name: "secret", secretVars: map[string]string{"DEPLOY_PASSWORD": "hunter2-secret"}, code: 0, status: build.Completed, check: func(t *testing.T, st build.Status, recs []build.Record) {
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
		{name: "invalid", code: worker.ExitInvalid, status: build.Failed, reason: "InvalidPipeline: 1 problem(s)", check: func(t *testing.T, st build.Status, recs []build.Record) {
			if !strings.Contains(allText(recs), ".wharf-ci.yml:4:7: stages.build.steps.compile.container.cmds: required field is missing") {
				t.Fatalf("log does not explain the problem:\n%s", allText(recs))
			}
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := gitRepo(t, c.name)
			req := job.Request{BuildRef: fmt.Sprint(7 + i*0), Instance: c.name, GitFullURL: repo, GitBranch: "main", RepoName: c.name,
				Environment: c.env, Vars: c.vars, SecretVars: c.secretVars}
			code, st, recs := runBuild(t, s, req)
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
	if code != worker.ExitFailed || st.Status != build.Failed || st.Reason != build.ReasonCancelled {
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
	if code != worker.ExitFailed || st.Reason != build.ReasonDeadlineExceeded {
		t.Fatalf("deadline: exit %d reason %q", code, st.Reason)
	}
}

// helperWorker is the body of the SIGKILL test's child process.
func helperWorker() int { return 0 }
