// Package wharfapitest runs a real wharf-api for tests: release v5.2.0 with
// SQLite, built by `make wharf-api` into .cache/bin. Its module on the
// proxy lacks the generated swagger docs package, so the Makefile downloads
// the module with `go mod download`, generates docs with swag v1.8.1 and
// builds it with cgo (SQLite).
package wharfapitest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// Version is the wharf-api release the tests run (WHARF_API_VERSION in the
// Makefile).
const Version = "v5.2.0"

// Binary returns the path of the wharf-api binary.
func Binary() (string, error) {
	return testenv.CachedBinary("wharf-api-"+Version, "WHARFJOBS_WHARF_API_BIN", "wharf-api")
}

// Engine is the execution engine wharf-api triggers builds on.
type Engine struct {
	URL   string // e.g. http://127.0.0.1:8080/api/worker
	Token string
}

// Server is a running wharf-api.
type Server struct {
	// URL is its base URL (HTTP and gRPC on the same port).
	URL string

	dir  string
	cmd  *exec.Cmd
	once sync.Once
}

const configTmpl = `instanceId: ""
db:
  driver: sqlite
  path: %q
http:
  bindAddress: %q
ci:
  engine:
    id: wharfjobs
    name: wharfjobs
    api: wharf-cmd.v1
    url: %q
    token: %q
mq:
  enabled: false
`

// Start runs wharf-api on a free loopback port with a fresh SQLite
// database, triggering builds on engine, and waits until it answers.
func Start(engine Engine) (*Server, error) {
	return StartOn("127.0.0.1:0", engine)
}

// StartOn is Start listening on addr (host:port; port 0: a free one), for
// example the test node's bridge address, where pods reach it.
func StartOn(addr string, engine Engine) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("wharf-api address %q: %w", addr, err)
	}
	if port == "0" {
		p, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		addr = net.JoinHostPort(host, strconv.Itoa(p))
	}
	dir, err := os.MkdirTemp("", "wharf-api-*")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(configTmpl, filepath.Join(dir, "wharf.db"), addr, engine.URL, engine.Token)
	if err := os.WriteFile(filepath.Join(dir, "wharf-api-config.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "wharf-api.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WHARF_CONFIG="+filepath.Join(dir, "wharf-api-config.yml"), "GIN_MODE=release")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start wharf-api: %w", err)
	}
	s := &Server{URL: "http://" + addr, dir: dir, cmd: cmd}
	health := s.URL + "/api/health"
	if err := testenv.WaitHTTP(context.Background(), &http.Client{Timeout: time.Second}, health, "", 60*time.Second); err != nil {
		log := s.Log()
		s.Close()
		return nil, fmt.Errorf("wharf-api: %w; log: %s", err, log)
	}
	return s, nil
}

// StartTest is StartOn for a test: it fails t when wharf-api does not
// start, and stops it when t ends, showing its log first if t failed.
func StartTest(t testing.TB, addr string, engine Engine) *Server {
	t.Helper()
	s, err := StartOn(addr, engine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("wharf-api log:\n%s", s.Log())
		}
		s.Close()
	})
	return s
}

// Log returns the end of wharf-api's log.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "wharf-api.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Close stops wharf-api and removes its database.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = os.RemoveAll(s.dir)
	})
}
