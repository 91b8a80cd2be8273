package worker

// These tests run the real git against real HTTP servers on loopback: git
// http-backend behind net/http/cgi, with Basic auth on the build's token.
//
// The threat (security issue #14): the token is a credential of the
// repository server only. A repository server (or whoever controls where
// it redirects: a renamed project, a compromised or hostile host) that
// answers 301/302 to another origin must not make git hand the token to
// that origin, and nobody on the network path may read it from plain
// http. The servers below record every Authorization header they receive,
// so the tests fail if the token reaches a place it must not.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/job"
)

const testToken = "tok-Wh4rf-s3cret-7d1f"

// hermeticGit keeps the machine's and user's git configuration out of the
// test's git processes (clone's git inherits the environment).
func hermeticGit(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_TERMINAL_PROMPT", "0")
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// bareRepo returns a directory holding repo.git, a bare repository with
// one commit on main, and that commit.
func bareRepo(t *testing.T) (root, commit string) {
	t.Helper()
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, ".wharf-ci.yml"), []byte("build:\n  s:\n    cmds: [true]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, work, "init", "-q", "-b", "main")
	runGit(t, work, "add", "-A")
	runGit(t, work, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "served over http")
	commit = runGit(t, work, "rev-parse", "HEAD")
	root = t.TempDir()
	runGit(t, root, "clone", "-q", "--bare", work, "repo.git")
	return root, commit
}

// recorder counts the requests of one server and keeps their
// Authorization headers.
type recorder struct {
	mu    sync.Mutex
	n     int
	auths []string
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.n++
		if a := r.Header.Get("Authorization"); a != "" {
			rec.auths = append(rec.auths, a)
		}
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) requests() (int, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.n, append([]string(nil), rec.auths...)
}

// sawToken reports whether any recorded Authorization header carries
// testToken, in the clear or Basic-encoded.
func (rec *recorder) sawToken() bool {
	_, auths := rec.requests()
	for _, a := range auths {
		if strings.Contains(a, testToken) {
			return true
		}
		if b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "Basic ")); err == nil && strings.Contains(string(b), testToken) {
			return true
		}
	}
	return false
}

// basicAuth lets through requests with Basic user:testToken and answers
// every other one 401, as GitHub or GitLab do for a private repository.
func basicAuth(user string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || subtle.ConstantTimeCompare([]byte(p), []byte(testToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="repo"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// gitBackend serves the repositories under root with git http-backend.
func gitBackend(t *testing.T, root string) http.Handler {
	t.Helper()
	execPath := runGit(t, "", "--exec-path")
	return &cgi.Handler{
		Path:   filepath.Join(execPath, "git-http-backend"),
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root},
		Stderr: io.Discard, // "Not a git repository" of a missing one, for example
	}
}

// collector is the other origin: it asks everyone for credentials and
// records what it gets.
func collector() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="give me your token"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})
}

