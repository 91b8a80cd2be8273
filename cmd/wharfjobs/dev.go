package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/wharfapi"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job/local"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
)

//go:embed demorepo
var demoRepo embed.FS

// relaySummary is the demo's sink: the followed log already shows every
// line, so the aggregator's deliveries are summed up instead.
type relaySummary struct {
	lines, files atomic.Int64
	mu           sync.Mutex
	statuses     []string
}

// String sums up what the aggregator relayed.
func (r *relaySummary) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("the aggregator relayed %d log lines, %d artifacts and test results, and the statuses %s", r.lines.Load(), r.files.Load(), strings.Join(r.statuses, " -> "))
}

func (r *relaySummary) Lines(_ context.Context, _ aggregator.Build, recs []build.Record) error {
	r.lines.Add(int64(len(recs)))
	return nil
}

func (r *relaySummary) Status(_ context.Context, _ aggregator.Build, st build.Status) error {
	r.mu.Lock()
	r.statuses = append(r.statuses, string(st.Status))
	r.mu.Unlock()
	return nil
}

func (r *relaySummary) Artifact(_ context.Context, _ aggregator.Build, _ string, rd io.Reader) error {
	r.files.Add(1)
	_, err := io.Copy(io.Discard, rd)
	return err
}

func (r *relaySummary) TestResult(ctx context.Context, b aggregator.Build, name string, rd io.Reader) error {
	return r.Artifact(ctx, b, name, rd)
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("dev", "[--demo] [--runner auto|docker|local] [--state DIR] [store flags] [--insecure-no-auth]", "Runs the provisioner, the aggregator and local worker processes in one process on\n127.0.0.1:$PORT; the workers run steps in containers when a Docker or Podman engine\nanswers (--runner), else as processes. --demo triggers one example build, follows it and\nexits. The workers inherit the environment: the settings 'wharfjobs worker --help' lists\nreach them.", stdout, stderr)
	fl := cl.fl
	demo := fl.Bool("demo", false, "trigger one build of the example repository, follow it, then exit")
	insecure := fl.Bool("insecure-no-auth", false, "accept API requests without a token (any local user could then run commands as you)")
	state := fl.String("state", ".wharfjobs", "state directory (the fs store, workspaces, worker logs)")
	runnerChoice := fl.String("runner", "auto", runnerUsage)
	sf := addStoreFlags(cl, "STATE/store")
	cl.env(&aggregator.Config{}, &wharfapi.Config{}, &provisioner.Config{}, &provisioner.HTTPConfig{}, &dockerrun.Config{})
	cl.envVar("PORT", defaultPort, "port of the API on 127.0.0.1")
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	// The aggregator's sink and dev itself both print.
	stdout = &lockedWriter{w: stdout}
	if err := os.MkdirAll(*state, 0o755); err != nil {
		return err
	}
	stateDir, _ := filepath.Abs(*state)
	if *sf.fsRoot == "" && os.Getenv("WHARFJOBS_STORE_FS_ROOT") == "" {
		*sf.fsRoot = filepath.Join(stateDir, "store")
	}
	storeCfg, err := sf.config()
	if err != nil {
		return err
	}
	var relayCfg aggregator.Config
	var apiCfg wharfapi.Config
	var provCfg provisioner.Config
	var httpCfg provisioner.HTTPConfig
	for _, part := range []any{&relayCfg, &apiCfg, &provCfg, &httpCfg} {
		if err := loadEnv(part); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := backend.Open(ctx, storeCfg)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	launcher := &local.Launcher{
		Command:  func(ref string) *exec.Cmd { return exec.Command(exe, "worker", "--ref", ref) },
		StateDir: stateDir,
		Env:      storeEnv(storeCfg),
	}
	dr, err := pickRunner(ctx, *runnerChoice, stdout, stderr)
	if err != nil {
		return err
	}
	if dr != nil {
		// The workers talk to the engine that answered here.
		launcher.StepRunner = "docker"
		launcher.Env = append(launcher.Env, "WHARFJOBS_DOCKER_HOST="+dr.Host())
		dr.Close()
	}
	// Loopback is not private: any local user could trigger a build, that
	// is run commands as this user. Without a token, make one.
	provCfg.InsecureNoAuth = *insecure
	generated := false
	if provCfg.Token == "" && !*insecure {
		if provCfg.Token, err = newToken(); err != nil {
			return err
		}
		generated = true
	}
	api, err := provisioner.New(launcher, store, provCfg, logger)
	if err != nil {
		return err
	}

	var sink aggregator.Sink = &aggregator.WriterSink{W: stdout}
	summary := &relaySummary{}
	if *demo {
		sink = summary
	}
	if apiCfg.URL != "" {
		ws, err := wharfapi.New(apiCfg)
		if err != nil {
			return err
		}
		defer ws.Close()
		sink = ws
	}
	relayCfg.Logger = logger
	if relayCfg.PollInterval <= 0 || relayCfg.PollInterval > 200*time.Millisecond {
		relayCfg.PollInterval = 200 * time.Millisecond
	}
	// The launcher's worker states, so a worker that dies is a lost build
	// within a poll, as a failed Job is in a cluster (not only after the
	// heartbeat timeout).
	agg := aggregator.New(store, sink, launcher, relayCfg)
	watchMinIO(agg, store, logger)

	port := listenPort()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1:%s (set PORT to use another port): %w", port, err)
	}
	base := "http://" + ln.Addr().String()
	srv := httpCfg.Server(api)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	aggDone := make(chan struct{})
	go func() { _ = agg.Run(runCtx); close(aggDone) }()

	fmt.Fprintf(stdout, "wharfjobs dev: provisioner on %s, store %s\n", base, storeCfg.Where())
	fmt.Fprintf(stdout, "wharf-api engine URL: %s/api/worker\n", base)
	switch {
	case provCfg.InsecureNoAuth:
		fmt.Fprintf(stdout, "--insecure-no-auth: the API accepts requests without a token; any local user can run commands as you\n")
	case generated:
		// wharf-api replaces the URL's query, so the token is its own setting.
		fmt.Fprintf(stdout, "engine token (wharf-api's ci.engine.token; set WHARFJOBS_TOKEN to choose one): %s\n", provCfg.Token)
	}

	var runErr error
	if *demo {
		runErr = runDemoBuild(ctx, base, provCfg.Token, stateDir, store, agg, stdout, summary)
	} else {
		<-ctx.Done()
		fmt.Fprintln(stdout, "stopping: cancelling running builds")
	}
	// Shut down in order: workers record Cancelled and flush, the
	// aggregator relays that, then the API goes.
	stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	launcher.StopAll(stopCtx)
	stopRun()
	<-aggDone
	if err := agg.Once(stopCtx); err != nil {
		logger.Warn("final relay pass", "error", err)
	}
	_ = srv.Shutdown(stopCtx)
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("serve the API: %w", err)
	}
	return runErr
}

