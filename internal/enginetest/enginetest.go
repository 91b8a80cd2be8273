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
package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
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

// StartDocker starts a private dockerd, with its own containerd, under a
// fresh directory.
//
// dockerd would use the machine's containerd whenever
// /run/containerd/containerd.sock exists (it has no flag against that), so
// the harness always starts a containerd of its own and hands it over with
// --containerd.
func StartDocker() (*Engine, error) {
	for bin, deb := range map[string]string{DockerdBin: "docker.io", ContainerdBin: "containerd"} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("enginetest: %s not found: install Debian's %s: make engines", bin, deb)
		}
	}
	e, err := newEngine("docker")
	if err != nil {
		return nil, err
	}
	if err := e.startDocker(); err != nil {
		e.Stop()
		return nil, fmt.Errorf("enginetest: start dockerd: %w", err)
	}
	return e, nil
}

func (e *Engine) startDocker() error {
	cd := filepath.Join(e.Dir, "containerd")
	cdSock := filepath.Join(cd, "containerd.sock")
	// What dockerd writes for the containerd it manages itself (cri
	// disabled), in containerd 1.6's version 2 format, every path here.
	// The debug and metrics endpoints stay off.
	cdConf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(cd, "root"), filepath.Join(cd, "state"), cdSock, cdSock+".ttrpc")
	if err := os.MkdirAll(cd, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cd, "config.toml"), []byte(cdConf), 0o600); err != nil {
		return err
	}
	// An empty daemon.json of its own: /etc/docker/daemon.json, when the
	// machine has one, is the machine's dockerd's.
	daemonJSON := filepath.Join(e.Dir, "daemon.json")
	if err := os.WriteFile(daemonJSON, []byte("{}\n"), 0o600); err != nil {
		return err
	}
	// Their temporary files go to the engine's directory too.
	tmp := filepath.Join(e.Dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	env := []string{"TMPDIR=" + tmp}
	c, err := e.spawn("containerd", exec.Command(ContainerdBin, "--config", filepath.Join(cd, "config.toml")), env)
	if err != nil {
		return err
	}
	if err := e.waitFor(c, "containerd's socket", func() error { _, err := os.Stat(cdSock); return err }); err != nil {
		return err
	}
	d, err := e.spawn("dockerd", exec.Command(DockerdBin,
		"--host", e.Host,
		"--containerd", cdSock,
		"--config-file", daemonJSON,
		"--data-root", filepath.Join(e.Dir, "data"),
		"--exec-root", filepath.Join(e.Dir, "exec"),
		"--pidfile", filepath.Join(e.Dir, "docker.pid"),
		// No docker0 bridge and no iptables rules: the machine's network
		// stays as it was. Containers run with network mode "none".
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
	), env)
	if err != nil {
		return err
	}
	return e.waitPing(d)
}

// StartPodman starts a private `podman system service` under a fresh
// directory.
//
// Everything Podman 4.3 would keep in /etc/containers, /var/lib/containers,
// /run/libpod or /var/tmp goes there instead: storage (overlay), the libpod
// database, its tmp dirs, the network configuration, volumes, the events
// log and the container locks (file locks, not the shared-memory segment
// /dev/shm/libpod_lock that every rootful Podman on the machine shares and
// that, as libpod's refresh reads, a Podman starting with a fresh tmp dir
// frees wholesale). Its netavark is a stand-in that refuses to set up a
// network, so a container must have network mode "none" (or "host") to
// start, and nothing can create the podman0 bridge.
//
// Two paths no setting moves, /var/tmp (a load first tries the tarball as
// an OCI archive and unpacks it there) and /var/lib/containers/cache
// (containers/image's cache of layer digests), are the engine's own
// directories in the service's private mount namespace (see startPodman).
// What stays outside: runc's per-container state under /run/runc (removed
// with the container), and for a container started with a network, which
// fails, a network namespace file in /run/netns (removed again) and
// netavark's address database in its fixed run directory
// /run/containers/networks (the address is released again).
func StartPodman() (*Engine, error) {
	if _, err := os.Stat(PodmanBin); err != nil {
		return nil, fmt.Errorf("enginetest: %s not found: install Debian's podman: make engines", PodmanBin)
	}
	e, err := newEngine("podman")
	if err != nil {
		return nil, err
	}
	if err := e.startPodman(); err != nil {
		e.Stop()
		return nil, fmt.Errorf("enginetest: start podman: %w", err)
	}
	return e, nil
}