// redirectRefs sends git's first request (info/refs, the only one git
// follows a redirect of by default) to the same path on target.
func redirectRefs(target *string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			http.Redirect(w, r, *target+r.URL.RequestURI(), http.StatusFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serve starts h on a free loopback port, over TLS when tls; git trusts
// the TLS servers' certificates through GIT_SSL_CAINFO.
func serve(t *testing.T, tls bool, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		// httptest's servers all share one certificate.
		t.Setenv("GIT_SSL_CAINFO", ca)
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func cloneURL(t *testing.T, url string, token string, allowHTTP bool) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress bytes.Buffer
	vars, err := clone(ctx, job.Request{GitFullURL: url, GitToken: token, GitBranch: "main"}, filepath.Join(t.TempDir(), "repo"), &progress, allowHTTP)
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("the token is in the clone's error: %v", err)
	}
	if strings.Contains(progress.String(), testToken) {
		t.Errorf("the token is in the clone's output: %s", progress.String())
	}
	return vars, err
}

func TestGitCloneWithToken(t *testing.T) {
	hermeticGit(t)
	root, commit := bareRepo(t)
	for _, tls := range []bool{true, false} {
		rec := &recorder{}
		srv := serve(t, tls, rec.wrap(basicAuth("git", gitBackend(t, root))))
		vars, err := cloneURL(t, srv.URL+"/repo.git", testToken, true)
		if err != nil {
			t.Fatalf("clone %s: %v", srv.URL, err)
		}
		if vars["GIT_COMMIT"] != commit {
			t.Fatalf("GIT_COMMIT %v, want %s", vars["GIT_COMMIT"], commit)
		}
		if !rec.sawToken() {
			t.Fatalf("%s: the repository server never saw the token; the test proves nothing", srv.URL)
		}
	}
}

// TestGitCloneUsernameFromURL: with https://user@host/x (the provisioner
// keeps the user name of https://user:pw@host/x and moves the password
// into the token) the helper answers with that user, not "git". A URL that
// still holds a password uses it as the token, and it shows in no error.
func TestGitCloneUsernameFromURL(t *testing.T) {
	hermeticGit(t)
	root, _ := bareRepo(t)
	rec := &recorder{}
	srv := serve(t, true, rec.wrap(basicAuth("alice", gitBackend(t, root))))
	withUser := strings.Replace(srv.URL, "https://", "https://alice@", 1) + "/repo.git"
	if _, err := cloneURL(t, withUser, testToken, false); err != nil {
		t.Fatalf("clone with user name alice: %v", err)
	}
	withPassword := strings.Replace(srv.URL, "https://", "https://alice:"+testToken+"@", 1) + "/repo.git"
	if _, err := cloneURL(t, withPassword, "", false); err != nil {
		t.Fatalf("clone with a password in the URL: %v", err)
	}
	if _, err := cloneURL(t, withPassword+"-missing", "", false); err == nil {
		t.Fatal("clone of a missing repository succeeded")
	} else if !strings.Contains(err.Error(), "alice@") {
		t.Fatalf("error does not name the repository: %v", err)
	}
}

// TestGitCredentialRedirect is the heart of issue #14 item 2: the
// repository server redirects git's first request to another origin (here
// another port of the same address, which is another origin all the
// same), which asks for credentials. git follows, and before this fix its
// credential helper answered for any host, so the other origin received
// the token in an Authorization header.
func TestGitCredentialRedirect(t *testing.T) {
	hermeticGit(t)
	root, _ := bareRepo(t)
	for _, c := range []struct {
		name string
		tls  bool
		// authFirst puts the redirect behind the repository server's
		// authentication: git has sent the token to the right origin
		// already and must not send it on.
		authFirst bool
	}{
		{"https", true, false},
		{"https after auth", true, true},
		{"http allowed", false, false},
		{"http allowed after auth", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			other := &recorder{}
			otherSrv := serve(t, c.tls, other.wrap(collector()))
			repo := &recorder{}
			var h http.Handler
			if c.authFirst {
				h = basicAuth("git", redirectRefs(&otherSrv.URL, gitBackend(t, root)))
			} else {
				h = redirectRefs(&otherSrv.URL, basicAuth("git", gitBackend(t, root)))
			}
			srv := serve(t, c.tls, repo.wrap(h))
			_, err := cloneURL(t, srv.URL+"/repo.git", testToken, true)
			t.Logf("clone error: %v", err)
			if n, _ := other.requests(); n == 0 {
				t.Fatalf("git did not follow the redirect (clone error: %v); the test proves nothing", err)
			}
			if other.sawToken() {
				t.Fatal("the other origin received the token")
			}
			if _, auths := other.requests(); len(auths) != 0 {
				t.Fatalf("the other origin received credentials: %d Authorization headers", len(auths))
			}
			if err == nil {
				t.Fatal("clone through a redirect to an origin without the repository succeeded")
			}
		})
	}
}

