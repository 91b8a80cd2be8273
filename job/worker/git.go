package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/wharfjobs/wharfjobs/job"
)

// clone checks out req's repository at its branch into dir and returns the
// GIT_* variables of the commit. The token reaches git through a
// credential helper reading an environment variable of the git process
// only: never a command-line argument, a URL in a log line or a file. It
// is offered only to the origin (scheme, host, port) of GIT_FULLURL, so a
// redirect to another server cannot collect it, and over plain http only
// when allowHTTP (WHARFJOBS_GIT_ALLOW_HTTP) is set.
func clone(ctx context.Context, req job.Request, dir string, progress io.Writer, allowHTTP bool) (map[string]any, error) {
	if req.GitFullURL == "" {
		return nil, fmt.Errorf("no repository URL (GIT_FULLURL)")
	}
	repoURL, cred, err := gitCredentialFor(req.GitFullURL, req.GitToken, allowHTTP)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	// No --no-tags: GIT_TAG is the tag on the checked-out commit, and
	// wharf-cmd's worker clones with git's default tag following
	// (pkg/provisioner/k8sprovisioner.go:179-183 at 421514f), which
	// fetches the tags pointing into the cloned branch.
	args := []string{"clone", "--quiet"}
	if req.GitBranch != "" {
		args = append(args, "--branch", req.GitBranch, "--single-branch")
	}
	args = append(args, "--", repoURL, dir)
	cmd := gitCmd(ctx, "", cred, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = progress, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git clone %s: %v: %s", redactURL(req.GitFullURL), err, strings.TrimSpace(stderr.String()))
	}
	return gitInfo(ctx, dir)
}

// gitCredential is what the credential helper may answer, and to whom.
type gitCredential struct {
	// origin is scheme://host[:port] of GIT_FULLURL, the subsection of the
	// URL-scoped credential.<url>.helper key.
	origin string
	// protocol and hosts are what git writes on the helper's stdin
	// (protocol=, host=) for that origin; hosts holds the host with and
	// without an explicit default port, as a redirect may spell either.
	protocol string
	hosts    [2]string
	username string
	token    string
}

// gitCredentialFor returns the URL git is given (without a password) and
// the credential for its origin; nil when there is no token or the URL
// does not speak HTTP (ssh, git, file or a local path never use the
// helper, as before).
func gitCredentialFor(rawURL, token string, allowHTTP bool) (string, *gitCredential, error) {
	u, err := url.Parse(rawURL)
	if err != nil && strings.Contains(rawURL, "://") {
		// Not quoted: the URL may hold a password, and url.Parse's error
		// quotes it.
		return "", nil, errors.New("GIT_FULLURL is not a valid URL")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		// Not an http(s) URL: git alone decides, as before (scp-like
		// user@host:path does not parse as a URL at all).
		return rawURL, nil, nil
	}
	if pw, ok := u.User.Password(); ok {
		// The provisioner moves a URL password into the token; should one
		// still arrive, it must not reach git's argv (visible in /proc,
		// echoed in git's messages). It is the token if none is set.
		if token == "" {
			token = pw
		}
		u.User = url.User(u.User.Username())
		rawURL = u.String()
	}
	if token == "" {
		return rawURL, nil, nil
	}
	if u.Host == "" {
		return "", nil, fmt.Errorf("GIT_FULLURL %s has no host", redactURL(rawURL))
	}
	if u.Scheme == "http" && !allowHTTP {
		return "", nil, fmt.Errorf("refusing to send the git token over plain http to %s: use an https GIT_FULLURL, or set WHARFJOBS_GIT_ALLOW_HTTP=true to allow it", redactURL(rawURL))
	}
	username := "git"
	if u.User != nil && u.User.Username() != "" {
		username = u.User.Username()
	}
	// A line break would let the value add lines of its own to the
	// helper's answer to git (host=, url=, ...).
	if strings.ContainsAny(token, "\r\n\x00") {
		return "", nil, errors.New("the git token contains a line break or NUL")
	}
	if strings.ContainsAny(username, "\r\n\x00") {
		return "", nil, fmt.Errorf("GIT_FULLURL %s: the user name contains a line break or NUL", redactURL(rawURL))
	}
	// "-c key=value" splits at the first "="; a host holding one would
	// change the key. Valid host names and IP literals never do.
	if strings.Contains(u.Host, "=") {
		return "", nil, fmt.Errorf("GIT_FULLURL %s: unsupported host %q", redactURL(rawURL), u.Host)
	}
	c := &gitCredential{
		origin:   u.Scheme + "://" + u.Host,
		protocol: u.Scheme,
		hosts:    [2]string{u.Host, u.Host},
		username: username,
		token:    token,
	}
	// git's credential context keeps the host as written ("h" or
	// "h:443"); its urlmatch treats the two alike, so the helper does too.
	def := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	switch u.Port() {
	case "":
		if !strings.HasSuffix(u.Host, ":") {
			c.hosts[1] = u.Host + ":" + def
		}
	case def:
		c.hosts[1] = strings.TrimSuffix(u.Host, ":"+def)
	}
	return rawURL, c, nil
}

