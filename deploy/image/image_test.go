// Package image tests the image recipe users build, the Dockerfile at the
// repository's root: it builds that Dockerfile with a real Docker Engine
// and runs the image. It holds only this test, in a package of its own
// beside the deployment files that run the image, so that the image build
// (apt inside the build, about a minute) runs in parallel with the other
// packages' tests under `go test ./...` rather than lengthening one of them.
//
// No registry can be reached here, so the Dockerfile's base image is
// Debian's minbase from `make debian-base` (debootstrap), imported into a
// private dockerd (internal/enginetest) as debian:bookworm-slim: the
// Dockerfile is built unchanged, with its default BASE.
package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/dockerfile"
	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// dockerCLI is Debian's docker.io client, which matches the private
// dockerd (20.10).
const dockerCLI = dockerfile.DockerCLI

const (
	// The image and the version the test builds it with.
	imageName = "wharfjobs:imagetest"
	version   = "v0.0.0-imagetest"
	revision  = "0123456789abcdef0123456789abcdef01234567"
	created   = "2026-01-02T03:04:05Z"
	// maxSize bounds the image (docker image inspect's Size, bytes): it
	// is 62.7 MB here, the static binary 37.7 MB and git with its
	// libraries, dash and the certificates 25 MB; Debian with git, the
	// naive image, is 461 MB.
	maxSize = 150_000_000
)

