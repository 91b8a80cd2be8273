package pipeline

import (
	"fmt"
	"regexp"
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

// varPattern matches ${name} and the escape ${%name%}; spaces inside the
// braces are allowed, as in Wharf.
var varPattern = regexp.MustCompile(`\$\{\s*(%?)\s*([\w.-]*)\s*(%?)\s*\}`)

// Substitute replaces ${name} in s by the variable's value. A string that
// is exactly one ${name} becomes the value with its type; otherwise values
// are formatted into the string. ${%name%} is the escape for a literal
// ${name}. Names no source knows are left as they are, so shell variables
// such as ${HOME} reach the step's shell. Values that themselves contain
// ${...} are substituted too, up to MaxVarDepth, and a cycle is an error.
func Substitute(s string, vars Vars) (any, error) {
	return substitute(s, vars, nil)
}

func substitute(s string, vars Vars, stack []string) (any, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	matches := varPattern.FindAllStringSubmatchIndex(s, -1)
	if len(matches) == 0 {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		full := s[m[0]:m[1]]
		open, name, closing := s[m[2]:m[3]], s[m[4]:m[5]], s[m[6]:m[7]]
		b.WriteString(s[last:m[0]])
		last = m[1]
		if open == "%" && closing == "%" {
			b.WriteString("${" + name + "}")
			continue
		}
		if open != "" || closing != "" || name == "" {
			b.WriteString(full)
			continue
		}
		val, ok := vars.Lookup(name)
		if !ok {
			b.WriteString(full)
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
		if str, isStr := val.(string); isStr {
			sub, err := substitute(str, vars, append(stack, name))
			if err != nil {
				return nil, err
			}
			val = sub
		}
		if len(matches) == 1 && m[0] == 0 && m[1] == len(s) {
			return val, nil
		}
		b.WriteString(format(val))
	}
	b.WriteString(s[last:])
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