func (e *Engine) startPodman() error {
	root, run, tmp, nets, bin := filepath.Join(e.Dir, "root"), filepath.Join(e.Dir, "run"), filepath.Join(e.Dir, "tmp"), filepath.Join(e.Dir, "networks"), filepath.Join(e.Dir, "bin")
	for _, d := range []string{root, run, tmp, nets, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Podman's Docker-compatible API gives a container without a network
	// mode the bridge network whatever containers.conf says (its netns =
	// "none" below serves the libpod API), and netavark
	// would then create the podman0 bridge and its firewall rules. This
	// Podman's netavark is a stand-in that refuses, so such a container
	// fails to start instead of changing the machine's network.
	if err := os.WriteFile(filepath.Join(bin, "netavark"), []byte(noNetavark), 0o755); err != nil {
		return err
	}
	// default_ulimits = [], cgroupfs and the file events logger are the
	// settings Podman 4.3 was verified to run containers with on the test
	// machines (a VM without systemd or journald, open files limited to
	// 20000).
	conf := fmt.Sprintf(`[containers]
default_ulimits = []
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
lock_type = "file"
tmp_dir = %q
image_copy_tmp_dir = %q
volume_path = %q
helper_binaries_dir = [%q]

[network]
network_backend = "netavark"
network_config_dir = %q
`, filepath.Join(tmp, "events.log"), tmp, tmp, filepath.Join(root, "volumes"), bin, nets)
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", root, run)
	confPath, storagePath := filepath.Join(e.Dir, "containers.conf"), filepath.Join(e.Dir, "storage.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(storagePath, []byte(storage), 0o600); err != nil {
		return err
	}
	env := []string{
		"CONTAINERS_CONF=" + confPath,
		"CONTAINERS_STORAGE_CONF=" + storagePath,
		"TMPDIR=" + tmp,
	}
	// Two paths no setting moves: a load first tries the tarball as an
	// OCI archive, unpacking it under /var/tmp, and containers/image
	// records layer digests in /var/lib/containers/cache. The service runs
	// in a mount namespace of its own (its helpers, conmon and runc, with
	// it) where both are the engine's directories. The overlay mounts of
	// storage and containers stay in that namespace and go with it.
	varTmp, cache := filepath.Join(e.Dir, "var-tmp"), filepath.Join(e.Dir, "blob-cache")
	for _, d := range []string{varTmp, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	const wrap = `set -e
if [ -d /var/lib/containers/cache ]; then mount --bind "$1" /var/lib/containers/cache; fi
mount --bind "$2" /var/tmp
shift 2
exec "$@"`
	p, err := e.spawn("podman", exec.Command(UnshareBin, "--mount", "--propagation", "private", "/bin/sh", "-c", wrap, "sh", cache, varTmp,
		PodmanBin, "--root", root, "--runroot", run, "--tmpdir", tmp, "--network-config-dir", nets,
		"system", "service", "--time", "0", e.Host), env)
	if err != nil {
		return err
	}
	return e.waitPing(p)
}

// noNetavark is the netavark of a Podman from StartPodman. Podman reads a
// failed netavark's message as JSON from its standard output.
const noNetavark = `#!/bin/sh
echo '{"error": "enginetest: this Podman sets up no networks (they would change the machine network): create containers with network mode none"}'
exit 1
`

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

// The harness talks HTTP to the engine's socket itself rather than running
// a docker or podman CLI: the same code serves both engines (Podman's
// Docker-compatible API), no client on the PATH can be the wrong one (this
// machine has a newer docker in /usr/local/bin), and no second libpod
// opens Podman's store, and takes its locks, beside the running service.

// get returns the body of a GET of path (below /v1.41).
func (e *Engine) get(ctx context.Context, path string) ([]byte, error) {
	var out bytes.Buffer
	if err := e.do(ctx, http.MethodGet, path, "", nil, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// do sends a request to the engine's API and copies the answer's body to
// out; a status of 300 or more is an error with the engine's message.
func (e *Engine) do(ctx context.Context, method, path, contentType string, body io.Reader, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+e.Name+"/v"+APIVersion+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		out = io.Discard
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

// Load loads a docker-archive tarball (as internal/image writes it) into
// the engine, through POST /images/load.
//
// The names differ: dockerd lists an image tagged "busybox:e2e" as
// "busybox:e2e", Podman as "localhost/busybox:e2e" (a name without a
// registry is local to it). Both find it as "busybox:e2e" when a container
// is created.
func (e *Engine) Load(ctx context.Context, tarball string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	var out bytes.Buffer
	if err := e.do(ctx, http.MethodPost, "/images/load?quiet=1", "application/x-tar", f, &out); err != nil {
		return fmt.Errorf("%s: load %s: %w", e.Name, tarball, err)
	}
	// A failed load can still answer 200, with the error in the stream of
	// JSON messages.
	dec := json.NewDecoder(&out)
	for {
		var msg struct {
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: load %s: answer %q: %w", e.Name, tarball, out.String(), err)
		}
		if msg.Error != "" {
			return fmt.Errorf("%s: load %s: %s", e.Name, tarball, msg.Error)
		}
	}
}

// Images returns the tags of the engine's images (GET /images/json),
// sorted.
func (e *Engine) Images(ctx context.Context) ([]string, error) {
	b, err := e.get(ctx, "/images/json")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Name, err)
	}
	var imgs []struct{ RepoTags []string }
	if err := json.Unmarshal(b, &imgs); err != nil {
		return nil, fmt.Errorf("%s: images: %w", e.Name, err)
	}
	var tags []string
	for _, img := range imgs {
		tags = append(tags, img.RepoTags...)
	}
	sort.Strings(tags)
	return tags, nil
}

// Containers returns the IDs of the engine's containers in any state
// carrying label ("key=value", or "key" for any value), to check that
// nothing was left behind; "" lists every container.
func (e *Engine) Containers(ctx context.Context, label string) ([]string, error) {
	path := "/containers/json?all=1"
	if label != "" {
		filters, _ := json.Marshal(map[string][]string{"label": {label}})
		path += "&filters=" + url.QueryEscape(string(filters))
	}
	b, err := e.get(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Name, err)
	}
	var cs []struct{ Id string }
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("%s: containers: %w", e.Name, err)
	}
	ids := []string{}
	for _, c := range cs {
		ids = append(ids, c.Id)
	}
	return ids, nil
}

// Engines is what the tests of a package share: one dockerd and one Podman,
// each started on first use, so that tests that use neither run without
// them.
type Engines struct {
	docker, podman lazy
}

type lazy struct {
	start  func() (*Engine, error)
	once   sync.Once
	engine *Engine
	err    error // of the start, returned to every later caller
}

func (l *lazy) get() (*Engine, error) {
	l.once.Do(func() { l.engine, l.err = l.start() })
	return l.engine, l.err
}

// NewEngines returns Engines that have started nothing yet. Close them
// when done.
func NewEngines() *Engines {
	return &Engines{docker: lazy{start: StartDocker}, podman: lazy{start: StartPodman}}
}

// Docker returns the shared dockerd, starting it on the first call; a
// failed start fails this test and every later caller's.
func (s *Engines) Docker(tb testing.TB) *Engine {
	tb.Helper()
	e, err := s.docker.get()
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// Podman is Docker for the shared Podman.
func (s *Engines) Podman(tb testing.TB) *Engine {
	tb.Helper()
	e, err := s.podman.get()
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// All returns both engines, docker first, for tests that run the same
// thing on each (as subtests named by Engine.Name).
func (s *Engines) All(tb testing.TB) []*Engine {
	tb.Helper()
	return []*Engine{s.Docker(tb), s.Podman(tb)}
}

// Close stops the engines that started; none can start afterwards.
func (s *Engines) Close() {
	for _, l := range []*lazy{&s.docker, &s.podman} {
		l.once.Do(func() { l.err = errors.New("enginetest: engines closed") })
		if l.engine != nil {
			l.engine.Stop()
		}
	}
}

// Main is a TestMain body for a package whose tests share the engines: it
// sets *engines, runs the tests, stops the engines the tests started and
// exits.
func Main(m *testing.M, engines **Engines) { os.Exit(Run(m, engines)) }

// Run is Main without the exit, for a TestMain that nests it in another
// harness's (m.Run inside both).
func Run(m interface{ Run() int }, engines **Engines) int {
	s := NewEngines()
	*engines = s
	defer s.Close()
	return m.Run()
}
