package pipeline

// The budgets tested here are wharfjobs' own: wharf-cmd (iver-wharf/wharf-cmd
// at 421514f, pkg/wharfyml) expands aliases and substitutes variables
// without a limit. docs/using.md lists them among the deliberate differences.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// parseErrors parses src and returns its Errors, failing if there are none.
func parseErrors(t testing.TB, src []byte, opts Options) (*Definition, Errors) {
	t.Helper()
	def, err := Parse(src, opts)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error %v is not a non-empty Errors", err)
	}
	return def, errs
}

// only returns the one error whose message has substr.
func only(t testing.TB, errs Errors, substr string) Error {
	t.Helper()
	var found []Error
	for _, e := range errs {
		if strings.Contains(e.Msg, substr) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d errors with %q, want 1:\n%v", len(found), substr, errs)
	}
	return found[0]
}

func TestParseAliasBombStopsAtTheNodeBudget(t *testing.T) {
	_, err := parseFile(t, "testdata/invalid/alias-bomb.yml", Options{})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	// Reported at the alias that asked for 9^7 strings, once.
	e := only(t, errs, "YAML nodes")
	if got, want := e.Error(), "alias-bomb.yml:13:13: stages.build: expands to more than 100000 YAML nodes (aliases?)"; got != want {
		t.Fatalf("budget error = %q, want %q", got, want)
	}
}

func TestParseSubstitutionBombStopsAtTheValueSize(t *testing.T) {
	def, err := parseFile(t, "testdata/invalid/subst-bomb.yml", Options{})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	// c is ten copies of d, 5.7 MB: the first value to pass the limit.
	e := only(t, errs, "grows beyond")
	if got, want := e.Error(), "subst-bomb.yml:32:14: stages.build: variable ${c}: value grows beyond 1048576 bytes"; got != want {
		t.Fatalf("size error = %q, want %q", got, want)
	}
	if def == nil || len(def.Inputs) != 8 || def.Inputs[7].Default != strings.Repeat("x", 57) {
		t.Fatalf("partial definition lacks the inputs: %+v", def)
	}
}

func TestParseBudgetIsSharedByAllStages(t *testing.T) {
	// 300 stages of 1000 strings each: no stage is big, the file is.
	var b strings.Builder
	b.WriteString("x: &x [" + strings.Repeat(`"x",`, 999) + `"x"]` + "\n")
	for i := range 300 {
		fmt.Fprintf(&b, "s%d: {s: {container: {image: alpine, cmds: *x}}}\n", i)
	}
	_, errs := parseErrors(t, []byte(b.String()), Options{File: "f.yml"})
	e := only(t, errs, "expands to more than")
	if !strings.Contains(e.Error(), ": stages.s99: expands to more than 100000 YAML nodes") {
		t.Fatalf("budget error = %q, want it at stage s99", e.Error())
	}
}

func TestParseTextBudget(t *testing.T) {
	// 300 aliases of a 64 KiB string: few nodes, 19 MiB of text.
	src := "a: &a " + strings.Repeat("x", 64<<10) + "\n" +
		"l: &l [" + strings.Repeat("*a,", 99) + "*a]\n" +
		"build: {s: {container: {image: alpine, cmds: [*l, *l, *l]}}}\n"
	_, errs := parseErrors(t, []byte(src), Options{File: "f.yml"})
	e := only(t, errs, "bytes of text")
	if !strings.HasPrefix(e.Error(), "f.yml:3:") || e.Path != "stages.build" {
		t.Fatalf("budget error = %q, want it at stages.build on line 3", e.Error())
	}
}

func TestParseReferenceBudget(t *testing.T) {
	// References to an empty value build nothing, but resolving 10^6 of
	// them is work all the same.
	var defaults []string
	for i := range 6 {
		defaults = append(defaults, fmt.Sprintf("  - {name: v%d, type: string, default: %q}", i, strings.Repeat(fmt.Sprintf("${v%d}", i+1), 10)))
	}
	defaults = append(defaults, `  - {name: v6, type: string, default: ""}`)
	src := "inputs:\n" + strings.Join(defaults, "\n") + "\nbuild: {s: {container: {image: alpine, cmds: [\"${v0}\"]}}}\n"
	_, errs := parseErrors(t, []byte(src), Options{File: "f.yml"})
	if e := only(t, errs, "variable references"); e.Path != "stages.build" || e.Pos.Line != 9 {
		t.Fatalf("budget error = %q, want it at stages.build on line 9", e.Error())
	}
}

func TestSubstituteValueSize(t *testing.T) {
	big := strings.Repeat("x", MaxValueSize)
	vars := VarMap{"big": big, "bigger": big + "x", "two": "${big}${big}", "one": "x"}
	if got, err := Substitute("${big}", vars); err != nil || got != big {
		t.Fatalf("a value of exactly MaxValueSize: %v", err)
	}
	cases := map[string]string{
		"${two}":       "variable ${two}: value grows beyond 1048576 bytes",
		"${bigger}":    "variable ${bigger}: value is longer than 1048576 bytes",
		"${big}${one}": "variable ${one}: substituted text grows beyond 1048576 bytes",
		"${one}" + big: "variable ${one}: substituted text grows beyond 1048576 bytes",
	}
	for in, want := range cases {
		if _, err := Substitute(in, vars); err == nil || err.Error() != want {
			t.Errorf("Substitute(%.20q...) error = %v, want %q", in, err, want)
		}
	}
}

