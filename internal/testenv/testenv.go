// Package testenv holds what the harnesses that start real servers for
// tests (MinIO, the Kubernetes control plane) share: free loopback ports,
// random credentials and the module's root, where .cache/bin lives.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RandomHex returns n random bytes as hex, for throwaway credentials.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ModuleRoot is the directory of wharfjobs' go.mod above the working
// directory (nested modules such as hack/kube are skipped).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isRoot(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: wharfjobs' go.mod not found above the working directory")
		}
		dir = parent
	}
}

func isRoot(gomod []byte) bool {
	const mod = "module github.com/wharfjobs/wharfjobs\n"
	return len(gomod) >= len(mod) && string(gomod[:len(mod)]) == mod
}

// CachedBinary returns the path of a program the Makefile builds into
// .cache/bin (file), or the path in the environment variable env when set;
// the error names the make target that builds it.
func CachedBinary(file, env, target string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".cache", "bin", file)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `make %s` (or `make test`, which does it) or set %s", file, p, target, env)
	}
	return p, nil
}

// WaitFor calls check every interval until it returns nil; after timeout
// (or when ctx ends) it returns check's last error.
func WaitFor(ctx context.Context, timeout, interval time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		case <-time.After(interval):
		}
	}
}

// WaitHTTP waits until a GET of url through client answers 200 OK, every
// 100 ms for up to timeout; token, when set, goes as a bearer token.
func WaitHTTP(ctx context.Context, client *http.Client, url, token string, timeout time.Duration) error {
	return WaitFor(ctx, timeout, 100*time.Millisecond, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	})
}

// RSS is the resident set size (VmRSS) of process pid in bytes; pid 0 is
// this process.
func RSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmRSS %q: %w", path, f[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s has no VmRSS", path)
}

// Buffer is a bytes.Buffer a test reads while the code under test still
// writes it from other goroutines (a command's output, a step's log).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
