package worker

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
)

// VarsFileName is the variables file looked up in the repository and in
// every directory above it.
const VarsFileName = ".wharf-vars.yml"

// variables builds the lower-precedence variable sources, highest first:
// the build's own, WHARF_VAR_* from the process environment, then
// .wharf-vars.yml files from the repository upwards. (Request inputs,
// input defaults and the environment's variables are layered above these
// by the parser.)
func (r *run) variables(dir string, gitVars map[string]any) (pipeline.Vars, error) {
	builtin := pipeline.VarMap{
		"BUILD_REF":        r.req.BuildRef,
		"WHARF_PROJECT_ID": r.req.ProjectID,
		"WHARF_INSTANCE":   r.req.Instance,
		"REPO_NAME":        r.req.RepoName,
		"REPO_GROUP":       r.req.RepoGroup,
		"REPO_BRANCH":      r.req.RepoBranch,
		"GIT_BRANCH":       r.req.GitBranch,
		"GIT_SAFEBRANCH":   safeBranch(r.req.GitBranch),
	}
	for k, v := range gitVars {
		builtin[k] = v
	}
	environ := r.cfg.Environ
	if environ == nil {
		environ = os.Environ()
	}
	fromEnv := pipeline.VarMap{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, "WHARF_VAR_"); ok && name != "" {
			fromEnv[name] = v
		}
	}
	layers := pipeline.Layered{builtin, fromEnv}
	files, err := varsFiles(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		layers = append(layers, f)
	}
	// CHART_REPO and REG_URL are only variables when some source sets them.
	return layers, nil
}

// varsFiles reads .wharf-vars.yml in dir and each parent, nearest first.
func varsFiles(dir string) ([]pipeline.VarMap, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	var out []pipeline.VarMap
	for {
		p := filepath.Join(abs, VarsFileName)
		b, err := os.ReadFile(p)
		if err == nil {
			var doc struct {
				Vars map[string]any `yaml:"vars"`
			}
			if err := yaml.Unmarshal(b, &doc); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			out = append(out, pipeline.VarMap(doc.Vars))
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return out, nil
		}
		abs = parent
	}
}

var unsafeBranch = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// safeBranch makes a branch name usable in image tags and DNS names.
func safeBranch(b string) string {
	return strings.Trim(unsafeBranch.ReplaceAllString(b, "-"), "-")
}

// stepEnv is the environment a step's processes get: the build's own
// variables (never secrets).
func stepEnv(vars pipeline.Vars, req job.Request) map[string]string {
	env := map[string]string{}
	for _, name := range []string{"BUILD_REF", "WHARF_PROJECT_ID", "WHARF_INSTANCE", "REPO_NAME", "REPO_GROUP", "REPO_BRANCH",
		"GIT_BRANCH", "GIT_SAFEBRANCH", "GIT_COMMIT", "GIT_COMMIT_SUBJECT", "GIT_COMMIT_AUTHOR_DATE", "GIT_TAG", "CHART_REPO", "REG_URL"} {
		if v, ok := vars.Lookup(name); ok && v != nil && fmt.Sprint(v) != "" {
			env[name] = fmt.Sprint(v)
		}
	}
	if req.Environment != "" {
		env["WHARF_ENVIRONMENT"] = req.Environment
	}
	return env
}
