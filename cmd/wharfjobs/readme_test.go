package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
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
	documented := func(name string) bool { return documentedIn(readme, lines, name) }
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

// TestEveryVariableInTheCodeIsInTheDocs reads the repository's Go source
// rather than a list of configuration types, so a setting added anywhere
// is caught: every envconfig tag (read under WHARFJOBS_) and every
// WHARFJOBS_* name passed to os.Getenv, os.LookupEnv or a test harness's
// binary lookup must be in README.md or docs/*.md, and a table row of its
// own must give its default.
func TestEveryVariableInTheCodeIsInTheDocs(t *testing.T) {
	docs := documentation(t)
	lines := strings.Split(docs, "\n")
	vars := map[string]string{} // name without WHARFJOBS_ -> default
	where := map[string]string{}
	readers := map[string]bool{"Getenv": true, "LookupEnv": true, "CachedBinary": true, "cachedTool": true}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != "../.." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(path, "../../")
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if n.Tag == nil || strings.HasSuffix(path, "_test.go") {
					return true
				}
				tag, err := strconv.Unquote(n.Tag.Value)
				if err != nil {
					return true
				}
				st := reflect.StructTag(tag)
				if name := st.Get("envconfig"); name != "" && st.Get("ignored") != "true" {
					vars[name], where[name] = st.Get("default"), rel
				}
			case *ast.CallExpr:
				var fn string
				switch f := n.Fun.(type) {
				case *ast.SelectorExpr:
					fn = f.Sel.Name
				case *ast.Ident:
					fn = f.Name
				}
				if !readers[fn] {
					return true
				}
				for _, a := range n.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil && regexp.MustCompile(`^WHARFJOBS_[A-Z0-9_]+$`).MatchString(v) {
							name := strings.TrimPrefix(v, "WHARFJOBS_")
							if _, ok := vars[name]; !ok {
								vars[name], where[name] = "", rel
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) < 60 {
		t.Fatalf("found only %d variables in the source: the scan is broken", len(vars))
	}
	for name, def := range vars {
		if !documentedIn(docs, lines, name) {
			t.Errorf("WHARFJOBS_%s (read in %s, default %q) is in neither README.md nor docs/*.md", name, where[name], def)
			continue
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "| `WHARFJOBS_"+name+"` |") && def != "" && !strings.Contains(l, def) {
				t.Errorf("the documented row of WHARFJOBS_%s (read in %s) does not give its default %q: %s", name, where[name], def, l)
			}
		}
	}
}

// documentedIn reports whether the variable WHARFJOBS_name, or name
// alone, is written as code in docs; a table row may abbreviate its
// siblings: `WHARFJOBS_STEP_CPU_REQUEST` / `_LIMIT`.
func documentedIn(docs string, lines []string, name string) bool {
	full := "WHARFJOBS_" + name
	if strings.Contains(docs, "`"+full+"`") || strings.Contains(docs, "`"+name+"`") {
		return true
	}
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