// credentialHelper is the body of the "!" helper git runs through the shell
// with the operation as $1. git has already chosen it only for the origin
// of credential.<origin>.helper; the helper checks again itself what git
// asks for, and answers nothing for any other protocol or host, so neither
// a git urlmatch surprise nor a redirect gets the token. Values come from
// the environment of the git process; printf is a shell builtin, so the
// token appears in no argv.
const credentialHelper = `f() { ` +
	`test "$1" = get || return 0; p=; h=; ` +
	`while IFS= read -r l; do case "$l" in protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; ` +
	`test -n "$h" && test "$p" = "$WHARFJOBS_GIT_PROTOCOL" || return 0; ` +
	`test "$h" = "$WHARFJOBS_GIT_HOST" || test "$h" = "$WHARFJOBS_GIT_HOST_ALT" || return 0; ` +
	`printf 'username=%s\npassword=%s\n' "$WHARFJOBS_GIT_USERNAME" "$WHARFJOBS_GIT_TOKEN"; }; f`

// gitCmd returns a git command that uses no credential helper, askpass or
// prompt but the one for cred (nil: none).
func gitCmd(ctx context.Context, dir string, cred *gitCredential, args ...string) *exec.Cmd {
	// An empty credential.helper clears the helpers of the system and
	// global configuration, which come before the command line.
	full := []string{"-c", "credential.helper=", "-c", "core.askPass="}
	env := append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "WHARFJOBS_GIT_TOKEN=")
	if cred != nil {
		full = append(full, "-c", "credential."+cred.origin+".helper=!"+credentialHelper)
		if cred.protocol == "https" {
			// An https repository redirecting to plain http is a
			// downgrade (the helper would not answer there, but the
			// clone would go on in the clear): refuse to follow it.
			full = append(full, "-c", "protocol.http.allow=never")
		}
		env = append(env,
			"WHARFJOBS_GIT_PROTOCOL="+cred.protocol,
			"WHARFJOBS_GIT_HOST="+cred.hosts[0],
			"WHARFJOBS_GIT_HOST_ALT="+cred.hosts[1],
			"WHARFJOBS_GIT_USERNAME="+cred.username,
			"WHARFJOBS_GIT_TOKEN="+cred.token)
	}
	cmd := exec.CommandContext(ctx, "git", append(full, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	return cmd
}

// gitInfo returns the variables wharf-cmd reads from the git checkout
// around dir (internal/gitutil/stats.go at 421514f: StatsFromExec, and
// Lookup for the names). As there, it fails when any of its git commands
// fails, and the caller then has no GIT_ or REPO_ variables from git.
func gitInfo(ctx context.Context, dir string) (map[string]any, error) {
	git := func(args ...string) ([]string, error) {
		out, err := gitCmd(ctx, dir, nil, append([]string{"--no-pager"}, args...)...).Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = strings.TrimSpace(string(ee.Stderr))
			}
			return nil, fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, stderr)
		}
		s := strings.TrimSpace(string(out))
		if s == "" {
			return nil, nil
		}
		return strings.Split(s, "\n"), nil
	}
	// Empty on a detached HEAD (GIT_BRANCH naming a tag, say).
	branch, err := git("branch", "--show-current")
	if err != nil {
		return nil, err
	}
	// %aI and %cI: strict ISO 8601, as stats.go:151-152.
	commit, err := git("log", "-n", "1", "HEAD", "--format=%H%n%s%n%aI%n%cI")
	if err != nil {
		return nil, err
	}
	// stats.go:166-187: the tags pointing at HEAD, newest tagger date
	// first (lightweight tags have none and come last); GIT_TAG is the
	// first, or "" when the commit has no tag.
	tags, err := git("tag", "--sort=-taggerdate", "--points-at", "HEAD")
	if err != nil {
		return nil, err
	}
	remotes, err := git("remote", "--verbose", "show", "-n")
	if err != nil {
		return nil, err
	}
	line := func(lines []string, i int) string {
		if i < len(lines) {
			return strings.TrimSpace(lines[i])
		}
		return ""
	}
	cur := line(branch, 0)
	out := map[string]any{
		"GIT_BRANCH":  cur,
		"REPO_BRANCH": cur,
		// stats.go:179: only "/" is replaced.
		"GIT_SAFEBRANCH":         strings.ReplaceAll(cur, "/", "-"),
		"GIT_COMMIT":             line(commit, 0),
		"GIT_COMMIT_SUBJECT":     line(commit, 1),
		"GIT_COMMIT_AUTHOR_DATE": line(commit, 2),
		// wharf-cmd reads the committer date (stats.go:184) but answers
		// GIT_COMMIT_COMMITTER_DATE with the author date (stats.go:56-57);
		// builds see that value there, so it is mirrored.
		"GIT_COMMIT_COMMITTER_DATE": line(commit, 2),
		"GIT_TAG":                   line(tags, 0),
	}
	if out["GIT_COMMIT"] == "" {
		return nil, fmt.Errorf("git log in %s: no commit", dir)
	}
	// stats.go:191-196 and 64-73: REPO_GROUP and REPO_NAME are estimated
	// from the origin remote's fetch URL, and left undefined when that
	// gives nothing.
	if fetch := originFetchURL(remotes); fetch != "" {
		group, name := estimateRepoGroupAndName(fetch)
		if group != "" {
			out["REPO_GROUP"] = group
		}
		if name != "" {
			out["REPO_NAME"] = name
		}
	}
	return out, nil
}

