package worker

// Each case below mirrors a wharf-cmd rule; the comment beside it cites
// the wharf-cmd source at commit 421514f (github.com/iver-wharf/wharf-cmd).

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
)

// commitRepo makes a repository in a new directory with one commit on
// branch (fixed author and committer dates) and returns its path.
func commitRepo(t *testing.T, branch string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if files == nil {
		files = map[string]string{}
	}
	if _, ok := files[".wharf-ci.yml"]; !ok {
		files[".wharf-ci.yml"] = "build:\n  s:\n    container:\n      image: alpine\n      cmds: [\"true\"]\n"
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, dir, "init", "-q", "-b", branch)
	runGit(t, dir, "add", "-A")
	t.Setenv("GIT_AUTHOR_DATE", "2021-03-04T05:06:07+01:00")
	t.Setenv("GIT_COMMITTER_DATE", "2022-11-12T13:14:15+00:00")
	runGit(t, dir, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "the subject")
	return dir
}

func cloneVars(t *testing.T, repo, branch string) map[string]any {
	t.Helper()
	vars, err := clone(context.Background(), job.Request{GitFullURL: "file://" + repo, GitBranch: branch}, filepath.Join(t.TempDir(), "repo"), io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

// TestCloneGitTag: GIT_TAG is the tag on the cloned commit, "" (defined)
// when it has none. Before, the clone used --no-tags, so ${GIT_TAG} was
// never defined in a cluster build.
func TestCloneGitTag(t *testing.T) {
	hermeticGit(t)
	repo := commitRepo(t, "main", nil)

	// wharf-cmd/internal/gitutil/stats.go:166 and :187 (LatestTag is the
	// first of `git tag --points-at`, "" for none) and :62-63 (GIT_TAG is
	// always defined from it).
	vars := cloneVars(t, repo, "main")
	if tag, ok := vars["GIT_TAG"]; !ok || tag != "" {
		t.Errorf("untagged commit: GIT_TAG = %q, %v; want \"\", defined", tag, ok)
	}

	// The clone fetches the tags pointing at the branch (wharf-cmd's
	// worker clones without --no-tags: pkg/provisioner/k8sprovisioner.go:
	// 179-183); stats.go:166 orders them by -taggerdate, so the newest
	// annotated tag comes first, before a lightweight one.
	runGit(t, repo, "tag", "v1.0.0-light")
	t.Setenv("GIT_COMMITTER_DATE", "2023-01-01T00:00:00+00:00")
	runGit(t, repo, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "tag", "-a", "-m", "older", "v1.0.0")
	t.Setenv("GIT_COMMITTER_DATE", "2024-01-01T00:00:00+00:00")
	runGit(t, repo, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "tag", "-a", "-m", "newer", "v1.0.1")
	vars = cloneVars(t, repo, "main")
	if vars["GIT_TAG"] != "v1.0.1" {
		t.Errorf("tagged commit: GIT_TAG = %q, want v1.0.1", vars["GIT_TAG"])
	}
}

// TestCloneGitStats: the other GIT_* and REPO_* variables git gives.
func TestCloneGitStats(t *testing.T) {
	hermeticGit(t)
	repo := commitRepo(t, "feature/Fix_it.v2", nil)
	vars := cloneVars(t, repo, "feature/Fix_it.v2")
	want := map[string]any{
		// stats.go:50-51: GIT_BRANCH and REPO_BRANCH are the current branch.
		"GIT_BRANCH":  "feature/Fix_it.v2",
		"REPO_BRANCH": "feature/Fix_it.v2",
		// stats.go:179: GIT_SAFEBRANCH replaces "/" only (before: every
		// run of non-alphanumerics, giving feature-Fix-it-v2).
		"GIT_SAFEBRANCH": "feature-Fix_it.v2",
		// stats.go:148-152: %aI, strict ISO 8601 with the commit's offset.
		"GIT_COMMIT_AUTHOR_DATE": "2021-03-04T05:06:07+01:00",
		// stats.go:56-57: wharf-cmd answers GIT_COMMIT_COMMITTER_DATE with
		// the author date, not the committer date (2022-11-12...).
		"GIT_COMMIT_COMMITTER_DATE": "2021-03-04T05:06:07+01:00",
		"GIT_COMMIT_SUBJECT":        "the subject",
		"GIT_COMMIT":                runGit(t, repo, "rev-parse", "HEAD"),
		"GIT_TAG":                   "",
		// stats.go:191-196, 284-307: estimated from origin's fetch URL,
		// here file:///tmp/.../NNN (the SSH pattern matches it).
		"REPO_NAME":  filepath.Base(repo),
		"REPO_GROUP": "//" + filepath.Dir(repo),
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %#v, want %#v", k, vars[k], v)
		}
	}
}

// TestEstimateRepoGroupAndName: wharf-cmd/internal/gitutil/stats.go:
// 284-307.
func TestEstimateRepoGroupAndName(t *testing.T) {
	for _, c := range []struct{ url, group, name string }{
		{"https://gitlab.example.com/group/sub/my-repo.git", "group/sub", "my-repo"},
		{"https://user:pw@gitlab.example.com/group/my-repo", "group", "my-repo"},
		{"git@github.com:iver-wharf/wharf-cmd.git", "iver-wharf", "wharf-cmd"},
		{"https://dev.azure.com/org/proj/_git/repo", "org/proj", "repo"},
		{"git@ssh.dev.azure.com:v3/org/proj/repo", "org/proj", "repo"},
		{"/just/a/path", "", ""},
	} {
		g, n := estimateRepoGroupAndName(c.url)
		if g != c.group || n != c.name {
			t.Errorf("%s: group %q name %q, want %q %q", c.url, g, n, c.group, c.name)
		}
	}
}

// TestVariablesPrecedence checks the sources and their order: wharf-cmd's
// cmd/wharf/utils.go:53-89 (flags, WHARF_VAR_*, variables files, git),
// pkg/wharfyml/builtins.go:140-170 (which files, nearest first, then
// the user's, then /etc), and the trigger's fields
// (pkg/provisioner/provisionerserver/worker.go:84-104).
func TestVariablesPrecedence(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "repo")
	home := t.TempDir()
	system := t.TempDir()
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Several YAML documents: builtins.go:91-112 takes the vars of every
	// document, and :60-66 lets a later one win.
	write(filepath.Join(dir, ".wharf-vars.yml"), "vars:\n  NEAR: repo\n  DOC: first\n---\nother: ignored\n---\nvars:\n  DOC: second\n  GIT_COMMIT: from-file\n")
	write(filepath.Join(root, "a", ".wharf-vars.yml"), "vars:\n  NEAR: parent\n  PARENT: parent\n  USER: parent\n")
	// builtins.go:143-148: wharf-vars.yml (no dot) in
	// os.UserConfigDir()/iver-wharf/wharf-cmd, after the dotfiles.
	write(filepath.Join(home, ".config", "iver-wharf", "wharf-cmd", "wharf-vars.yml"), "vars:\n  USER: home\n  SYS: home\n")
	// builtins_linux.go:6: /etc/iver-wharf/wharf-cmd/wharf-vars.yml, last.
	write(filepath.Join(system, "wharf-vars.yml"), "vars:\n  SYS: etc\n  ONLY_SYS: etc\n")

	gitVars := map[string]any{"GIT_COMMIT": "abc", "GIT_BRANCH": "git-branch", "GIT_SAFEBRANCH": "git-branch", "REPO_NAME": "from-git"}
	r := &run{
		req: job.Request{BuildRef: "7", ProjectID: "42", GitBranch: "main", RepoBranch: "release/1", RepoName: "req-name"},
		cfg: Config{Environ: []string{"HOME=" + home, "WHARF_VAR_ENVONLY=env", "WHARF_VAR_NEAR=env"}, SystemVarsDir: system},
	}
	vars, err := r.variables(dir, gitVars)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"BUILD_REF": "7",
		// cmd/wharf/utils.go:265-270: PROJECT_ID (from --project-id),
		// besides our WHARF_PROJECT_ID.
		"PROJECT_ID":       "42",
		"WHARF_PROJECT_ID": "42",
		// provisionerserver/worker.go:84-86, 100-101: GIT_BRANCH is the
		// trigger's REPO_BRANCH, above git's current branch.
		"GIT_BRANCH":     "release/1",
		"REPO_BRANCH":    "release/1",
		"REPO_NAME":      "req-name",
		"GIT_SAFEBRANCH": "git-branch", // stats.go:60-61: from git only
		"ENVONLY":        "env",
		"NEAR":           "env",
		"DOC":            "second",
		"PARENT":         "parent",
		"USER":           "parent",
		"SYS":            "home",
		"ONLY_SYS":       "etc",
		// utils.go:85: git is the last source, below the files.
		"GIT_COMMIT": "from-file",
	}
	for k, v := range want {
		if got, _ := vars.Lookup(k); got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}

	// XDG_CONFIG_HOME comes before HOME (os.UserConfigDir); no project
	// id, or 0 (wharf-cmd's unset --project-id), leaves PROJECT_ID
	// undefined (utils.go:265).
	xdg := t.TempDir()
	write(filepath.Join(xdg, "iver-wharf", "wharf-cmd", "wharf-vars.yml"), "vars:\n  SYS: xdg\n")
	for _, id := range []string{"", "0"} {
		r = &run{req: job.Request{BuildRef: "8", ProjectID: id}, cfg: Config{Environ: []string{"HOME=" + home, "XDG_CONFIG_HOME=" + xdg}}}
		vars, err = r.variables(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := vars.Lookup("PROJECT_ID"); ok {
			t.Errorf("project id %q: PROJECT_ID = %#v, want undefined", id, v)
		}
		if v, _ := vars.Lookup("SYS"); v != "xdg" {
			t.Errorf("SYS = %#v, want xdg from $XDG_CONFIG_HOME", v)
		}
		// Zero SystemVarsDir reads no machine file.
		if v, ok := vars.Lookup("ONLY_SYS"); ok {
			t.Errorf("ONLY_SYS = %#v without SystemVarsDir", v)
		}
	}
}

