// Package miniotest starts a real MinIO server on a free loopback port for
// tests and benchmarks, and stops it again.
//
// The server binary is built by `make minio` (a pinned commit from the Go
// module proxy with one fix, hack/minio/flush.go, into .cache/bin);
// WHARFJOBS_MINIO_BIN overrides the path. Tests fail, rather than skip, when it is missing: a skipped storage
// test must never pass for a green one.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// Server is one MinIO process with its own data directory.
//
// A Server from Lazy (and the one Main shares) starts on its first Store,
// Config or Ensure, so tests that use no MinIO run without one; its
// Endpoint, AccessKey and SecretKey are empty until then.
type Server struct {
	// Endpoint is host:port of the S3 API.
	Endpoint  string
	AccessKey string
	SecretKey string

	bin, dir string
	port     int
	logPath  string
	ownDir   bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited

	lazy     bool
	once     sync.Once
	startErr error // of the lazy start, returned to every later caller
}

// Binary returns the path of the MinIO server binary or an error that says
// how to get it.
func Binary() (string, error) {
	return testenv.CachedBinary("minio", "WHARFJOBS_MINIO_BIN", "minio")
}

// Start runs a new server on a free loopback port with a fresh temporary
// data directory and waits until it answers.
func Start() (*Server, error) { return StartOn("127.0.0.1") }

// StartOn is Start listening on host instead of loopback, for clients that
// are not on this machine's loopback (pods of the test node).
func StartOn(host string) (*Server, error) {
	s := &Server{}
	if err := s.init(host); err != nil {
		return nil, err
	}
	return s, nil
}

// init fills in s for a new server on host and starts it.
func (s *Server) init(host string) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(os.Getenv("WHARFJOBS_MINIO_DATA_BASE"), "wharfjobs-minio-*")
	if err != nil {
		return err
	}
	port, err := testenv.FreePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	s.Endpoint = net.JoinHostPort(host, strconv.Itoa(port))
	s.AccessKey = "wharfjobs-test"
	s.SecretKey = testenv.RandomHex(16)
	s.bin, s.dir, s.port = bin, dir, port
	s.logPath = filepath.Join(dir, "minio.log")
	s.ownDir = true
	if err := s.start(); err != nil {
		_ = os.RemoveAll(dir)
		s.dir, s.ownDir = "", false
		return err
	}
	return nil
}

// Lazy returns a loopback server that starts on its first Store, Config or
// Ensure. Close it when done; if it never started, there is nothing to stop.
func Lazy() *Server { return &Server{lazy: true} }

// Ensure starts a Lazy server if it has not started yet (once: a failed
// start fails every later call the same way) and returns it; it is a no-op
// for a server from Start. Call it before reading Endpoint, AccessKey or
// SecretKey of a lazy server.
func (s *Server) Ensure(tb testing.TB) *Server {
	tb.Helper()
	if err := s.ensure(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func (s *Server) ensure() error {
	if !s.lazy {
		return nil
	}
	s.once.Do(func() { s.startErr = s.init("127.0.0.1") })
	return s.startErr
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("miniotest: server already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	consolePort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "server", "--quiet",
		"--address", s.Endpoint,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(consolePort)),
		filepath.Join(s.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		// Tests fill small disks quickly; never refuse writes for space.
		"MINIO_CI_CD=1",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	s.cmd = cmd
	done := make(chan struct{})
	s.done = done
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// /minio/health/ready answers 200 before the object layer exists (it
	// only sets a header), and S3 calls then fail with "Server not
	// initialized yet": the cluster check waits for the object layer.
	url := "http://" + s.Endpoint + "/minio/health/cluster"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := (&http.Client{Timeout: time.Second}).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("minio exited during start-up (%v); log: %s", waitErr, tail(s.logPath))
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			s.cmd = nil
			return fmt.Errorf("minio not ready after 60s; log: %s", tail(s.logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop kills the server process (SIGKILL, like a crashed pod) and keeps
// its data for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and data (a Lazy server
// that never started starts for the first time).
func (s *Server) Restart() error {
	if s.lazy {
		started := false
		s.once.Do(func() { s.startErr, started = s.init("127.0.0.1"), true })
		if started || s.startErr != nil {
			return s.startErr
		}
	}
	return s.start()
}

// Close stops the server and removes its data. A Lazy server that never
// started has neither.
func (s *Server) Close() {
	if s.lazy {
		// Nothing can start it after Close.
		s.once.Do(func() { s.startErr = errors.New("miniotest: server closed") })
	}
	s.Stop()
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

// Config is a blob.Config for this server with the given backend (minio or
// s3) and bucket. It starts a Lazy server; as it has no test to fail, it
// panics when that start fails (Store and Ensure fail the test instead).
func (s *Server) Config(backend, bucket string) blob.Config {
	if err := s.ensure(); err != nil {
		panic(err)
	}
	return blob.Config{
		Backend:      backend,
		Endpoint:     s.Endpoint,
		Bucket:       bucket,
		Region:       "us-east-1",
		AccessKey:    s.AccessKey,
		SecretKey:    s.SecretKey,
		PathStyle:    true,
		CreateBucket: true,
		Timeout:      10 * time.Second,
	}
}

// BucketName returns a fresh valid bucket name starting with prefix.
func BucketName(prefix string) string {
	return strings.ToLower(prefix) + "-" + testenv.RandomHex(6)
}

// Main is a TestMain body for packages whose tests share one server: it
// sets *srv to a Lazy server, runs the tests, stops the server if a test
// started it and exits. Tests that never call srv.Store, srv.Config or
// srv.Ensure run without MinIO (and without its binary).
func Main(m *testing.M, srv **Server) { os.Exit(Run(m, srv)) }

// Run is Main without the exit, for a TestMain that nests it in another
// harness's (m.Run inside both).
func Run(m interface{ Run() int }, srv **Server) int {
	s := Lazy()
	*srv = s
	defer s.Close()
	return m.Run()
}

// Store opens a fresh bucket (named from prefix) of this server with the
// given backend, and fails the test when it cannot.
func (s *Server) Store(tb testing.TB, backendName, prefix string) blob.Store {
	tb.Helper()
	s.Ensure(tb)
	st, err := backend.Open(context.Background(), s.Config(backendName, BucketName(prefix)))
	if err != nil {
		tb.Fatal(err)
	}
	return st
}