// originFetchURL picks origin's fetch URL from `git remote -v` lines
// ("name<TAB>url (fetch)"), as stats.go:209-227 parses them.
func originFetchURL(lines []string) string {
	for _, l := range lines {
		name, rest, ok := strings.Cut(l, "\t")
		if !ok || name != "origin" {
			continue
		}
		if u, ok := strings.CutSuffix(rest, " (fetch)"); ok {
			return u
		}
	}
	return ""
}

// The repository group and name in a remote URL (stats.go:284-287): the
// last path segment is the name, everything before it after the host (and
// an Azure DevOps "v3/"-like version segment) the group.
var (
	estURLRegex = regexp.MustCompile(`\w+://[^/]+/(?:v\d+/)?(.*)/([^/]+)`)
	estSSHRegex = regexp.MustCompile(`\w+:(?:v\d+/)?(.*)/([^/]+)`)
)

// estimateRepoGroupAndName mirrors stats.go:289-307, trailing "/_git"
// (Azure DevOps) and ".git" dropped.
func estimateRepoGroupAndName(url string) (group, name string) {
	m := estURLRegex.FindStringSubmatch(url)
	if m == nil {
		m = estSSHRegex.FindStringSubmatch(url)
	}
	if m == nil {
		return "", ""
	}
	return strings.TrimSuffix(m[1], "/_git"), strings.TrimSuffix(m[2], ".git")
}

// redactURL drops a password or token embedded in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User(u.User.Username())
	return u.String()
}
