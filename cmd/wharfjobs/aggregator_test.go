package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// writeFinishedBuild stores a build as a worker leaves it: n log lines,
// the status Completed and the compacted log.
func writeFinishedBuild(t *testing.T, s blob.Store, ref string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Running}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, build.WriterConfig{SpillDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := w.Write(build.Record{Stage: "build", Step: "go", Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d of %s", i, ref)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Status = build.Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := build.Compact(ctx, s, ref); err != nil { // as the worker does after its final status
		t.Fatal(err)
	}
}

// aggregatorStore starts a MinIO for the test, opens bucket on it and
// points the aggregator command's WHARFJOBS_STORE_* variables at it, with
// env's variables besides.
func aggregatorStore(t *testing.T, bucket string, env map[string]string) (*miniotest.Server, blob.Config, blob.Store) {
	t.Helper()
	srv, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cfg := srv.Config(blob.BackendMinIO, miniotest.BucketName(bucket))
	store, err := backend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(env, map[string]string{
		"WHARFJOBS_STORE": cfg.Backend, "WHARFJOBS_STORE_ENDPOINT": cfg.Endpoint, "WHARFJOBS_STORE_BUCKET": cfg.Bucket,
		"WHARFJOBS_STORE_ACCESS_KEY": cfg.AccessKey, "WHARFJOBS_STORE_SECRET_KEY": cfg.SecretKey,
		"WHARFJOBS_WHARF_API_URL": "", "WHARFJOBS_LOG_FORMAT": "text",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	return srv, cfg, store
}

// TestAggregatorCommand runs `wharfjobs aggregator` against a real MinIO
// as an operator would: --once twice (the second relays nothing again),
// then long-running with /healthz, /readyz and /metrics over HTTP, a build
// arriving meanwhile, and the exit after WHARFJOBS_IDLE_EXIT.
func TestAggregatorCommand(t *testing.T) {
	port := freePort(t)
	srv, cfg, store := aggregatorStore(t, "agg-cmd", map[string]string{"PORT": port, "WHARFJOBS_POLL_INTERVAL": "200ms", "WHARFJOBS_IDLE_EXIT": "2s"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	writeFinishedBuild(t, store, "7", 10)
	relayed := func(out, ref string) int { return strings.Count(out, "["+ref+"] build/go") }

	out, errb := &testenv.Buffer{}, &testenv.Buffer{}
	if code := run(ctx, []string{"aggregator", "--once", "--no-kube"}, out, errb); code != 0 {
		t.Fatalf("aggregator --once: exit %d\n%s", code, errb.String())
	}
	if n := relayed(out.String(), "7"); n != 10 || !strings.Contains(out.String(), "[7] status Completed") {
		t.Fatalf("aggregator --once relayed %d of 10 lines:\n%s", n, out.String())
	}
	again := &testenv.Buffer{}
	if code := run(ctx, []string{"aggregator", "--once", "--no-kube"}, again, errb); code != 0 {
		t.Fatalf("second aggregator --once: exit %d\n%s", code, errb.String())
	}
	if again.String() != "" {
		t.Fatalf("a second --once relayed again what the first acknowledged:\n%s", again.String())
	}

	long := &testenv.Buffer{}
	done := make(chan int, 1)
	idleExit := func(when string) {
		t.Helper()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("aggregator exit %d\n%s", code, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("aggregator did not exit after WHARFJOBS_IDLE_EXIT=2s %s", when)
		}
	}
	go func() { done <- run(ctx, []string{"aggregator", "--no-kube"}, long, errb) }()
	base := "http://127.0.0.1:" + port
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if err := testenv.WaitHTTP(ctx, client, base+"/healthz", "", 30*time.Second); err != nil {
		t.Fatalf("/healthz: %v\n%s", err, errb.String())
	}
	if err := testenv.WaitHTTP(ctx, client, base+"/readyz", "", 10*time.Second); err != nil {
		t.Fatalf("/readyz: %v\n%s", err, errb.String())
	}
	writeFinishedBuild(t, store, "8", 5)
	if err := testenv.WaitFor(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(long.String(), "[8] status Completed") {
			return fmt.Errorf("build 8 not relayed:\n%s", long.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := relayed(long.String(), "8"); n != 5 || relayed(long.String(), "7") != 0 {
		t.Fatalf("long-running aggregator relayed %d of build 8's 5 lines and %d of build 7's (want 0):\n%s", n, relayed(long.String(), "7"), long.String())
	}
	// Its relay is final: the chunks go, the compacted log stays.
	if err := testenv.WaitFor(ctx, 5*time.Second, 50*time.Millisecond, func() error {
		if c, err := build.AllChunks(ctx, store, "8", 0); err != nil || len(c) != 0 {
			return fmt.Errorf("%d chunks of build 8 left (%v)", len(c), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	if code := run(ctx, []string{"logs", "--raw", "8"}, logs, errb); code != 0 || strings.Count(logs.String(), "of 8") != 5 {
		t.Fatalf("wharfjobs logs 8 after the chunks went: exit %d\n%s", code, logs.String())
	}
	// Build 8 may have been seen Running before it was Completed; the
	// counters move just after the sink printed, once the cursor is written.
	statuses := strings.Count(long.String(), "[8] status ")
	if err := testenv.WaitFor(ctx, 5*time.Second, 50*time.Millisecond, func() error {
		_, metrics, err := get("/metrics")
		if err != nil {
			return err
		}
		for _, want := range []string{"wharfjobs_relay_lines_total 5\n", fmt.Sprintf("wharfjobs_relay_statuses_total %d\n", statuses), `wharfjobs_relay_errors_total{kind="discovery"} 0`} {
			if !strings.Contains(string(metrics), want) {
				return fmt.Errorf("/metrics lacks %q:\n%s", want, metrics)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	idleExit("with nothing to relay")
	if !strings.Contains(errb.String(), "idle, exiting") {
		t.Errorf("no idle exit logged:\n%s", errb.String())
	}

	// MinIO down: /readyz says so, and an aggregator that cannot see the
	// store does not take that for idleness; back up, it is ready again.
	down := &testenv.Buffer{}
	go func() { done <- run(ctx, []string{"aggregator", "--no-kube"}, down, errb) }()
	if err := testenv.WaitHTTP(ctx, client, base+"/readyz", "", 30*time.Second); err != nil {
		t.Fatalf("/readyz: %v\n%s", err, errb.String())
	}
	srv.Stop()
	if err := testenv.WaitFor(ctx, 10*time.Second, 100*time.Millisecond, func() error {
		code, body, err := get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, cfg.Endpoint) {
			return fmt.Errorf("/readyz answered %d %q, want 503 naming the store", code, body)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		t.Fatalf("aggregator exited (%d) while the store was down: it took an outage for idleness", code)
	case <-time.After(4 * time.Second): // twice WHARFJOBS_IDLE_EXIT
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitHTTP(ctx, client, base+"/readyz", "", 30*time.Second); err != nil {
		t.Fatalf("/readyz after MinIO came back: %v", err)
	}
	idleExit("once MinIO was back")

	for _, o := range []string{out.String(), long.String(), down.String(), errb.String()} {
		if strings.Contains(o, cfg.SecretKey) {
			t.Fatal("the store's secret key reached the output")
		}
	}
}

// TestAggregatorDrainsOnStop: stopped (SIGTERM, here the context) while a
// build is still Running, `wharfjobs aggregator` goes on relaying it and
// exits once its final status is relayed; a build still pending after
// WHARFJOBS_DRAIN_TIMEOUT does not hold it longer.
func TestAggregatorDrainsOnStop(t *testing.T) {
	_, _, store := aggregatorStore(t, "agg-drain", map[string]string{"PORT": freePort(t), "WHARFJOBS_POLL_INTERVAL": "200ms", "WHARFJOBS_DRAIN_TIMEOUT": "30s"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func(ref string) (out, errb *testenv.Buffer, stop context.CancelFunc, done chan int) {
		t.Helper()
		if _, err := build.WriteStatus(ctx, store, ref, build.Status{Status: build.Running}, ""); err != nil {
			t.Fatal(err)
		}
		out, errb, done = &testenv.Buffer{}, &testenv.Buffer{}, make(chan int, 1)
		runCtx, stop := context.WithCancel(ctx)
		go func() { done <- run(runCtx, []string{"aggregator", "--no-kube"}, out, errb) }()
		if err := testenv.WaitFor(ctx, 30*time.Second, 50*time.Millisecond, func() error {
			if !strings.Contains(out.String(), "["+ref+"] status Running") {
				return fmt.Errorf("build %s's Running not relayed:\n%s", ref, errb.String())
			}
			return nil
		}); err != nil {
			stop()
			t.Fatal(err)
		}
		return out, errb, stop, done
	}

	out, errb, stop, done := start("9")
	stop()
	select {
	case code := <-done:
		t.Fatalf("the aggregator exited (%d) at once with build 9 still Running\n%s", code, errb.String())
	case <-time.After(time.Second):
	}
	if _, err := build.UpdateStatus(ctx, store, "9", func(st *build.Status) error { st.Status = build.Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("drained aggregator: exit %d\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the aggregator did not exit once build 9 was relayed\n%s", errb.String())
	}
	if !strings.Contains(out.String(), "[9] status Completed") {
		t.Fatalf("build 9's Completed was not relayed during the drain:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "drained") {
		t.Errorf("the drain's end was not logged:\n%s", errb.String())
	}

	t.Setenv("WHARFJOBS_DRAIN_TIMEOUT", "1s")
	_, errb, stop, done = start("10")
	stopped := time.Now()
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("aggregator stopped after its drain timeout: exit %d\n%s", code, errb.String())
		}
		if d := time.Since(stopped); d < time.Second {
			t.Errorf("the aggregator exited %v after the stop, before WHARFJOBS_DRAIN_TIMEOUT=1s, with build 10 Running", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the aggregator outlived WHARFJOBS_DRAIN_TIMEOUT=1s by 19 s\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), "still pending") {
		t.Errorf("the drain's timeout was not logged:\n%s", errb.String())
	}
}
