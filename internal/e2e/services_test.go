package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// Services the step types' test runs on this machine, at the bridge
// address the node's pods reach (testcluster.PodHostIP): a Helm chart
// repository and a git daemon.

// cachedTool is a binary `make` builds into .cache/bin for these tests.
func cachedTool(t *testing.T, file, env, target string) string {
	t.Helper()
	p, err := testenv.CachedBinary(file, env, target)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serveDir serves a directory over HTTP on the bridge address (a Helm
// chart repository) and returns its URL.
func serveDir(t *testing.T, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(testcluster.PodHostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return "http://" + l.Addr().String()
}

// helmRepo packages the chart in chartDir with helm (`make helm`) into
// dir/<group>, writes the repository's index.yaml and serves it; the
// returned URL is what CHART_REPO holds (the repository is
// ${CHART_REPO}/<group>, as a helm step's default repo).
func helmRepo(t *testing.T, ctx context.Context, helm, chartDir, dir, group string) string {
	t.Helper()
	root := filepath.Join(dir, "charts")
	out := filepath.Join(root, group)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	url := serveDir(t, root)
	env := append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(dir, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(dir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(dir, "helm-data"))
	for _, args := range [][]string{{"package", chartDir, "--destination", out}, {"repo", "index", out, "--url", url + "/" + group}} {
		cmd := exec.CommandContext(ctx, helm, args...)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %v: %v: %s", args, err, b)
		}
	}
	return url
}

// serveRepo commits files to a new repository's main branch and serves it
// with `git daemon` on the bridge address; it returns the clone URL.
func serveRepo(t *testing.T, ctx context.Context, dir string, files map[string]string) string {
	t.Helper()
	work := filepath.Join(dir, "repo")
	run := func(d string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@wharfjobs.invalid", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@wharfjobs.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(work, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[n]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(work, "init", "-q", "-b", "main")
	run(work, "add", ".")
	run(work, "commit", "-q", "-m", "step types")
	served := filepath.Join(dir, "served")
	run(dir, "clone", "-q", "--bare", work, filepath.Join(served, "demo.git"))

	return serveGit(t, served, "demo.git")
}

// serveGit serves the bare repositories under root over git:// on the
// bridge address and returns repo's URL. The test process holds the
// listener and hands each connection to `git daemon --inetd`: a daemon
// started on a port picked beforehand did not answer for 30 s once under a
// loaded CI machine (the port is free when picked, not necessarily when
// bound), and its reasons went nowhere; here the port cannot be lost and
// the daemon's messages reach the test's log.
func serveGit(t *testing.T, root, repo string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(testcluster.PodHostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := gitInetd(ctx, root, c); err != nil {
					t.Logf("git daemon for %s: %v", c.RemoteAddr(), err)
				}
			}()
		}
	}()
	// Clones still running when the test ends are cut: their step has
	// failed or been cancelled by then.
	t.Cleanup(func() { _ = l.Close(); cancel(); wg.Wait() })
	return fmt.Sprintf("git://%s/%s", l.Addr(), repo)
}

// gitInetd runs one `git daemon --inetd` with the connection's socket as
// its standard input and output, as inetd would.
func gitInetd(ctx context.Context, root string, c net.Conn) error {
	defer c.Close()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		return err
	}
	defer f.Close()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "git", "daemon", "--inetd", "--export-all", "--informative-errors",
		"--log-destination=stderr", "--base-path="+root, root)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, stderr.String())
	}
	return nil
}

// busyboxApplets are the commands linked to busybox in the tool images.
var busyboxApplets = []string{"sh", "ash", "cat", "cp", "echo", "env", "grep", "id", "ls", "mkdir", "mv", "pwd", "rm", "sed", "sleep", "tar", "test", "true", "false", "wc", "which"}

// withBusybox adds Debian's static busybox at dir/busybox and its applets
// beside it.
func withBusybox(t *testing.T, files []image.File, dir string) []image.File {
	t.Helper()
	files = append(files, image.File{Path: dir + "/busybox", Source: busybox(t), Mode: 0o755})
	for _, a := range busyboxApplets {
		files = append(files, image.File{Path: dir + "/" + a, Link: "busybox"})
	}
	return files
}

// The step types' images, built from binaries `make` put in .cache/bin
// and Debian's busybox-static (nothing is pulled).
const (
	helmImage    = "helm:e2e"
	kubectlImage = "kubectl:e2e"
)

var tmpDir = image.File{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777}

// helmImageOf is helm with busybox's sh and Debian's bash (helm-package's
// script is a bash script), as a non-root user.
func helmImageOf(t *testing.T) image.Image {
	t.Helper()
	files := []image.File{{Path: "/usr/local/bin/helm", Source: cachedTool(t, "helm", "WHARFJOBS_HELM_BIN", "helm"), Mode: 0o755}, tmpDir}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	bashFiles, err := image.HostBinary(bash, "/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	files = withBusybox(t, append(files, bashFiles...), "/bin")
	return image.Image{Name: helmImage, Files: files, Entrypoint: []string{"/bin/sh"}, User: "65532",
		Env: []string{"PATH=/usr/local/bin:/bin", "HOME=/tmp"}}
}

// kubectlImageOf is the kubectl `make kube-bins` builds, with its
// libraries and busybox's sh, as a non-root user.
func kubectlImageOf(t *testing.T) image.Image {
	t.Helper()
	bin, err := testcluster.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	img, err := enginetest.KubectlImage(kubectlImage, bin)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
