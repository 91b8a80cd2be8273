// Package enginetest starts real, private container engines for tests:
// dockerd (Debian's docker.io) and Podman's API service (Debian's podman).
//
// The docker step runner (job/worker/dockerrun) talks the Docker Engine API
// to whichever engine a machine has, and the two engines differ in details
// (the names of loaded images, for one: see Engine.Load); a fake API would
// only test our idea of them. So its tests run against both engines for
// real.
//
// Each engine is private to the test package that starts it: its own
// process (group), its own data, state, sockets and configuration under a
// fresh directory in /tmp, removed again by Stop. Nothing touches the
// machine's network: dockerd runs with --bridge none and without iptables,
// Podman's network configuration lives in that directory and its netavark
// refuses to set up networks, so tests create their containers with
// network mode "none". The machine's own engines, if any, are neither used
// nor disturbed.
//
// Engines that cannot start fail the test, never skip it: a skipped runner
// test must never pass for a green one. `make engines` installs what is
// missing (root and apt, as on CI).
//
// docker.go and podman.go start the two engines, this file holds what
// they share (processes, waiting, stopping and cleaning up), api.go the
// calls the tests make (load an image, list images and containers),
// shared.go the engines a package's tests share, and busybox.go the test
// images.
package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The engines' binaries, at Debian's paths. The PATH is not searched: this
// machine has another, newer docker client in /usr/local/bin, and a test
// must know which engine it ran.
const (
	DockerdBin    = "/usr/sbin/dockerd"
	ContainerdBin = "/usr/bin/containerd"
	PodmanBin     = "/usr/bin/podman"
	UnshareBin    = "/usr/bin/unshare"
)

// APIVersion is the Docker Engine API version the harness speaks: the
// newest docker.io 20.10 serves, which Podman 4.3's compatible API also
// serves.
const APIVersion = "1.41"

// How long an engine may take to answer its first /_ping (about 2 s here)
// and to exit after SIGTERM before it is killed.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// Engine is one running engine.
type Engine struct {
	// Name is "docker" or "podman".
	Name string
	// Host is the engine's API address as DOCKER_HOST spells it,
	// "unix:///tmp/wj-docker-123/docker.sock".
	Host string
	// Dir is the engine's private directory (data, state, logs); tests may
	// put files there (Stop removes it).
	Dir string

	logPath string
	client  *http.Client

	mu    sync.Mutex
	procs []*proc // started in this order, stopped in reverse
}

// proc is a daemon process of an engine, in its own process group so that
// it and the children that stay in that group can be killed together
// (conmon and containerd's shims leave it: see waitHelpers).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // of cmd.Wait, valid after done
}

// newEngine makes the engine's directory and client; nothing runs yet.
func newEngine(name string) (*Engine, error) {
	// Under /tmp rather than $TMPDIR: unix socket paths are limited to 108
	// bytes and containerd's ttrpc socket sits two levels down.
	dir, err := os.MkdirTemp("/tmp", "wj-"+name+"-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, name+".sock")
	e := &Engine{Name: name, Host: "unix://" + sock, Dir: dir, logPath: filepath.Join(dir, name+".log")}
	e.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	return e, nil
}

// spawn starts cmd in its own process group with its output appended to the
// engine's log.
func (e *Engine) spawn(name string, cmd *exec.Cmd, env []string) (*proc, error) {
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== enginetest: %s\n", strings.Join(cmd.Args, " "))
	cmd.Dir = e.Dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary that dies (timeout panic, SIGKILL) takes its
	// daemons with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// waitFor polls ready until it succeeds, p exits or startTimeout passes.
func (e *Engine) waitFor(p *proc, what string, ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s was ready (%v); log %s:\n%s", p.name, what, p.err, e.logPath, e.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (%v); log %s:\n%s", what, startTimeout, err, e.logPath, e.Log())
		}
	}
}

// waitPing waits until the engine answers GET /_ping with OK.
func (e *Engine) waitPing(p *proc) error {
	return e.waitFor(p, e.Name+"'s API", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b, err := e.get(ctx, "/_ping")
		if err == nil && string(b) != "OK" {
			err = fmt.Errorf("/_ping answered %q", b)
		}
		return err
	})
}

// Log returns the tail of the engine's log (the daemons' output), for the
// message of a failed test.
func (e *Engine) Log() string {
	b, _ := os.ReadFile(e.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return strings.TrimSpace(string(b))
}

// Client returns an HTTP client that reaches the engine's API whatever the
// URL's host, "http://engine/v1.41/_ping".
func (e *Engine) Client() *http.Client { return e.client }

// Stop removes the engine's containers, stops its daemons (SIGTERM, then
// SIGKILL to their process groups after 20 s), unmounts what is still
// mounted under its directory and removes the directory. Stop is safe to
// call more than once.
func (e *Engine) Stop() {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	if len(procs) > 0 {
		// Removed through the API first, so that their mounts, runc state
		// and shims (conmon for Podman) go the engine's own way.
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		if ids, err := e.Containers(ctx, ""); err == nil {
			for _, id := range ids {
				_ = e.do(ctx, http.MethodDelete, "/containers/"+id+"?force=1&v=1", "", nil, nil)
			}
		}
		cancel()
		// The removals end asynchronously: Podman's conmon runs
		// `podman container cleanup`, which would recreate and mount
		// its storage after RemoveAll; containerd's shims exit.
		e.waitHelpers(procs, stopTimeout)
	}
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
		}
		// The group too: containerd's shims and anything else a daemon
		// left running in it.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	e.waitHelpers(nil, 0)
	unmountUnder(e.Dir)
	_ = os.RemoveAll(e.Dir)
}

// waitHelpers waits up to timeout for the processes that run for the engine
// outside the process groups of procs to exit, then kills those left.
// They are found by the engine's directory on their command line: conmon,
// Podman's cleanup processes and containerd's shims detach into sessions
// of their own, so no process group holds them.
func (e *Engine) waitHelpers(procs []*proc, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pids := e.helpers(procs)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// helpers lists the processes other than this one and the groups of procs
// whose command line names the engine's directory.
func (e *Engine) helpers(procs []*proc) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(e.Dir)) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && slices.ContainsFunc(procs, func(p *proc) bool { return p.cmd.Process.Pid == pgid }) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil && bytes.Contains(st, []byte(") Z ")) {
			continue // a zombie: exited, its parent has yet to reap it
		}
		pids = append(pids, pid)
	}
	return pids
}

// unmountUnder unmounts every mount point at or below dir, deepest first
// (Podman's overlay driver bind-mounts its own directory; a killed engine
// leaves its containers' root file systems mounted).
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	f.Close()
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := syscall.Unmount(p, 0); err != nil {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