func TestSubstituteReferenceBudget(t *testing.T) {
	vars := VarMap{"e": ""}
	s := strings.Repeat("${e}", MaxExpandNodes)
	if got, err := Substitute(s, vars); err != nil || got != "" {
		t.Fatalf("MaxExpandNodes references: %q, %v", got, err)
	}
	if _, err := Substitute(s+"${e}", vars); err == nil || err.Error() != "expands to more than 100000 variable references" {
		t.Fatalf("one reference more: %v", err)
	}
}

func TestParseDockerTagsTimesDestination(t *testing.T) {
	src := fmt.Sprintf("build: {image: {docker: {file: Dockerfile, destination: %s, tag: %q}}}\n",
		strings.Repeat("r", 100<<10), strings.Repeat("t,", 20))
	_, errs := parseErrors(t, []byte(src), Options{File: "f.yml"})
	only(t, errs, "destinations (tags times destination) are longer than 1048576 bytes")
}

func TestParseReturnsPartialDefinition(t *testing.T) {
	src := []byte(`inputs:
  - {name: TOKEN, type: password, default: hunter2}
  - {name: N, type: number, default: many}
build:
  s:
    container: {image: "${TOKEN}", cmds: {}}
ok:
  s:
    container: {image: alpine, cmds: [true]}
`)
	def, errs := parseErrors(t, src, Options{File: "f.yml"})
	if len(errs) != 2 {
		t.Fatalf("errors: %v", errs)
	}
	if def == nil || len(def.Inputs) != 2 || def.Inputs[0].Type != InputPassword || def.Inputs[0].Default != "hunter2" || def.Inputs[1].Default != "many" {
		t.Fatalf("partial definition inputs = %+v", def)
	}
	if len(def.Stages) != 1 || def.Stages[0].Name != "ok" {
		t.Fatalf("partial definition stages = %+v", def.Stages)
	}

	if def, _ := parseErrors(t, []byte("[a list]"), Options{}); def == nil {
		t.Fatal("no Definition for YAML that is not a map")
	}
	if def, _ := parseErrors(t, []byte("a: [b"), Options{}); def != nil {
		t.Fatalf("Definition for a file that is not YAML: %+v", def)
	}
}

func TestParseFollowsAliasesOutsideStages(t *testing.T) {
	src := []byte(`x: &in {name: TOKEN, type: password}
y: &cmd make
z: &tmpl {s: {container: {image: alpine, cmds: [*cmd]}}}
inputs: [*in]
*cmd : *tmpl
`)
	def, errs := parseErrors(t, src, Options{})
	for _, e := range errs {
		if !strings.HasPrefix(e.Path, "stages.x") && !strings.HasPrefix(e.Path, "stages.y") && !strings.HasPrefix(e.Path, "stages.z") {
			t.Errorf("unexpected error %v", e)
		}
	}
	if len(def.Inputs) != 1 || def.Inputs[0].Name != "TOKEN" {
		t.Fatalf("inputs through an alias = %+v", def.Inputs)
	}
	// z is a stage too; make is its copy, named through an alias.
	if len(def.Stages) != 2 || def.Stages[1].Name != "make" || def.Stages[1].Pos != (Pos{Line: 5, Col: 1}) || def.Stages[1].Steps[0].Container.Cmds[0] != "make" {
		t.Fatalf("stage through aliases = %+v", def.Stages)
	}
}

func benchmarkParseFile(b *testing.B, path string) {
	src, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(src, Options{}); err == nil {
			b.Fatal("no error")
		}
	}
}

func BenchmarkParseAliasBomb(b *testing.B) {
	benchmarkParseFile(b, "testdata/invalid/alias-bomb.yml")
}

func BenchmarkParseSubstitutionBomb(b *testing.B) {
	benchmarkParseFile(b, "testdata/invalid/subst-bomb.yml")
}

func TestParseStepsCountTowardsTheTextBudget(t *testing.T) {
	// Each docker step repeats a 1 KiB destination 1000 times: 1 MB of
	// command from 3 KiB of file, 100 times over through aliases.
	var b strings.Builder
	fmt.Fprintf(&b, "x: &d {docker: {file: Dockerfile, destination: %s, tag: %q}}\nbuild:\n", strings.Repeat("r", 1<<10), strings.Repeat("t,", 1000))
	for i := range 100 {
		fmt.Fprintf(&b, "  s%d: *d\n", i)
	}
	_, errs := parseErrors(t, []byte(b.String()), Options{File: "f.yml"})
	e := only(t, errs, "bytes of text")
	if !strings.HasPrefix(e.Path, "stages.build.steps.s1") || !strings.HasSuffix(e.Path, ".docker") {
		t.Fatalf("budget error = %q, want it at a step", e.Error())
	}
}