// newToken makes an engine token for a dev session: 128 random bits.
func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// makeDemoRepo writes the example repository as a git repository.
func makeDemoRepo(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{"demorepo/wharf-ci.yml": ".wharf-ci.yml", "demorepo/README.md": "README.md"} {
		b, err := demoRepo.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"-c", "user.name=wharfjobs", "-c", "user.email=demo@wharfjobs.invalid", "commit", "-q", "-m", "demo pipeline"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// runDemoBuild triggers the example build over the real HTTP API, exactly
// as wharf-api would, follows its log and prints the summary.
func runDemoBuild(ctx context.Context, base, token, stateDir string, store blob.Store, agg *aggregator.Aggregator, stdout io.Writer, relayed fmt.Stringer) error {
	repo := filepath.Join(stateDir, "demo-repo")
	if err := makeDemoRepo(repo); err != nil {
		return fmt.Errorf("create the demo repository: %w", err)
	}
	buildRef := fmt.Sprint(time.Now().Unix())
	q := url.Values{"BUILD_REF": {buildRef}, "REPO_NAME": {"demo"}, "REPO_GROUP": {"wharfjobs"}, "REPO_BRANCH": {"main"}, "GIT_BRANCH": {"main"},
		"RUN_STAGES": {"ALL"}, "VARS": {"GREETING: hello from the demo\n"}, "GIT_FULLURL": {"file://" + repo}}
	if token != "" {
		q.Set("token", token)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/worker?"+q.Encode(), nil)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("trigger the demo build: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("trigger the demo build: %s: %s", resp.Status, body)
	}
	fmt.Fprintf(stdout, "POST /api/worker?BUILD_REF=%s... -> %s %s\n\n", buildRef, resp.Status, strings.TrimSpace(string(body)))
	ref := buildRef
	p := newPrinter(stdout)
	st, err := build.Follow(ctx, store, ref, 100*time.Millisecond, p.record)
	if err != nil {
		return fmt.Errorf("follow build %s: %w", ref, err)
	}
	// Give the aggregator the moment it needs to relay the final status.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pending, err := agg.Pending(ctx)
		if err == nil && !slices.Contains(pending, ref) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.summary(st)
	fmt.Fprintf(stdout, "%s.\n", relayed)
	hint := "go run ./cmd/wharfjobs logs " + ref
	if wd, _ := os.Getwd(); filepath.Join(wd, ".wharfjobs") != stateDir {
		hint = fmt.Sprintf("go run ./cmd/wharfjobs logs --fs-root %s %s", filepath.Join(stateDir, "store"), ref)
	}
	fmt.Fprintf(stdout, "\nRead the log again with:\n  %s\n", hint)
	return nil
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
