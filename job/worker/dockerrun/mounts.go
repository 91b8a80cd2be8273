package dockerrun

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// projectObject matches the names of projects' Secrets
// (job.ProjectSecretName), whatever the instance and project.
var projectObject = regexp.MustCompile(`^wharf-.*-project-[0-9]+-secretname-`)

// With no cluster, Config.SecretsDir stands in for its Secrets and
// ConfigMaps: the object X is the directory SecretsDir/X, one file per
// key, as Kubernetes mounts them.

// secretEnv adds the keys of the step's secretName (its project's Secret)
// to environ, or only the SecretEnv ones when the step type names them
// (then nothing is mounted), and binds the Secret's files at SecretPath as
// a step pod has them.
func (r *Runner) secretEnv(step worker.Step, environ map[string]string, binds *[]string) error {
	c := step.Container
	name, err := job.ProjectSecretName(step.Instance, step.ProjectID, c.SecretName)
	if err != nil {
		return fmt.Errorf("step %s/%s: %w", step.Stage, step.Name, err)
	}
	dir, ok := r.objectDir(name)
	if !ok {
		return fmt.Errorf("step %s/%s: secretName %s: no directory %s in WHARFJOBS_DOCKER_SECRETS_DIR", step.Stage, step.Name, c.SecretName, name)
	}
	keys, err := secretKeys(dir)
	if err != nil {
		return fmt.Errorf("step %s/%s: secretName %s: %w", step.Stage, step.Name, c.SecretName, err)
	}
	if len(c.SecretEnv) > 0 {
		for _, v := range slices.Sorted(maps.Keys(c.SecretEnv)) {
			val, ok := keys[c.SecretEnv[v]]
			if !ok {
				return fmt.Errorf("step %s/%s: secretName %s has no key %s", step.Stage, step.Name, c.SecretName, c.SecretEnv[v])
			}
			environ[v] = val
		}
		return nil
	}
	maps.Copy(environ, keys)
	*binds = append(*binds, dir+":"+SecretPath+":ro")
	return nil
}

// envName is what a shell takes as a variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// writeEnvFile writes vars as a script of exports for sh. Keys that are
// no variable names are left out with a log line, as Kubernetes' envFrom
// leaves them out.
func writeEnvFile(path string, vars map[string]string, stderr io.Writer) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if !envName.MatchString(k) {
			fmt.Fprintf(stderr, "[wharfjobs] docker runner: secret key %q is not a variable name; it is only a file\n", k)
			continue
		}
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(vars[k], "'", `'\''`))
	}
	// Readable by the step's user, whoever the image makes it; the step's
	// directory around it keeps it from this machine's other users.
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// objectDir is the directory of the Secret or ConfigMap name, if it
// exists.
func (r *Runner) objectDir(name string) (string, bool) {
	if r.Config.SecretsDir == "" || name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", false
	}
	dir := filepath.Join(r.Config.SecretsDir, name)
	fi, err := os.Stat(dir)
	return dir, err == nil && fi.IsDir()
}

func secretKeys(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		keys[e.Name()] = string(b)
	}
	return keys, nil
}

// mountBinds are the binds of a step type's mount: every file of the
// object at m.Path, or the Items keys at their names. A missing object
// is a log line, not an error, as the kube runner's optional volumes: a
// push without credentials fails with the registry's own answer. A Secret
// that belongs to another project is refused.
func (r *Runner) mountBinds(step worker.Step, m pipeline.Mount, stderr io.Writer) ([]string, error) {
	name, kind := m.Secret, "Secret"
	if m.ConfigMap != "" {
		name, kind = m.ConfigMap, "ConfigMap"
	}
	if name == "" {
		return nil, fmt.Errorf("%w: a mount at %s names neither a Secret nor a ConfigMap", ErrMountNotAllowed, m.Path)
	}
	// One directory holds both kinds: a ConfigMap named like a project's
	// Secret (a kubectl step's cluster) reads that Secret's files.
	if projectObject.MatchString(name) {
		own, err := job.ProjectSecretPrefix(step.Instance, step.ProjectID)
		if err != nil || !strings.HasPrefix(name, own) {
			return nil, fmt.Errorf("%w: %s %q belongs to another project", ErrMountNotAllowed, kind, name)
		}
	}
	dir, ok := r.objectDir(name)
	if !ok {
		fmt.Fprintf(stderr, "[wharfjobs] docker runner: %s %s is not in WHARFJOBS_DOCKER_SECRETS_DIR; nothing mounted at %s\n", kind, name, m.Path)
		return nil, nil
	}
	if len(m.Items) == 0 {
		return []string{dir + ":" + m.Path + ":ro"}, nil
	}
	var binds []string
	for _, key := range slices.Sorted(maps.Keys(m.Items)) {
		src := filepath.Join(dir, key)
		if strings.ContainsAny(key, "/\\") {
			continue
		}
		if _, err := os.Stat(src); err != nil {
			fmt.Fprintf(stderr, "[wharfjobs] docker runner: %s %s has no key %s\n", kind, name, key)
			continue
		}
		binds = append(binds, src+":"+filepath.Join(m.Path, m.Items[key])+":ro")
	}
	return binds, nil
}
