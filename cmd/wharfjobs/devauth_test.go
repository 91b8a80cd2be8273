package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// startDev runs `wharfjobs dev` with args until the test ends and returns
// its base URL and stdout.
func startDev(t *testing.T, args ...string) (string, *testenv.Buffer) {
	t.Helper()
	t.Setenv("WHARFJOBS_TEST_MAIN", "1")
	port := freePort(t)
	t.Setenv("PORT", port)
	ctx, cancel := context.WithCancel(context.Background())
	out, errb := &testenv.Buffer{}, &testenv.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"dev", "--state", t.TempDir()}, args...), out, errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("dev did not stop")
		}
	})
	base := "http://127.0.0.1:" + port
	err := testenv.WaitFor(ctx, 10*time.Second, 25*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "engine URL") {
			return errors.New("no engine URL printed yet")
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err != nil {
		t.Fatalf("dev did not start: %v\n%s\n%s", err, out.String(), errb.String())
	}
	return base, out
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Issue #14, MEDIUM 7: dev without WHARFJOBS_TOKEN accepted requests
// without a token, so any local user could trigger a build, that is run
// commands as dev's user.
func TestDevMakesATokenWhenNoneIsSet(t *testing.T) {
	t.Setenv("WHARFJOBS_TOKEN", "")
	base, out := startDev(t)
	m := regexp.MustCompile(`engine token \(wharf-api's ci.engine.token; set WHARFJOBS_TOKEN to choose one\): ([0-9a-f]{32})\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("dev printed no token:\n%s", out.String())
	}
	if code := statusOf(t, base+"/api/worker"); code != http.StatusUnauthorized {
		t.Errorf("list without a token: %d, want 401", code)
	}
	if code := statusOf(t, base+"/api/worker?token="+m[1]); code != http.StatusOK {
		t.Errorf("list with the printed token: %d, want 200", code)
	}
}

func TestDevInsecureNoAuthIsExplicit(t *testing.T) {
	t.Setenv("WHARFJOBS_TOKEN", "")
	base, out := startDev(t, "--insecure-no-auth")
	if !strings.Contains(out.String(), "--insecure-no-auth: the API accepts requests without a token") {
		t.Errorf("no warning:\n%s", out.String())
	}
	if code := statusOf(t, base+"/api/worker"); code != http.StatusOK {
		t.Errorf("list without a token under --insecure-no-auth: %d", code)
	}
}

// Issue #14, LOW 8: dev's server had no ReadTimeout, so a client sending
// its body slowly held a connection forever.
func TestDevServerDropsSlowClients(t *testing.T) {
	t.Setenv("WHARFJOBS_TOKEN", "dev-token")
	t.Setenv("WHARFJOBS_HTTP_READ_TIMEOUT", "300ms")
	base, _ := startDev(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A body that never comes: after its answer the server reads what is
	// left of it to reuse the connection, and must give up.
	if _, err := conn.Write([]byte("POST /api/worker?token=dev-token HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("the server kept the connection of a client that stopped sending: %v (after %q)", err, rest)
	}
}

// workerPID finds the worker process of build ref among this machine's
// processes (dev starts it as `<test binary> worker --ref ref`).
func workerPID(t *testing.T, ref string) int {
	t.Helper()
	want := "worker\x00--ref\x00" + ref + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasSuffix(string(cmdline), want) {
			return pid
		}
	}
	return 0
}

// A worker killed with SIGKILL leaves no final status behind; dev's
// aggregator knows from the launcher that it exited and fails the build
// (and its running step) at once, as it does for a failed Job in a
// cluster, instead of after the 2-minute heartbeat timeout.
func TestDevKilledWorkerFailsTheBuild(t *testing.T) {
	t.Setenv("WHARFJOBS_TOKEN", "dev-token")
	t.Setenv("WHARFJOBS_HEARTBEAT_TIMEOUT", "1h") // only the launcher can tell
	state := t.TempDir()
	repo := filepath.Join(t.TempDir(), "repo")
	if err := makeDemoRepo(repo); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, ".wharf-ci.yml"), []byte("slow:\n  wait:\n    container:\n      image: alpine\n      cmds: [\"echo waiting\", \"sleep 120\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCommit(t, repo)
	base, _ := startDev(t, "--state", state)
	q := url.Values{"BUILD_REF": {"9"}, "GIT_FULLURL": {"file://" + repo}, "GIT_BRANCH": {"main"}, "token": {"dev-token"}}
	resp, err := http.Post(base+"/api/worker?"+q.Encode(), "", nil)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger: %v %v", resp, err)
	}
	resp.Body.Close()
	store, err := fs.Open(filepath.Join(state, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pid := 0
	err = testenv.WaitFor(ctx, 30*time.Second, 20*time.Millisecond, func() error {
		if st, _, _ := build.ReadStatus(ctx, store, "9"); len(st.Steps) > 0 && st.Steps[0].Status == build.Running {
			pid = workerPID(t, "9")
		}
		if pid == 0 {
			return errors.New("no running step with its worker process")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the build never ran: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var st build.Status
	err = testenv.WaitFor(ctx, 30*time.Second, 20*time.Millisecond, func() error {
		st, _, _ = build.ReadStatus(ctx, store, "9")
		if st.Status != build.Failed {
			return fmt.Errorf("build is %s", st.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("build still %s 30s after its worker was killed: %v", st.Status, err)
	}
	t.Logf("build Failed %v after SIGKILL: %s", time.Since(killed).Round(time.Millisecond), st.Reason)
	if !strings.HasPrefix(st.Reason, build.ReasonWorkerLost.String()) || len(st.Steps) != 1 || st.Steps[0].Status != build.Failed {
		t.Fatalf("status after the worker was killed: %+v", st)
	}
}

// The aggregator command used to os.Exit from its server's goroutine when
// the port was taken, skipping its own shutdown; now the error ends the
// relay and is returned.
func TestAggregatorPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	t.Setenv("PORT", port)
	t.Setenv("WHARFJOBS_STORE", "fs")
	t.Setenv("WHARFJOBS_STORE_FS_ROOT", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"aggregator", "--no-kube"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "serve /healthz, /readyz and /metrics") || ctx.Err() != nil {
		t.Fatalf("exit %d (ctx %v): %s", code, ctx.Err(), errb.String())
	}
}
