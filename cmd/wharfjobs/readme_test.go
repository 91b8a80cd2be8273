package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// envNames lists the environment variables a configuration struct reads,
// as envconfig.Process("WHARFJOBS", ...) does: a field's envconfig tag
// with the prefix; untagged struct fields are walked into.
func envNames(t reflect.Type, into map[string]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("ignored") == "true" || !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("envconfig")
		if tag == "" && f.Type.Kind() == reflect.Struct {
			envNames(f.Type, into)
			continue
		}
		if tag != "" {
			into[tag] = f.Tag.Get("default")
		}
	}
}

// TestEveryVariableIsInTheREADME: every WHARFJOBS_* variable a command
// reads is documented in README.md or docs/*.md (the configuration tables
// live in docs/operating.md), so code and documentation cannot drift apart.
func TestEveryVariableIsInTheREADME(t *testing.T) {
	readme := documentation(t)
	lines := strings.Split(readme, "\n")
	vars := map[string]string{}
	for _, v := range []any{provisionerEnv{}, aggregatorEnv{}, workerEnv{}, kuberun.Config{}, provisioner.HTTPConfig{}} {
		envNames(reflect.TypeOf(v), vars)
	}
	if len(vars) < 40 {
		t.Fatalf("found only %d variables: the walk is broken", len(vars))
	}
	documented := func(name string) bool {
		full := "WHARFJOBS_" + name
		if strings.Contains(readme, "`"+full+"`") || strings.Contains(readme, "`"+name+"`") {
			return true
		}
		// A table row may abbreviate its siblings: `WHARFJOBS_STEP_CPU_REQUEST` / `_LIMIT`.
		for i := strings.Index(full, "_"); i > 0; i = nextUnderscore(full, i) {
			prefix, suffix := full[:i], full[i:]
			for _, l := range lines {
				if strings.Contains(l, "`"+suffix+"`") && regexp.MustCompile("`"+regexp.QuoteMeta(prefix)+"_[A-Z_]+`").MatchString(l) {
					return true
				}
			}
		}
		return false
	}
	for name, def := range vars {
		if !documented(name) {
			t.Errorf("WHARFJOBS_%s (default %q) is in neither README.md nor docs/*.md", name, def)
			continue
		}
		// Where a table row is the variable's own, it gives the default.
		for _, l := range lines {
			if strings.HasPrefix(l, "| `WHARFJOBS_"+name+"` |") && def != "" && !strings.Contains(l, def) {
				t.Errorf("the documented row of WHARFJOBS_%s does not give its default %q: %s", name, def, l)
			}
		}
	}
}

// documentation returns README.md and every docs/*.md, concatenated. It
// fails the test when docs/operating.md, which holds the configuration
// tables, is missing.
func documentation(t *testing.T) string {
	t.Helper()
	files := []string{"../../README.md"}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, docs...)
	if !slices.Contains(docs, "../../docs/operating.md") {
		t.Fatalf("docs/operating.md is missing (found %v)", docs)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		all.WriteString("\n")
	}
	return all.String()
}

func nextUnderscore(s string, i int) int {
	j := strings.Index(s[i+1:], "_")
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