// TestGitCredentialDowngrade: an https repository redirecting to plain
// http on the same host gets no token there (another scheme is another
// origin) and, being a downgrade, is not followed at all.
func TestGitCredentialDowngrade(t *testing.T) {
	hermeticGit(t)
	root, _ := bareRepo(t)
	plain := &recorder{}
	plainSrv := serve(t, false, plain.wrap(collector()))
	repo := &recorder{}
	srv := serve(t, true, repo.wrap(redirectRefs(&plainSrv.URL, basicAuth("git", gitBackend(t, root)))))
	_, err := cloneURL(t, srv.URL+"/repo.git", testToken, true)
	t.Logf("clone error: %v", err)
	if err == nil {
		t.Fatal("clone through an https->http redirect succeeded")
	}
	if n, _ := repo.requests(); n == 0 {
		t.Fatal("the repository server was never asked; the test proves nothing")
	}
	if n, auths := plain.requests(); n != 0 || plain.sawToken() {
		t.Fatalf("the plain http server got %d requests, %d with credentials", n, len(auths))
	}
}

// TestGitCloneRefusesHTTPWithToken: over plain http anyone on the path
// reads the token, so it takes WHARFJOBS_GIT_ALLOW_HTTP; without it the
// clone fails before contacting the server.
func TestGitCloneRefusesHTTPWithToken(t *testing.T) {
	hermeticGit(t)
	root, _ := bareRepo(t)
	rec := &recorder{}
	srv := serve(t, false, rec.wrap(basicAuth("git", gitBackend(t, root))))
	_, err := cloneURL(t, srv.URL+"/repo.git", testToken, false)
	if err == nil || !strings.Contains(err.Error(), "WHARFJOBS_GIT_ALLOW_HTTP") {
		t.Fatalf("clone over http with a token, not allowed: %v", err)
	}
	if n, _ := rec.requests(); n != 0 {
		t.Fatalf("the server got %d requests", n)
	}
	if _, err := cloneURL(t, srv.URL+"/repo.git", testToken, true); err != nil {
		t.Fatalf("clone over http with a token, allowed: %v", err)
	}
	if !rec.sawToken() {
		t.Fatal("the server never saw the token")
	}
}

// TestGitCredentialHelper runs the helper script as git runs it, to check
// its own test of what git asks for: the defence that holds even if
// git's choice of helper by URL were wrong.
func TestGitCredentialHelper(t *testing.T) {
	_, cred, err := gitCredentialFor("https://user@git.example.org/a/b.git", testToken, false)
	if err != nil || cred == nil {
		t.Fatalf("gitCredentialFor: %v, %v", cred, err)
	}
	cmd := gitCmd(context.Background(), "", cred, "version")
	for _, a := range cmd.Args {
		if strings.Contains(a, testToken) {
			t.Fatalf("the token is in git's arguments: %q", a)
		}
	}
	want := "username=user\npassword=" + testToken + "\n"
	for _, c := range []struct{ op, in, want string }{
		{"get", "protocol=https\nhost=git.example.org\n", want},
		{"get", "protocol=https\nhost=git.example.org:443\npath=a/b.git\nusername=user\n", want},
		{"get", "protocol=https\nhost=evil.example.org\n", ""},
		{"get", "protocol=https\nhost=git.example.org:8443\n", ""},
		{"get", "protocol=https\nhost=git.example.org.evil\n", ""},
		{"get", "protocol=http\nhost=git.example.org\n", ""},
		{"get", "host=git.example.org\n", ""},
		{"get", "protocol=https\n", ""},
		{"get", "", ""},
		{"store", "protocol=https\nhost=git.example.org\n", ""},
		{"erase", "protocol=https\nhost=git.example.org\n", ""},
	} {
		sh := exec.Command("/bin/sh", "-c", credentialHelper+" "+c.op)
		sh.Env = cmd.Env
		sh.Stdin = strings.NewReader(c.in)
		out, err := sh.Output()
		if err != nil || string(out) != c.want {
			t.Errorf("%s %q: %q, %v; want %q", c.op, c.in, out, err, c.want)
		}
	}
}

