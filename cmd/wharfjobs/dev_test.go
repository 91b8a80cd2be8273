package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestMain lets the test binary stand in for the wharfjobs binary: the
// local launcher runs os.Executable() worker ..., which is this binary.
func TestMain(m *testing.M) {
	if os.Getenv("WHARFJOBS_TEST_MAIN") == "1" {
		// As main does: SIGTERM from the launcher cancels the worker.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	// The container engines start when a test first asks.
	os.Exit(enginetest.Run(m, &engines))
}

func freePort(t *testing.T) string {
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(p)
}

// TestDevDemo runs the README's first command and checks what it shows
// and what it stored.
func TestDevDemo(t *testing.T) {
	t.Setenv("WHARFJOBS_TEST_MAIN", "1")
	t.Setenv("PORT", freePort(t))
	t.Setenv("WHARFJOBS_TOKEN", "")
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"dev", "--demo", "--state", state}, &out, &errb); code != 0 {
		t.Fatalf("dev --demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	text := out.String()
	for _, want := range []string{
		"-> 201 Created",
		"build/compile            | hello from the demo from compile on main",
		"build/lint               | lint ok",
		"test/unit                | test 21 FAILED: expected 4, got 5",
		"test/unit                | testing the demo binary, an artifact of build/compile",
		"20 passed, 1 failed, 0 skipped",
		"report/notify            | build ",
		"FAILED ",
		"StepFailed: test/unit exit 1",
		"Read the log again with:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// What the aggregator saw of the status depends on when it polled;
	// it must end with the final one, after all 48 step and system lines,
	// the artifact and the test result.
	if !regexp.MustCompile(`the aggregator relayed 48 log lines, 2 artifacts and test results, and the statuses (\w+ -> )*Failed\.`).MatchString(text) {
		t.Errorf("aggregator summary missing or wrong:\n%s", text)
	}
	ref := regexp.MustCompile(`BUILD_REF=(\d+)`).FindStringSubmatch(text)
	if ref == nil {
		t.Fatalf("no build ref in the output:\n%s", text)
	}
	store, err := fs.Open(filepath.Join(state, "store"))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := build.ReadStatus(ctx, store, ref[1])
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != build.Failed || st.Reason != "StepFailed: test/unit exit 1" {
		t.Fatalf("status %s %q", st.Status, st.Reason)
	}
	steps := map[string]build.StepStatus{}
	for _, s := range st.Steps {
		steps[s.Stage+"/"+s.Step] = s
	}
	c, l := steps["build/compile"], steps["build/lint"]
	if !c.StartedAt.Before(*l.FinishedAt) || !l.StartedAt.Before(*c.FinishedAt) {
		t.Fatalf("the parallel steps did not overlap: compile %v-%v, lint %v-%v", c.StartedAt, c.FinishedAt, l.StartedAt, l.FinishedAt)
	}
	if steps["report/notify"].Status != build.Completed {
		t.Fatalf("the runs-if: fail stage did not run: %+v", steps["report/notify"])
	}
	// Every line each step printed is stored once, in order.
	rc, err := build.OpenLog(ctx, store, ref[1])
	if err != nil {
		t.Fatal(err)
	}
	byStep := map[string][]string{}
	build.ScanRecords(rc, func(r build.Record) error {
		if r.Stream != build.StreamSystem && !strings.HasPrefix(r.Text, "[wharfjobs]") {
			byStep[r.Stage+"/"+r.Step] = append(byStep[r.Stage+"/"+r.Step], r.Text)
		}
		return nil
	})
	rc.Close()
	unit := []string{"testing the demo binary, an artifact of build/compile"}
	for i := 1; i <= 20; i++ {
		unit = append(unit, fmt.Sprintf("test %d ok", i))
	}
	unit = append(unit, "test 21 FAILED: expected 4, got 5")
	want := map[string][]string{
		"build/compile": {"hello from the demo from compile on main", "compiled demo at " + st.Commit},
		"build/lint":    {"linting", "lint ok"},
		"test/unit":     unit,
		"report/notify": {"build " + ref[1] + " failed; a real pipeline would notify the team here"},
	}
	for step, lines := range want {
		if strings.Join(byStep[step], "\n") != strings.Join(lines, "\n") {
			t.Errorf("%s stored\n%q\nwant\n%q", step, byStep[step], lines)
		}
	}
	// wharfjobs logs prints the same lines afterwards.
	var logsOut bytes.Buffer
	if code := run(ctx, []string{"logs", "--raw", "--step", "test/unit", "--fs-root", filepath.Join(state, "store"), ref[1]}, &logsOut, &errb); code != 0 {
		t.Fatalf("logs exit %d: %s", code, errb.String())
	}
	var gotUnit []string
	for _, line := range strings.Split(strings.TrimSpace(logsOut.String()), "\n") {
		if !strings.HasPrefix(line, "[wharfjobs]") {
			gotUnit = append(gotUnit, line)
		}
	}
	if strings.Join(gotUnit, "\n") != strings.Join(unit, "\n") {
		t.Fatalf("logs --raw --step test/unit printed\n%s", logsOut.String())
	}
	var statusOut bytes.Buffer
	if code := run(ctx, []string{"status", "--fs-root", filepath.Join(state, "store")}, &statusOut, &errb); code != 0 || !strings.Contains(statusOut.String(), ref[1]+"  Failed") {
		t.Fatalf("status table:\n%s", statusOut.String())
	}
	// One build's status shows the test counts and artifacts per step.
	statusOut.Reset()
	if code := run(ctx, []string{"status", ref[1], "--fs-root", filepath.Join(state, "store")}, &statusOut, &errb); code != 0 ||
		!regexp.MustCompile(`test\s+unit\s+Failed\s+1\s+\S+\s+20 passed, 1 failed, 0 skipped`).MatchString(statusOut.String()) ||
		!regexp.MustCompile(`build\s+compile\s+Completed\s+0\s+\S+\s+1 \(16 B\)`).MatchString(statusOut.String()) {
		t.Fatalf("status %s:\n%s", ref[1], statusOut.String())
	}
	// wharfjobs artifacts lists, prints and downloads them.
	var artOut bytes.Buffer
	if code := run(ctx, []string{"artifacts", "--fs-root", filepath.Join(state, "store"), ref[1]}, &artOut, &errb); code != 0 ||
		!regexp.MustCompile(`build/compile\s+bin/app\s+16 B\s+artifact`).MatchString(artOut.String()) ||
		!regexp.MustCompile(`test/unit\s+report.xml.trx\s+\S+ (B|KiB)\s+test result`).MatchString(artOut.String()) {
		t.Fatalf("artifacts %s:\n%s%s", ref[1], artOut.String(), errb.String())
	}
	artOut.Reset()
	if code := run(ctx, []string{"artifacts", ref[1], "--get", "build/compile/bin/app", "--fs-root", filepath.Join(state, "store")}, &artOut, &errb); code != 0 || artOut.String() != "the demo binary\n" {
		t.Fatalf("artifacts --get: exit %d, %q", code, artOut.String())
	}
	dl := t.TempDir()
	if code := run(ctx, []string{"artifacts", ref[1], "-o", dl, "--fs-root", filepath.Join(state, "store")}, io.Discard, &errb); code != 0 {
		t.Fatalf("artifacts -o: exit %d: %s", code, errb.String())
	}
	if b, err := os.ReadFile(filepath.Join(dl, "build", "compile", "bin", "app")); err != nil || string(b) != "the demo binary\n" {
		t.Fatalf("downloaded artifact: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dl, "test-results", "test", "unit", "report.xml.trx")); err != nil || !strings.Contains(string(b), "<TestRun") {
		t.Fatalf("downloaded test result: %v", err)
	}
	if code := run(ctx, []string{"artifacts", ref[1], "--get", "nope", "--fs-root", filepath.Join(state, "store")}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), `no artifact "nope"`) {
		t.Fatalf("artifacts --get of a missing file: exit %d: %s", code, errb.String())
	}
}

// TestDevCtrlCCancelsRunningBuilds: stopping dev stops its builds, which
// record Cancelled and keep the lines they printed.
func TestDevCtrlCCancelsRunningBuilds(t *testing.T) {
	t.Setenv("WHARFJOBS_TEST_MAIN", "1")
	port := freePort(t)
	t.Setenv("PORT", port)
	t.Setenv("WHARFJOBS_TOKEN", "dev-token")
	state := t.TempDir()
	repo := filepath.Join(t.TempDir(), "repo")
	if err := makeDemoRepo(repo); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(repo, ".wharf-ci.yml"), []byte("slow:\n  wait:\n    container:\n      image: alpine\n      cmds: [\"echo waiting\", \"sleep 60\"]\n"), 0o644)
	gitCommit(t, repo)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	// Locked: the test reads them while dev writes them.
	out, errb := &testenv.Buffer{}, &testenv.Buffer{}
	go func() { done <- run(ctx, []string{"dev", "--state", state}, out, errb) }()
	base := "http://127.0.0.1:" + port
	q := url.Values{"BUILD_REF": {"5"}, "GIT_FULLURL": {"file://" + repo}, "GIT_BRANCH": {"main"}, "token": {"dev-token"}}
	var resp *http.Response
	err := testenv.WaitFor(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		var err error
		resp, err = http.Post(base+"/api/worker?"+q.Encode(), "", nil)
		return err
	})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger: %v %v", resp, err)
	}
	resp.Body.Close()
	store, _ := fs.Open(filepath.Join(state, "store"))
	err = testenv.WaitFor(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		st, _, _ := build.ReadStatus(context.Background(), store, "5")
		if len(st.Steps) > 0 && st.Steps[0].Status == build.Running {
			return nil
		}
		return fmt.Errorf("build 5 is %s", st.Status)
	})
	if err != nil {
		t.Fatalf("build never ran: %v\n%s\n%s", err, out.String(), errb.String())
	}
	// Cancel once the step's line is out: dev's sink printed it, so it is
	// in the store, whose log must keep it.
	err = testenv.WaitFor(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "| waiting\n") {
			return errors.New(`dev printed no "waiting" line yet`)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errb.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev exit %d: %s", code, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("dev did not stop")
	}
	st, _, _ := build.ReadStatus(context.Background(), store, "5")
	if st.Status != build.Failed || st.Reason != string(build.ReasonCancelled) {
		t.Fatalf("status after Ctrl-C: %s %q", st.Status, st.Reason)
	}
	rc, _ := build.OpenLog(context.Background(), store, "5")
	var texts []string
	build.ScanRecords(rc, func(r build.Record) error { texts = append(texts, r.Text); return nil })
	rc.Close()
	if !strings.Contains(strings.Join(texts, "\n"), "waiting") || !strings.Contains(out.String(), "[5] status Failed (Cancelled)") {
		t.Fatalf("log %q\nstdout %s", texts, out.String())
	}
}

