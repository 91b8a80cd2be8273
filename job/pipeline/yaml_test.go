package pipeline

import (
	"strings"
	"testing"
)

func TestParseOneDocumentOnly(t *testing.T) {
	// wharf-cmd pkg/wharfyml/visit/decode.go:21-23 at 421514f: a second
	// document is an error, not dropped.
	src := "a: {s: {container: {image: alpine, cmds: [true]}}}\n---\nb: {s: {container: {image: alpine, cmds: [false]}}}\n"
	def, err := Parse([]byte(src), Options{File: "f.yml"})
	if def != nil || err == nil || !strings.HasPrefix(err.Error(), "f.yml:3:1: only 1 document is allowed") {
		t.Fatalf("two documents: %v, %v", def, err)
	}
	// A "---" with nothing after it is an empty second document there too.
	if _, err := Parse([]byte(src[:strings.Index(src, "b:")]), Options{File: "f.yml"}); err == nil || !strings.Contains(err.Error(), "only 1 document is allowed") {
		t.Fatalf("one document and a trailing ---: %v", err)
	}
	if _, err := Parse([]byte("---\n"+src[:strings.Index(src, "---")]), Options{File: "f.yml"}); err != nil {
		t.Fatalf("one document after ---: %v", err)
	}
}

func TestParseMergeKeysAndAliases(t *testing.T) {
	// wharf-cmd pkg/wharfyml/visit/visit.go:127-132 at 421514f merges
	// "<<:" maps in place; decode.go:49-57 resolves aliases, for whole
	// stages and steps too.
	src := `.go: &go
  image: golang:1.26
  shell: /bin/bash
test:
  unit:
    container:
      <<: *go
      cmds: [go test ./...]
  vet: &vet
    container:
      <<: *go
      cmds: [go vet ./...]
again: &again
  vet: *vet
later: *again
`
	// ".go" is a stage of its own, as in wharf-cmd, whose keys are no
	// step types: an error, but the rest must have parsed.
	def, err := Parse([]byte(src), Options{File: "f.yml"})
	if err == nil || strings.Count(err.Error(), "\n") != 1 || !strings.Contains(err.Error(), `stages..go.steps.image: expected a map with one step type`) {
		t.Fatalf("errors: %v", err)
	}
	var got []string
	for _, st := range def.Stages {
		for _, s := range st.Steps {
			got = append(got, st.Name+"."+s.Name+"="+s.Container.Image+" "+s.Container.Shell+" "+strings.Join(s.Container.Cmds, ";"))
		}
	}
	want := "test.unit=golang:1.26 /bin/bash go test ./...|test.vet=golang:1.26 /bin/bash go vet ./...|again.vet=golang:1.26 /bin/bash go vet ./...|later.vet=golang:1.26 /bin/bash go vet ./..."
	if strings.Join(got, "|") != want {
		t.Fatalf("steps\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	// visit.go:142-147: a key given twice is an error, merged or not.
	dup := "b: {s: {container: {<<: {image: a, cmds: [x]}, image: b}}}"
	if _, err := Parse([]byte(dup), Options{File: "f.yml"}); err == nil || !strings.Contains(err.Error(), "stages.b.steps.s.container.image: defined twice") {
		t.Fatalf("merged key given again: %v", err)
	}
	if _, err := Parse([]byte("b: {s: {container: {<<: [x], image: a, cmds: [x]}}}"), Options{File: "f.yml"}); err == nil || !strings.Contains(err.Error(), "a merge (<<) needs a map, got a list") {
		t.Fatalf("merge of a list: %v", err)
	}
}

func TestParseKeysAndEnvironments(t *testing.T) {
	cases := map[string]string{
		// wharf-cmd pkg/wharfyml/visit/visit.go:134-141 at 421514f.
		"environments: {prod: {123: x}}\nb: {s: {container: {image: a, cmds: [x]}}}":  `f.yml:1:23: environments.prod: map key must be a string, got "123"`,
		"environments: {prod: {\"\": x}}\nb: {s: {container: {image: a, cmds: [x]}}}": "f.yml:1:23: environments.prod: map key must not be empty",
		// pkg/wharfyml/environment.go:79-101 at 421514f.
		"b: {environments: 123, s: {container: {image: a, cmds: [x]}}}":       `f.yml:1:19: stages.b.environments: expected a list of environment names, got "123"`,
		"b: {environments: prod, s: {container: {image: a, cmds: [x]}}}":      `stages.b.environments: expected a list of environment names, got "prod"`,
		"b: {environments: [prod, 1], s: {container: {image: a, cmds: [x]}}}": `f.yml:1:26: stages.b.environments[1]: expected an environment name, got "1"`,
		"b: {environments: [\"\"], s: {container: {image: a, cmds: [x]}}}":    "stages.b.environments[0]: environment name cannot be empty",
	}
	for src, want := range cases {
		if _, err := Parse([]byte(src), Options{File: "f.yml"}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", src, err, want)
		}
	}
}

func TestParseUnknownFieldIsAWarning(t *testing.T) {
	// wharf-cmd's step types read only the fields they know
	// (pkg/steps/container.go:45-53 at 421514f), so an unknown one is
	// ignored; unknown step types stay errors (pkg/steps/steps.go:112-113).
	src := "b:\n  s:\n    container:\n      image: alpine\n      cmds: [x]\n      imagePullPolicy: Always\n"
	def, err := Parse([]byte(src), Options{File: "f.yml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Warnings) != 1 || !strings.HasPrefix(def.Warnings[0].Error(), "f.yml:6:7: stages.b.steps.s.container.imagePullPolicy: unknown field, ignored; known are image, cmds") {
		t.Fatalf("warnings = %v", def.Warnings)
	}
	if _, err := Parse([]byte("b: {s: {contianer: {image: a}}}"), Options{File: "f.yml"}); err == nil || !strings.Contains(err.Error(), `unknown step type "contianer"`) {
		t.Fatalf("unknown step type: %v", err)
	}
}