// TestGitCredentialFill asks the real git (git credential fill, with the
// configuration clone uses) for credentials: git's URL matching offers the
// helper for the origin, with or without its default port spelled out, and
// for nothing else.
func TestGitCredentialFill(t *testing.T) {
	hermeticGit(t)
	for _, repoURL := range []string{"https://git.example.org/a.git", "https://git.example.org:443/a.git", "http://git.example.org:8080/a.git"} {
		_, cred, err := gitCredentialFor(repoURL, testToken, true)
		if err != nil {
			t.Fatal(err)
		}
		scheme, _, _ := strings.Cut(repoURL, "://")
		other := map[string]string{"https": "http", "http": "https"}[scheme]
		for _, c := range []struct {
			protocol, host string
			ok             bool
		}{
			{scheme, cred.hosts[0], true},
			{scheme, cred.hosts[1], true},
			{scheme, "git.example.org:1", false},
			{scheme, "evil.example.org", false},
			{scheme, "git.example.org.evil.example", false},
			{other, cred.hosts[0], false},
		} {
			cmd := gitCmd(context.Background(), "", cred, "credential", "fill")
			cmd.Stdin = strings.NewReader("protocol=" + c.protocol + "\nhost=" + c.host + "\npath=a.git\n")
			out, err := cmd.Output()
			got := strings.Contains(string(out), "password="+testToken)
			if got != c.ok || (c.ok && err != nil) {
				t.Errorf("%s: fill %s://%s: answered %v (%v), want %v", repoURL, c.protocol, c.host, got, err, c.ok)
			}
		}
	}
}

func TestGitCredentialFor(t *testing.T) {
	for _, c := range []struct {
		url, token, wantURL, origin, user string
		hosts                             [2]string
	}{
		{"https://g.example/x.git", "t", "https://g.example/x.git", "https://g.example", "git", [2]string{"g.example", "g.example:443"}},
		{"https://g.example:443/x.git", "t", "https://g.example:443/x.git", "https://g.example:443", "git", [2]string{"g.example:443", "g.example"}},
		{"https://g.example:8443/x.git", "t", "https://g.example:8443/x.git", "https://g.example:8443", "git", [2]string{"g.example:8443", "g.example:8443"}},
		{"https://[::1]:8443/x.git", "t", "https://[::1]:8443/x.git", "https://[::1]:8443", "git", [2]string{"[::1]:8443", "[::1]:8443"}},
		{"https://bob:pw@g.example/x.git", "", "https://bob@g.example/x.git", "https://g.example", "bob", [2]string{"g.example", "g.example:443"}},
		{"http://g.example/x.git", "t", "http://g.example/x.git", "http://g.example", "git", [2]string{"g.example", "g.example:80"}},
	} {
		gotURL, cred, err := gitCredentialFor(c.url, c.token, true)
		if err != nil || cred == nil {
			t.Errorf("%s: %v, %v", c.url, cred, err)
			continue
		}
		if gotURL != c.wantURL || cred.origin != c.origin || cred.username != c.user || cred.hosts != c.hosts {
			t.Errorf("%s: url %q origin %q user %q hosts %q", c.url, gotURL, cred.origin, cred.username, cred.hosts)
		}
	}
	// No token or not http(s): no helper, the URL as it is (local paths
	// and ssh keep working as before).
	for _, u := range []string{"/srv/repo", "git@g.example:a/b.git", "ssh://git@g.example/a.git", "https://g.example/x.git"} {
		token := "t"
		if strings.HasPrefix(u, "https") {
			token = ""
		}
		if got, cred, err := gitCredentialFor(u, token, false); err != nil || cred != nil || got != u {
			t.Errorf("%s: %q %v %v", u, got, cred, err)
		}
	}
	for _, u := range []string{"http://g.example/x.git", "http://u:" + testToken + "@g.example/x.git"} {
		_, _, err := gitCredentialFor(u, "", false)
		if u == "http://g.example/x.git" {
			_, _, err = gitCredentialFor(u, testToken, false)
		}
		if err == nil || !strings.Contains(err.Error(), "WHARFJOBS_GIT_ALLOW_HTTP") || strings.Contains(err.Error(), testToken) {
			t.Errorf("%s over http, not allowed: %v", redactURL(u), err)
		}
	}
	for _, c := range []struct{ url, token string }{
		{"https://g.example/x.git", "a\nhost=evil"},
		{"https://u%0Ahost=evil@g.example/x.git", "t"},
		{"https://u:" + testToken + "%zz@g.example/x.git", ""},
	} {
		if _, _, err := gitCredentialFor(c.url, c.token, false); err == nil || strings.Contains(err.Error(), testToken) {
			t.Errorf("%q: %v", redactURL(c.url), err)
		}
	}
}
