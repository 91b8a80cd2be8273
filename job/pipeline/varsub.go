package pipeline

import (
	"fmt"
	"strconv"
	"strings"
)

// Vars looks up variable values. Values keep the type their source gave
// them (string, int, float64, bool).
type Vars interface {
	Lookup(name string) (any, bool)
}

// VarMap is Vars on a plain map.
type VarMap map[string]any

// Lookup implements Vars.
func (m VarMap) Lookup(name string) (any, bool) {
	v, ok := m[name]
	return v, ok
}

// Layered looks a name up in each Vars in turn: the first one that has it
// wins, so list the highest precedence first.
type Layered []Vars

// Lookup implements Vars.
func (l Layered) Lookup(name string) (any, bool) {
	for _, v := range l {
		if v == nil {
			continue
		}
		if val, ok := v.Lookup(name); ok {
			return val, true
		}
	}
	return nil, false
}

// MaxVarDepth bounds how deep a value may refer to other variables.
const MaxVarDepth = 16

// MaxValueSize bounds every value substitution builds or hands out, the
// value of each variable on the way included. A few variables that each
// repeat the next one a few times multiply (a: "${b}${b}...", b:
// "${c}${c}...", ...), so a few hundred bytes of defaults would otherwise
// grow into gigabytes; the size is checked while a value is built, before
// it is too late. A command this long would not fit a process's arguments
// anyway.
const MaxValueSize = 1 << 20

// varRef is one ${...} in a string, s[start:end]: a reference to the
// variable name, or an escape that writes literal.
type varRef struct {
	start, end int
	name       string
	escape     bool
	literal    string
}

// nextVar finds the first ${...} in s from index from on, as wharf-cmd's
// pattern \$\{\s*([^}]*)\s*\} does (pkg/varsub/varsub.go:30 at 421514f):
// the name is whatever stands between the braces, trimmed. ${%...%} is
// the escape for a literal ${...} (its inside kept as it is), and ${%}
// for ${} (varsub.go:91-100). Scanned by hand: it runs for every
// reference in every value, and a regexp call costs microseconds, which a
// file with many references multiplies into seconds.
func nextVar(s string, from int) (varRef, bool) {
	i := strings.Index(s[from:], "${")
	if i < 0 {
		return varRef{}, false
	}
	r := varRef{start: from + i}
	k := strings.IndexByte(s[r.start+2:], '}')
	if k < 0 {
		return varRef{}, false
	}
	r.end = r.start + 2 + k + 1
	full := s[r.start:r.end]
	r.name = strings.TrimSpace(full[2 : len(full)-1])
	switch {
	case full == "${%}":
		r.escape, r.literal = true, "${}"
	case len(full) >= 5 && strings.HasPrefix(full, "${%") && strings.HasSuffix(full, "%}"):
		r.escape, r.literal = true, "${"+full[3:len(full)-2]+"}"
	}
	return r, true
}

// Substitute replaces ${name} in s by the variable's value. A string that
// is exactly one ${name} becomes the value with its type; otherwise values
// are formatted into the string. ${%name%} is the escape for a literal
// ${name}. Names no source knows are left as they are, so shell variables
// such as ${HOME} reach the step's shell. Values that themselves contain
// ${...} are substituted too, up to MaxVarDepth, and a cycle is an error.
// No value may grow beyond MaxValueSize, and one call resolves at most
// MaxExpandNodes references and goes through at most MaxExpandBytes of
// text; the error then names the variable where possible.
func Substitute(s string, vars Vars) (any, error) {
	return substitute(s, vars, &budget{}, nil)
}

// substitute is Substitute for the value of the variables on stack,
// spending bud, which a parse shares between all its values.
func substitute(s string, vars Vars, bud *budget, stack []string) (any, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	// Reading counts too: a long value full of references to empty ones
	// builds nothing but still costs its scan, every time it is used.
	if err := bud.text(len(s)); err != nil {
		return nil, err
	}
	var b strings.Builder
	// write appends text to the value being built, never past
	// MaxValueSize. name, for the error, is the variable text is the value
	// of, or for literal text the last one before it.
	write := func(text, name string) error {
		if b.Len()+len(text) > MaxValueSize {
			switch {
			case len(stack) > 0:
				return fmt.Errorf("variable ${%s}: value grows beyond %d bytes", stack[len(stack)-1], MaxValueSize)
			case name != "":
				return fmt.Errorf("variable ${%s}: substituted text grows beyond %d bytes", name, MaxValueSize)
			}
			return fmt.Errorf("substituted text grows beyond %d bytes", MaxValueSize)
		}
		if err := bud.text(len(text)); err != nil {
			return err
		}
		b.WriteString(text)
		return nil
	}
	last, lastName := 0, ""
	for {
		ref, found := nextVar(s, last)
		if !found {
			break
		}
		// A match over the whole string is the only one: the value
		// keeps its type.
		whole := ref.start == 0 && ref.end == len(s)
		full := s[ref.start:ref.end]
		name := ref.name
		if err := write(s[last:ref.start], lastName); err != nil {
			return nil, err
		}
		last = ref.end
		if ref.escape {
			if err := write(ref.literal, lastName); err != nil {
				return nil, err
			}
			continue
		}
		if name == "" {
			if err := write(full, lastName); err != nil {
				return nil, err
			}
			continue
		}
		val, ok := vars.Lookup(name)
		if !ok {
			if err := write(full, lastName); err != nil {
				return nil, err
			}
			continue
		}
		for i, seen := range stack {
			if seen == name {
				return nil, fmt.Errorf("variable cycle: %s", strings.Join(append(stack[i:], name), " -> "))
			}
		}
		if len(stack) >= MaxVarDepth {
			return nil, fmt.Errorf("variable ${%s}: nested deeper than %d levels", name, MaxVarDepth)
		}
		if err := bud.ref(); err != nil {
			return nil, err
		}
		if str, isStr := val.(string); isStr {
			sub, err := substitute(str, vars, bud, append(stack, name))
			if err != nil {
				return nil, err
			}
			val = sub
		}
		// A value handed out whole is a substituted value too, even one
		// that came from a source as it is.
		if str, isStr := val.(string); isStr && len(str) > MaxValueSize {
			return nil, fmt.Errorf("variable ${%s}: value is longer than %d bytes", name, MaxValueSize)
		}
		if whole {
			return val, nil
		}
		lastName = name
		if err := write(format(val), name); err != nil {
			return nil, err
		}
	}
	if err := write(s[last:], lastName); err != nil {
		return nil, err
	}
	return b.String(), nil
}

func format(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}