// TestVarsFileErrors: a variables file that does not parse fails the
// build (cmd/wharf/utils.go:62-66) and the error does not show values.
func TestVarsFileErrors(t *testing.T) {
	for name, body := range map[string]string{
		"not a map":      "vars:\n  A: 1\n---\n- s3cr3t-list-item\n",
		"vars not a map": "vars: s3cr3t-scalar-value\n",
		"duplicate":      "vars:\n  A: s3cr3t-one\n  A: s3cr3t-two\n",
		"syntax":         "vars:\n  A: [s3cr3t\n",
	} {
		_, err := parseVarsFile([]byte(body))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: error shows a value: %v", name, err)
		}
	}
	// Merge keys and anchors work as in wharf-cmd (visit.MapSlice).
	m, err := parseVarsFile([]byte("base: &b\n  A: a\nvars:\n  <<: *b\n  B: b\n"))
	if err != nil || m["A"] != "a" || m["B"] != "b" {
		t.Errorf("merge: %v, %v", m, err)
	}
}

// recordRunner records the substituted commands of every step.
type recordRunner struct {
	mu   sync.Mutex
	cmds []string
}

func (r *recordRunner) Name() string { return "record" }

func (r *recordRunner) Run(_ context.Context, s Step, _, _ io.Writer) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, s.Container.Cmds...)
	return Result{}, nil
}