func gitCommit(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "slow"}} {
		cmd := execGit(dir, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
}

func execGit(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	return cmd
}

// TestDevDemoOnMinIO: the same demo with --store minio against a real
// MinIO; logs reads it back with the same flags.
func TestDevDemoOnMinIO(t *testing.T) {
	srv, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("WHARFJOBS_TEST_MAIN", "1")
	t.Setenv("PORT", freePort(t))
	t.Setenv("WHARFJOBS_TOKEN", "")
	t.Setenv("WHARFJOBS_STORE_ACCESS_KEY", srv.AccessKey)
	t.Setenv("WHARFJOBS_STORE_SECRET_KEY", srv.SecretKey)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	storeArgs := []string{"--store", "minio", "--endpoint", srv.Endpoint, "--bucket", "demo-builds"}
	if code := run(ctx, append([]string{"dev", "--demo", "--state", t.TempDir()}, storeArgs...), &out, &errb); code != 0 {
		t.Fatalf("dev --demo --store minio exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "minio store at "+srv.Endpoint) || !strings.Contains(out.String(), "StepFailed: test/unit exit 1") {
		t.Fatalf("output:\n%s", out.String())
	}
	ref := regexp.MustCompile(`BUILD_REF=(\d+)`).FindStringSubmatch(out.String())[1]
	var logsOut bytes.Buffer
	if code := run(ctx, append(append([]string{"logs", "--raw", "--step", "report/notify"}, storeArgs...), ref), &logsOut, &errb); code != 0 {
		t.Fatalf("logs exit %d: %s", code, errb.String())
	}
	if !strings.Contains(logsOut.String(), "build "+ref+" failed; a real pipeline would notify the team here") {
		t.Fatalf("logs from MinIO:\n%s", logsOut.String())
	}
}
