package pipeline

import (
	"strings"
	"testing"
)

// Variable rules as wharf-cmd v0.9 has them (iver-wharf/wharf-cmd at
// 421514f), each cited beside its case.
func TestSubstituteEscapesAsWharfCmd(t *testing.T) {
	vars := VarMap{"name": "v", " name ": "never"}
	for _, c := range []struct{ in, want string }{
		// pkg/varsub/varsub.go:91-93: ${%} is the escape for ${}.
		{"a ${%} b", "a ${} b"},
		// varsub.go:95-99: ${%...%} writes ${...}, its inside as it is.
		{"${%name%}", "${name}"},
		{"${% name %}", "${ name }"},
		// varsub.go:30,118: the name is whatever stands in the braces,
		// trimmed, so whitespace around it is allowed.
		{"x${ name }y", "xvy"},
		{"x${\tname\n}y", "xvy"},
		// Not an escape: the % must follow ${ directly (varsub.go:95).
		{"${ %name% }", "${ %name% }"},
		// A name no source knows stays, for the shell.
		{"${HOME} ${a:-b}", "${HOME} ${a:-b}"},
	} {
		got, err := Substitute(c.in, vars)
		if err != nil || got != c.want {
			t.Errorf("Substitute(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestInputRulesAsWharfCmd(t *testing.T) {
	const file = `inputs:
  - name: S
    type: string
  - name: N
    type: number
  - name: P
    type: password
build:
  show:
    container:
      image: alpine
      cmds: ["echo [${S}] [${N}] [${P}] ${GIT_COMMIT}"]
`
	parse := func(src string, opts Options) (*Definition, error) {
		if opts.Vars == nil {
			opts.Vars = VarMap{"GIT_COMMIT": "abc123"}
		}
		return Parse([]byte(src), opts)
	}
	// pkg/wharfyml/inputs.go:25-36 and inputtypes.go (DefaultValue): every
	// input is a variable, its zero value without a default.
	def, err := parse(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := def.Stages[0].Steps[0].Container.Cmds[0]; got != "echo [] [0] [] abc123" {
		t.Errorf("inputs without defaults: %q", got)
	}
	// inputs.go:117-126: a request sets declared inputs only; an
	// undeclared one is an error naming it, and so the request can never
	// override a built-in such as GIT_COMMIT.
	_, err = parse(file, Options{Inputs: map[string]any{"S": "x", "GIT_COMMIT": "forged", "EXTRA": 1}})
	if err == nil || !strings.Contains(err.Error(), `"EXTRA", which is not an input`) || !strings.Contains(err.Error(), `"GIT_COMMIT", which is not an input`) {
		t.Errorf("undeclared request inputs: %v", err)
	}
	// inputs.go:106-110: a choice input needs a default.
	_, err = parse("inputs:\n  - name: C\n    type: choice\n    values: [a, b]\n"+file[len("inputs:\n"):], Options{})
	if err == nil || !strings.Contains(err.Error(), "inputs.C.default: a choice input needs a default") {
		t.Errorf("choice without default: %v", err)
	}
	// pkg/wharfyml/definition.go:92-100: an environment the file does not
	// define is an error, also when it defines none.
	_, err = parse(file, Options{Environment: "prod"})
	if err == nil || !strings.Contains(err.Error(), `environment "prod" is not defined: the file defines no environments`) {
		t.Errorf("unknown environment in a file without environments: %v", err)
	}
}

// pkg/steps/container.go:88-105 at 421514f: certificatesMountPath mounts
// the ConfigMap ca-certificates-config there.
func TestContainerCertificatesMountPath(t *testing.T) {
	def, err := Parse([]byte("build:\n  c:\n    container:\n      image: alpine\n      certificatesMountPath: /usr/local/share/ca-certificates\n      cmds: [update-ca-certificates]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := def.Stages[0].Steps[0].Container.Mounts
	if len(m) != 1 || m[0].ConfigMap != "ca-certificates-config" || m[0].Path != "/usr/local/share/ca-certificates" {
		t.Fatalf("mounts %+v", m)
	}
}
