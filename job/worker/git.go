package worker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/wharfjobs/wharfjobs/job"
)

// clone checks out req's repository at its branch into dir and returns the
// GIT_* variables of the commit. The token reaches git through a
// credential helper reading an environment variable of the git process
// only: never a command-line argument, a URL in a log line or a file.
func clone(ctx context.Context, req job.Request, dir string, progress io.Writer) (map[string]any, error) {
	if req.GitFullURL == "" {
		return nil, fmt.Errorf("no repository URL (GIT_FULLURL)")
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	args := []string{"clone", "--quiet", "--no-tags"}
	if req.GitBranch != "" {
		args = append(args, "--branch", req.GitBranch, "--single-branch")
	}
	args = append(args, "--", req.GitFullURL, dir)
	cmd := gitCmd(ctx, "", req.GitToken, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = progress, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git clone %s: %v: %s", redactURL(req.GitFullURL), err, strings.TrimSpace(stderr.String()))
	}
	return gitInfo(ctx, dir)
}

func gitCmd(ctx context.Context, dir, token string, args ...string) *exec.Cmd {
	full := []string{"-c", "credential.helper=", "-c", "core.askPass="}
	if token != "" {
		full = append(full, "-c", `credential.helper=!f() { echo username=git; echo "password=$WHARFJOBS_GIT_TOKEN"; }; f`)
	}
	cmd := exec.CommandContext(ctx, "git", append(full, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "WHARFJOBS_GIT_TOKEN="+token)
	return cmd
}

// gitInfo returns the GIT_* variables of dir's checked-out commit.
func gitInfo(ctx context.Context, dir string) (map[string]any, error) {
	out := map[string]any{}
	for name, args := range map[string][]string{
		"GIT_COMMIT":             {"rev-parse", "HEAD"},
		"GIT_COMMIT_SUBJECT":     {"log", "-1", "--format=%s"},
		"GIT_COMMIT_AUTHOR_DATE": {"log", "-1", "--format=%aI"},
		"GIT_TAG":                {"describe", "--tags", "--exact-match"},
	} {
		b, err := gitCmd(ctx, dir, "", args...).Output()
		if err != nil {
			if name == "GIT_COMMIT" {
				return nil, fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
			}
			continue // no tag on this commit, for example
		}
		out[name] = strings.TrimSpace(string(b))
	}
	return out, nil
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
