package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
)

// VarsFileName is the variables file looked up in the repository and in
// every directory above it.
const VarsFileName = ".wharf-vars.yml"

// ConfigVarsFileName is the variables file in the user's and the
// machine's wharf-cmd configuration directories (no leading dot there).
const ConfigVarsFileName = "wharf-vars.yml"

// variables builds the lower-precedence variable sources, highest first,
// in wharf-cmd's order (cmd/wharf/utils.go:53-89 at 421514f): the
// command's own (BUILD_REF, PROJECT_ID), WHARF_VAR_* (the trigger's
// repository fields, which wharf-cmd's provisioner passes as WHARF_VAR_*,
// then the process environment's), the variables files, and last what
// git says about the checkout, so a variables file can override GIT_*.
// (Request inputs, input defaults and the environment's variables are
// layered above these by the parser.)
func (r *run) variables(dir string, gitVars map[string]any) (pipeline.Vars, error) {
	// The flags wharf-cmd's provisioner gives its worker: --build-id and
	// --project-id (cmd/wharf/utils.go:252-271); PROJECT_ID only when the
	// trigger named a project (a zero id is none there).
	builtin := pipeline.VarMap{
		"BUILD_REF":        r.req.BuildRef,
		"WHARF_PROJECT_ID": r.req.ProjectID,
		"WHARF_INSTANCE":   r.req.Instance,
	}
	if id := r.req.ProjectID; id != "" && id != "0" {
		builtin["PROJECT_ID"] = id
	}
	layers := pipeline.Layered{builtin}
	if !r.cfg.SkipClone {
		// A triggered build: pkg/provisioner/provisionerserver/worker.go:
		// 84-104 defaults REPO_BRANCH to GIT_BRANCH and defines GIT_BRANCH
		// as REPO_BRANCH; all four are defined, empty or not. (wharfjobs
		// run has no trigger: these come from git, as in `wharf run`.)
		branch := r.req.RepoBranch
		if branch == "" {
			branch = r.req.GitBranch
		}
		layers = append(layers, pipeline.VarMap{
			"GIT_BRANCH":  branch,
			"REPO_BRANCH": branch,
			"REPO_GROUP":  r.req.RepoGroup,
			"REPO_NAME":   r.req.RepoName,
		})
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
	layers = append(layers, fromEnv)
	files, err := varsFiles(r.varsDir(dir), userConfigDir(environ), r.cfg.SystemVarsDir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		layers = append(layers, f)
	}
	layers = append(layers, pipeline.VarMap(gitVars))
	// CHART_REPO and REG_URL are only variables when some source sets them.
	return layers, nil
}

// varsDir is the directory whose .wharf-vars.yml files (and git
// repository) a build uses: the one wharfjobs run was given, not its
// temporary copy.
func (r *run) varsDir(dir string) string {
	if r.cfg.SourceDir != "" {
		return r.cfg.SourceDir
	}
	return dir
}

// userConfigDir is os.UserConfigDir on Linux, read from environ:
// $XDG_CONFIG_HOME, else $HOME/.config; "" when neither is set or
// XDG_CONFIG_HOME is relative (wharf-cmd then skips the file).
func userConfigDir(environ []string) string {
	var xdg, home string
	for _, kv := range environ {
		switch k, v, _ := strings.Cut(kv, "="); k {
		case "XDG_CONFIG_HOME":
			xdg = v
		case "HOME":
			home = v
		}
	}
	switch {
	case xdg != "" && filepath.IsAbs(xdg):
		return xdg
	case xdg != "":
		return ""
	case home != "":
		return filepath.Join(home, ".config")
	}
	return ""
}

// varsFiles reads the variables files, highest precedence first, as
// wharf-cmd's ListPossibleVarsFiles (pkg/wharfyml/builtins.go:140-170 at
// 421514f): .wharf-vars.yml in dir and each parent, nearest first, then
// wharf-vars.yml in userConfig/iver-wharf/wharf-cmd and in systemDir
// (either skipped when ""). A file that cannot be read is skipped, as
// there; one that does not parse is an error.
func varsFiles(dir, userConfig, systemDir string) ([]pipeline.VarMap, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("variables files above %s: %w", dir, err)
	}
	var paths []string
	for {
		paths = append(paths, filepath.Join(abs, VarsFileName))
		parent := filepath.Dir(abs)
		if parent == abs {
			break
		}
		abs = parent
	}
	if userConfig != "" {
		paths = append(paths, filepath.Join(userConfig, "iver-wharf", "wharf-cmd", ConfigVarsFileName))
	}
	if systemDir != "" {
		paths = append(paths, filepath.Join(systemDir, ConfigVarsFileName))
	}
	var out []pipeline.VarMap
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // missing, a directory, unreadable: builtins.go:73-78
		}
		vars, err := parseVarsFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, vars)
	}
	return out, nil
}

// parseVarsFile returns the vars of every YAML document in a variables
// file; a name in a later document overrides the same name in an earlier
// one (builtins.go:60-66 and 91-112 at 421514f). Keys other than vars are
// ignored. Errors name the document and never quote a value: a variables
// file may hold credentials.
func parseVarsFile(b []byte) (pipeline.VarMap, error) {
	out := pipeline.VarMap{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for n := 1; ; n++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		root := resolveAlias(&doc)
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			root = resolveAlias(root.Content[0])
		}
		if isNull(root) {
			continue // an empty document
		}
		top, err := mapPairs(root)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		for _, kv := range top {
			if kv.key != "vars" {
				continue // builtins.go:102-105
			}
			pairs, err := mapPairs(kv.value)
			if err != nil {
				return nil, fmt.Errorf("document %d: vars: %w", n, err)
			}
			for _, p := range pairs {
				var v any
				if err := p.value.Decode(&v); err != nil {
					return nil, fmt.Errorf("document %d: vars: %s (line %d): cannot read the value", n, p.key, p.value.Line)
				}
				out[p.key] = v
			}
		}
	}
}

type yamlPair struct {
	key   string
	value *yaml.Node
}

// mapPairs returns a mapping's pairs in file order, as wharf-cmd's
// visit.MapSlice (pkg/wharfyml/visit/visit.go:113-151 at 421514f): merge
// keys (<<) spliced in where they stand, keys non-empty strings, a key
// given twice an error.
func mapPairs(n *yaml.Node) ([]yamlPair, error) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected a map, not a %s", n.Line, kindName(n))
	}
	var out []yamlPair
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolveAlias(n.Content[i]), resolveAlias(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged, err := mapPairs(v)
			if err != nil {
				return nil, err
			}
			out = append(out, merged...)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, fmt.Errorf("line %d: a map key must be a string", k.Line)
		}
		if k.Value == "" {
			return nil, fmt.Errorf("line %d: a map key must not be empty", k.Line)
		}
		if seen[k.Value] {
			return nil, fmt.Errorf("line %d: %s: map key appears more than once", k.Line, k.Value)
		}
		seen[k.Value] = true
		out = append(out, yamlPair{k.Value, v})
	}
	return out, nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.DocumentNode || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value of type " + strings.TrimPrefix(n.ShortTag(), "!!")
	}
	return "node"
}

// stepEnv is the environment a step's processes get: the build's own
// variables (never secrets). wharf-cmd gives its step pods none of these
// (pkg/steps/container.go:79-89 at 421514f sets no Env); wharfjobs keeps
// them as an extension, which no pipeline written for wharf-cmd relies on.
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
