package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and its answer stays within the budgets
// whatever the file: a definition without errors has at most
// MaxExpandNodes steps and MaxExpandBytes of step text, errors carry a
// message and a position inside the file, and a Definition comes back
// whenever the file was YAML. The seeds include the alias and
// substitution bombs (testdata/invalid), which must end at a budget
// rather than expand; that the time and memory of every run stay small
// follows from the budgets.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range []string{
		// Aliases in keys, stages, inputs and steps.
		"x: &i {name: A, type: password, default: s3cret}\ny: &c make\nz: &t {s: {container: {image: alpine, cmds: [*c, \"${A}\"]}}}\ninputs: [*i]\n*c : *t\n",
		// A merge key is only a key here.
		"t: &t {image: alpine, cmds: [x]}\nb: {s: {container: {<<: *t}}}\n",
		// Variables typed by a whole reference, escapes, shell variables.
		"inputs: [{name: N, type: number, default: 2}]\nb: {s: {docker: {file: D, tag: \"${N},${%N%},${HOME}\", push: \"${N}\"}}}\n",
		// A docker step repeating its destination.
		"b: {s: {docker: {file: D, destination: rrrrrrrr, tag: \"a,b,c,d,e,f,g,h,i,j\"}}}\n",
		"inputs: [{name: a, type: string, default: \"${a}${a}\"}]\nb: {s: {container: {image: \"${a}\", cmds: []}}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		def, err := Parse(src, Options{File: "f.yml", Environment: "stage", Vars: buildVars})
		if err == nil {
			if def == nil || len(def.Stages) == 0 {
				t.Fatal("no error and no stages")
			}
			steps, size := 0, 0
			for _, st := range def.Stages {
				for _, s := range st.Steps {
					steps++
					size += s.Container.size()
					if s.Container.Image == "" || s.Container.Shell == "" {
						t.Fatalf("step %s/%s without image or shell: %+v", st.Name, s.Name, s.Container)
					}
				}
			}
			if steps > MaxExpandNodes || size > MaxExpandBytes {
				t.Fatalf("%d steps of %d bytes from %d bytes of file", steps, size, len(src))
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v is not a non-empty Errors", err)
		}
		if def == nil && len(errs) != 1 {
			t.Fatalf("no Definition, but %d errors (not just one for a file that is no YAML):\n%v", len(errs), errs)
		}
		lines := lineCount(string(src))
		for _, e := range errs {
			if e.Msg == "" || e.File != "f.yml" {
				t.Fatalf("error without a message or file: %#v", e)
			}
			// yaml places a value left out at the end ("?") on the
			// line after the last.
			if e.Pos.Line > lines+1 || e.Pos.Line < 0 || e.Pos.Col < 0 {
				t.Fatalf("error outside the file's %d lines: %v", lines, e)
			}
		}
		if budgetErrors(errs) > 1 {
			t.Fatalf("budget reported more than once:\n%v", errs)
		}
	})
}

// lineCount is how many lines YAML sees in src: a line ends in \n, \r\n
// or \r, and for libyaml also in NEL, LS or PS.
func lineCount(src string) int {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	n := 1
	for _, r := range src {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// budgetErrors counts the errors saying that a budget ran out.
func budgetErrors(errs Errors) int {
	n := 0
	for _, e := range errs {
		if strings.Contains(e.Msg, "expands to more than") {
			n++
		}
	}
	return n
}

// varRegexp is the pattern nextVar scans for by hand.
// It is wharf-cmd's (pkg/varsub/varsub.go:30 at 421514f).
var varRegexp = regexp.MustCompile(`\$\{\s*([^}]*)\s*}`)

// FuzzSubstitute: Substitute never panics, never hands out a string
// longer than MaxValueSize, keeps a string without "${" as it is, gives a
// typed value only for a whole reference, only shrinks a string when no
// variable is known, and finds the references the regular expression
// would.
func FuzzSubstitute(f *testing.F) {
	ten := func(s string) string { return strings.Repeat(s, 10) }
	// The substitution bomb: each of a, b, c repeats the next; ${a} is
	// 1000 copies of d, and 30 of those are 30000.
	f.Add(ten("${a}")+ten("${a}")+ten("${a}"), ten("${b}"), ten("${c}"), ten("${d}"), strings.Repeat("x", 2000))
	// References to empty values: nothing is built, but 10^4 per ${a}.
	f.Add(ten(ten("${a}")), ten("${b}"), ten("${c}"), ten("${d}"), "")
	f.Add("${a}", "${b}", "${a}", "", "") // a cycle
	f.Add("${ a } ${%b%} ${HOME} ${} ${%c} $${d", "1", "2", "3", "4")
	f.Add("${a}", "${n}", "", "", "") // a typed value through a variable
	f.Add("x${t}${n}", "", "", "", "")
	f.Add("${${a}}", "b", "", "", "")
	f.Fuzz(func(t *testing.T, s, a, b, c, d string) {
		vars := VarMap{"a": a, "b": b, "c": c, "d": d, "n": 3, "t": true}
		got, err := Substitute(s, vars)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
		} else if str, isStr := got.(string); isStr {
			if len(str) > MaxValueSize && str != s {
				t.Fatalf("value of %d bytes", len(str))
			}
		} else if got != 3 && got != true {
			t.Fatalf("Substitute(%q) = %#v, a type no variable has", s, got)
		} else if m := varRegexp.FindStringIndex(s); m == nil || m[0] != 0 || m[1] != len(s) {
			t.Fatalf("Substitute(%q) = %#v, typed but not a whole reference", s, got)
		}
		if !strings.Contains(s, "${") && (err != nil || got != s) {
			t.Fatalf("Substitute(%q) = %#v, %v; want it unchanged", s, got, err)
		}

		none, err := Substitute(s, VarMap{})
		if str, isStr := none.(string); err != nil || !isStr || len(str) > len(s) {
			t.Fatalf("Substitute(%q) without variables = %#v, %v", s, none, err)
		}

		var want []varRef
		for _, m := range varRegexp.FindAllStringSubmatchIndex(s, -1) {
			want = append(want, varRef{start: m[0], end: m[1], name: strings.TrimSpace(s[m[2]:m[3]])})
		}
		var refs []varRef
		for from := 0; ; {
			r, ok := nextVar(s, from)
			if !ok {
				break
			}
			from = r.end
			r.escape, r.literal = false, ""
			refs = append(refs, r)
		}
		if len(refs) != len(want) {
			t.Fatalf("nextVar finds %+v in %q, the regexp %+v", refs, s, want)
		}
		for i := range refs {
			if refs[i] != want[i] {
				t.Fatalf("nextVar finds %+v in %q, the regexp %+v", refs, s, want)
			}
		}
	})
}