// TestRunFromSourceDir is wharfjobs run: the steps run in a copy, but
// .wharf-vars.yml files above the real directory count, and GIT_BRANCH,
// GIT_SAFEBRANCH, REPO_GROUP and REPO_NAME come from its git repository
// (current branch, origin's URL), as wharf-cmd's `wharf run` does
// (cmd/wharf/run.go:58-78 with cmd/wharf/utils.go:72-89).
func TestRunFromSourceDir(t *testing.T) {
	hermeticGit(t)
	yml := "build:\n  s:\n    container:\n      image: alpine\n      cmds:\n        - \"${GIT_BRANCH} ${GIT_SAFEBRANCH} ${REPO_GROUP} ${REPO_NAME} ${ABOVE} ${GIT_TAG}.\"\n"
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, ".wharf-vars.yml"), []byte("vars:\n  ABOVE: from-parent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(parent, "checkout")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, ".wharf-ci.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, src, "init", "-q", "-b", "topic/x")
	runGit(t, src, "remote", "add", "origin", "git@gitlab.example.com:team/sub/app.git")
	runGit(t, src, "add", "-A")
	runGit(t, src, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "local")
	// The copy wharfjobs run makes: no .git, nothing above it.
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, ".wharf-ci.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, "local-1", build.Status{Status: build.Scheduling}, ""); err != nil {
		t.Fatal(err)
	}
	rec := &recordRunner{}
	cfg := Config{Workdir: work, SkipClone: true, SourceDir: src, Heartbeat: time.Second, Environ: []string{},
		Log: build.WriterConfig{SpillDir: t.TempDir()}, Logger: slog.New(slog.DiscardHandler)}
	// The request's repository fields are not the trigger's here: git's
	// win (a wharf-cmd `wharf run` has no WHARF_VAR_REPO_NAME).
	code, st := Run(ctx, s, job.Request{BuildRef: "local-1", RepoName: "not-this"}, rec, cfg)
	if code != ExitCompleted {
		t.Fatalf("exit %d: %s", code, st.Reason)
	}
	want := "topic/x topic-x team/sub app from-parent ."
	if len(rec.cmds) != 1 || rec.cmds[0] != want {
		t.Fatalf("commands %q, want [%q]", rec.cmds, want)
	}
}

// TestStepEnvUnchanged: wharf-cmd's step pods get no built-in variables
// (pkg/steps/container.go:79-89 sets no Env), so the step environment
// keeps wharfjobs' own set; GIT_TAG "" is not exported.
func TestStepEnvUnchanged(t *testing.T) {
	env := stepEnv(pipeline.VarMap{"BUILD_REF": "3", "GIT_TAG": "", "GIT_SAFEBRANCH": "a-b"}, job.Request{})
	if env["BUILD_REF"] != "3" || env["GIT_SAFEBRANCH"] != "a-b" {
		t.Errorf("env %v", env)
	}
	if _, ok := env["GIT_TAG"]; ok {
		t.Errorf("empty GIT_TAG exported: %v", env)
	}
}