// debianBase returns the debootstrap tarball (dockerfile.DebianBase).
func debianBase(t *testing.T) string {
	t.Helper()
	p, err := dockerfile.DebianBase()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// engine runs the docker client against one private dockerd.
type engine struct {
	t    *testing.T
	e    *enginetest.Engine
	conf string // DOCKER_CONFIG: not the machine's ~/.docker
}

// run runs the docker client with args and returns its stdout and stderr.
func (d *engine) run(args ...string) (string, string, error) {
	cmd := exec.Command(dockerCLI, args...)
	// The legacy builder, as the client's default (20.10) has it; BuildKit
	// would be DOCKER_BUILDKIT=1.
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.e.Host, "DOCKER_CONFIG="+d.conf, "DOCKER_BUILDKIT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must is run that fails the test on an error.
func (d *engine) must(args ...string) string {
	d.t.Helper()
	stdout, stderr, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, tail(stdout, 40), stderr)
	}
	return stdout
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// inspect is what the test reads of `docker image inspect`.
type inspect struct {
	Size   int64
	Config struct {
		User       string
		Entrypoint []string
		Cmd        []string
		Env        []string
		WorkingDir string
		Labels     map[string]string
	}
}

func TestDockerfileBuildsTheImage(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := debianBase(t)
	if _, err := os.Stat(dockerCLI); err != nil {
		t.Fatalf("%s not found: install Debian's docker.io: make engines", dockerCLI)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the test starts a private dockerd and gives the test repository to uid 65532: it needs root, as `make test` does")
	}

	t0 := time.Now()
	e, err := enginetest.StartDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	d := &engine{t: t, e: e, conf: t.TempDir()}
	defer func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(e.Dir, "docker.log")); err == nil {
				t.Logf("dockerd's log, last lines:\n%s", tail(string(b), 30))
			}
		}
	}()
	started := time.Since(t0)

	// The base, as the Dockerfile names it by default.
	t1 := time.Now()
	d.must("import", base, "debian:bookworm-slim")
	imported := time.Since(t1)

	// The build context as `make image` has it: the Dockerfile, the
	// .dockerignore and the static binary (built as `make build` does),
	// plus a large file the .dockerignore must keep out of the context
	// (as it keeps out .cache/ and .wharfjobs/ in the repository).
	t2 := time.Now()
	ctxDir := t.TempDir()
	bin := filepath.Join(ctxDir, "bin", "wharfjobs")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/wharfjobs")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	built := time.Since(t2)
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(ctxDir, ".cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	decoy, err := os.Create(filepath.Join(ctxDir, ".cache", "decoy"))
	if err != nil {
		t.Fatal(err)
	}
	if err := decoy.Truncate(64 << 20); err != nil { // sparse: costs nothing unless sent
		t.Fatal(err)
	}
	decoy.Close()
	binInfo, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}

	t3 := time.Now()
	buildArgs := []string{"build", "--network", "host",
		"--build-arg", "VERSION=" + version, "--build-arg", "REVISION=" + revision, "--build-arg", "CREATED=" + created,
		"-t", imageName, ctxDir}
	stdout, stderr, err := d.run(buildArgs...)
	if err != nil {
		t.Fatalf("docker %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(buildArgs, " "), err, tail(stdout, 60), stderr)
	}
	buildTime := time.Since(t3)
	out := stdout + stderr

	// The context holds the binary and the Dockerfile only.
	m := regexp.MustCompile(`Sending build context to Docker daemon\s+([0-9.]+)([kMG]?B)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no context size in the build's output:\n%s", tail(out, 40))
	}
	ctxSize, _ := strconv.ParseFloat(m[1], 64)
	ctxSize *= map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]]
	if limit := float64(binInfo.Size() + 1<<20); ctxSize > limit {
		t.Errorf("build context %s%s; want the binary (%d bytes) and the Dockerfile only: check .dockerignore", m[1], m[2], binInfo.Size())
	}

	// The image's configuration and labels.
	var info []inspect
	if err := json.Unmarshal([]byte(d.must("image", "inspect", imageName)), &info); err != nil || len(info) != 1 {
		t.Fatalf("docker image inspect: %v (%d images)", err, len(info))
	}
	img := info[0]
	t.Logf("image %s: %.1f MB (binary %.1f MB); dockerd start %v, import of the base %v, go build %v, docker build %v",
		imageName, float64(img.Size)/1e6, float64(binInfo.Size())/1e6, started.Round(time.Millisecond), imported.Round(time.Millisecond),
		built.Round(time.Millisecond), buildTime.Round(time.Millisecond))
	if img.Size > maxSize {
		t.Errorf("the image is %d bytes; want at most %d", img.Size, maxSize)
	}
	if img.Config.User != "65532:65532" {
		t.Errorf("User %q; want 65532:65532", img.Config.User)
	}
	if fmt.Sprint(img.Config.Entrypoint) != "[wharfjobs]" || len(img.Config.Cmd) != 0 {
		t.Errorf("Entrypoint %q, Cmd %q; want [wharfjobs] and no Cmd", img.Config.Entrypoint, img.Config.Cmd)
	}
	env := strings.Join(img.Config.Env, " ")
	for _, want := range []string{"HOME=/tmp", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "PATH=/usr/local/bin:/usr/bin"} {
		if !strings.Contains(env, want) {
			t.Errorf("Env %q lacks %s", img.Config.Env, want)
		}
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":    "wharfjobs",
		"org.opencontainers.image.source":   "https://github.com/wharfjobs/wharfjobs",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  created,
		"org.opencontainers.image.licenses": "NOASSERTION",
	} {
		if got := img.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q; want %q", k, got, want)
		}
	}
	if img.Config.Labels["org.opencontainers.image.description"] == "" {
		t.Errorf("no org.opencontainers.image.description label")
	}

	// run runs the image without a network (the private dockerd has no
	// bridge; the roles' own tests run the binary itself).
	run := func(args ...string) (string, string, error) {
		return d.run(append([]string{"run", "--rm", "--network", "none"}, args...)...)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := run(args...)
		if err != nil {
			t.Fatalf("docker run %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
		return stdout
	}

	// The entrypoint is the binary, with the version it was built with.
	if got := mustRun(imageName, "version"); !strings.HasPrefix(got, "wharfjobs "+version+" (go") {
		t.Errorf("wharfjobs version printed %q; want wharfjobs %s (go...)", got, version)
	}
	if got := mustRun("--entrypoint", "git", imageName, "--version"); !strings.HasPrefix(got, "git version 2.") {
		t.Errorf("git --version printed %q", got)
	}

	// The user is 65532 (the image has no id: the shell reads the process's
	// status), HOME is /tmp and /tmp is sticky and writable.
	got := mustRun("--entrypoint", "sh", imageName, "-c",
		`while read -r k r _; do case "$k" in Uid:|Gid:) echo "$k$r";; esac; done </proc/self/status; `+
			`echo "HOME=$HOME"; test -k /tmp && : >/tmp/written && echo tmp-ok`)
	if want := "Uid:65532\nGid:65532\nHOME=/tmp\ntmp-ok\n"; got != want {
		t.Errorf("user, HOME and /tmp:\n%s\nwant:\n%s", got, want)
	}

	// The worker's clone (job/worker/git.go) with git of the image: a
	// repository bind-mounted read-only, cloned through git's transport
	// (file://: git-upload-pack through the shell and git's exec path) at
	// its branch, checked out, then what gitInfo asks.
	repo := filepath.Join(t.TempDir(), "repo")
	head := hostRepo(t, repo)
	got = mustRun("--mount", "type=bind,source="+repo+",target=/src,readonly", "--entrypoint", "sh", imageName, "-c",
		`set -e; git -c credential.helper= -c core.askPass= clone --quiet --branch main --single-branch -- file:///src /tmp/c; `+
			`cd /tmp/c; read -r l <hello.txt; echo "file:$l"; `+
			`git --no-pager branch --show-current; git --no-pager log -n 1 HEAD --format=%H; `+
			`git --no-pager tag --sort=-taggerdate --points-at HEAD; git --no-pager remote --verbose show -n`)
	if want := "file:hello\nmain\n" + head + "\nv1\norigin\tfile:///src (fetch)\norigin\tfile:///src (push)\n"; got != want {
		t.Errorf("clone and gitInfo in the image:\n%s\nwant:\n%s", got, want)
	}

	// A "!" credential helper runs through /bin/sh, reading the token from
	// git's environment, as the worker's does.
	got = mustRun("-e", "WHARFJOBS_GIT_TOKEN=s3cret", "--entrypoint", "sh", imageName, "-c",
		`printf 'protocol=https\nhost=git.example\n\n' | git -c credential.helper= `+
			`-c 'credential.https://git.example.helper=!f() { test "$1" = get || return 0; printf "username=%s\npassword=%s\n" git "$WHARFJOBS_GIT_TOKEN"; }; f' credential fill`)
	if !strings.Contains(got, "username=git\npassword=s3cret\n") {
		t.Errorf("git credential fill through the shell helper printed:\n%s", got)
	}

	// The https transport and its libraries are there: without a network
	// the remote helper runs and fails to connect (a missing helper is
	// "git: 'remote-https' is not a git command", a missing library
	// "error while loading shared libraries").
	stdout, stderr, err = run("--entrypoint", "git", imageName, "ls-remote", "https://localhost:1/x")
	if err == nil || !strings.Contains(stderr, "unable to access 'https://localhost:1/x/'") || !strings.Contains(stderr, "onnect") {
		t.Errorf("git ls-remote https://localhost:1/x: %v; want a connection error\n%s%s", err, stdout, stderr)
	}

	// docker save writes a tarball that loads again (make image-tarball).
	tarball := filepath.Join(t.TempDir(), "wharfjobs.tar")
	d.must("save", "-o", tarball, imageName)
	d.must("rmi", imageName)
	d.must("load", "-i", tarball)
	if got := mustRun(imageName, "version"); !strings.HasPrefix(got, "wharfjobs "+version) {
		t.Errorf("after docker load, wharfjobs version printed %q", got)
	}
	if st, err := os.Stat(tarball); err == nil {
		t.Logf("docker save: %.1f MB; the whole test %v", float64(st.Size())/1e6, time.Since(t0).Round(time.Millisecond))
	}
}

// hostRepo makes a repository at dir with the machine's git: one commit on
// main holding hello.txt, tagged v1, owned by uid 65532 (git refuses to
// fetch from a repository another user owns) and readable by all. It
// returns the commit.
func hostRepo(t *testing.T, dir string) string {
	t.Helper()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "--quiet", "--initial-branch", "main")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "hello.txt")
	git("commit", "--quiet", "-m", "first")
	git("tag", "v1")
	head := git("rev-parse", "HEAD")
	// The temporary directories above it are the test's (0700, root's):
	// the bind mount makes only dir visible in the container.
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65532, 65532)
	}); err != nil {
		t.Fatal(err)
	}
	return head
}
