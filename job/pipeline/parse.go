package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Options are what a parse needs besides the file itself.
type Options struct {
	// File names the file in errors.
	File string
	// Environment is the build's environment ("" for none).
	Environment string
	// Inputs are the request's input values (VARS), the highest-precedence
	// variables.
	Inputs map[string]any
	// Vars are the lower-precedence variables, highest first: the build's
	// own (BUILD_REF, GIT_COMMIT, ...), WHARF_VAR_* from the process
	// environment, .wharf-vars.yml files.
	Vars Vars
	// Images used to expand step types; zero fields take DefaultImages.
	Images Images
}

// MaxFileSize bounds the pipeline file.
const MaxFileSize = 1 << 20

// Parse parses a .wharf-ci.yml. Its error is Errors with every problem
// found, each with file, line, column and path.
//
// When the file is YAML but has problems, Parse returns the Errors together
// with what it could make of the file: Inputs (with their defaults, also
// those that have problems of their own), Environments and the stages
// without problems. A caller learns from it which values are passwords
// before it prints the errors, whose messages may quote values. Such a
// Definition must not be run. The Definition is nil only when the file is
// too large or not YAML at all.
//
// The file must be one YAML document, as wharf-cmd wants. Problems that do
// not stop a build (fields a step type does not know, which wharf-cmd
// ignores) are not errors but Definition.Warnings.
//
// Expanding aliases and variables in stages is bounded by MaxExpandNodes,
// MaxExpandBytes and MaxValueSize; going past one is an Error at the alias
// or value that did, and the stages after it are not looked at.
func Parse(src []byte, opts Options) (*Definition, error) {
	p := &parser{file: opts.File}
	if len(src) > MaxFileSize {
		p.errorf(nil, "", "file is %d bytes, at most %d allowed", len(src), MaxFileSize)
		return nil, p.errs
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		p.errs = append(p.errs, Error{File: opts.File, Pos: yamlErrPos(err), Msg: yamlLine.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")})
		return nil, p.errs
	}
	// wharf-cmd allows exactly one document (pkg/wharfyml/visit/decode.go:21-23
	// at 421514f); the ones after it must not be dropped without a word.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		p.errs = append(p.errs, Error{File: opts.File, Pos: yamlErrPos(err), Msg: "document 2: " + yamlLine.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")})
		return nil, p.errs
	default:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		p.errorf(at, "", "only 1 document is allowed: a second one starts here (remove the \"---\" before it, or the document)")
		return nil, p.errs
	}
	def := &Definition{}
	defer func() { def.Warnings = p.warns }()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.errorf(nil, "", "file is empty, expected a map of stages")
		return def, p.errs
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "", "expected a map of stages (and inputs, environments), got %s", kindName(root))
		return def, p.errs
	}
	var stageNodes [][2]*yaml.Node
	for _, kv := range p.pairs(root, "") {
		k, v := kv[0], kv[1]
		switch k.Value {
		case "inputs":
			def.Inputs = p.inputs(deref(v))
		case "environments":
			def.Environments = p.environments(deref(v))
		default:
			stageNodes = append(stageNodes, [2]*yaml.Node{k, v})
		}
	}
	if len(stageNodes) == 0 {
		p.errorf(root, "", "no stages: add a stage (a map of steps) next to inputs and environments")
	}

	envVars := VarMap{}
	// An environment the file does not define is an error even when it
	// defines none (wharf-cmd pkg/wharfyml/definition.go:92-100).
	if opts.Environment != "" {
		found := false
		var names []string
		for _, e := range def.Environments {
			names = append(names, e.Name)
			if e.Name == opts.Environment {
				envVars, found = e.Vars, true
			}
		}
		switch {
		case !found && len(names) == 0:
			p.errorf(nil, "environments", "environment %q is not defined: the file defines no environments", opts.Environment)
		case !found:
			p.errorf(nil, "environments", "environment %q is not defined; defined are: %s", opts.Environment, strings.Join(names, ", "))
		}
	}
	defaults := VarMap{}
	for _, in := range def.Inputs {
		// Every input is a variable, "" (0 for a number) when it has no
		// default (wharf-cmd pkg/wharfyml/inputtypes.go: DefaultValue of
		// a zero Default).
		defaults[in.Name] = in.Default
		if in.Default == nil {
			defaults[in.Name] = map[bool]any{true: 0, false: ""}[in.Type == InputNumber]
		}
	}
	p.checkInputValues(def.Inputs, opts.Inputs)
	given := VarMap{}
	for _, in := range def.Inputs {
		if v, ok := opts.Inputs[in.Name]; ok {
			given[in.Name] = v
		}
	}
	vars := Layered{given, defaults, envVars, opts.Vars}
	images := opts.Images.withDefaults()

	for _, kv := range stageNodes {
		if p.budget.err != nil {
			// Reported once, where it ran out; the stages after it would
			// only add errors of a file that is rejected anyway.
			break
		}
		if st, ok := p.stage(kv[0], kv[1], vars, images); ok {
			def.Stages = append(def.Stages, st)
		}
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Pos.Line < p.errs[j].Pos.Line })
		return def, p.errs
	}
	return def, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

func yamlErrPos(err error) Pos {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Pos{Line: n}
	}
	return Pos{}
}

type parser struct {
	file  string
	errs  Errors
	warns []Error
	// budget is shared by every stage's expansion.
	budget budget
}

func pos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Col: n.Column}
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, Error{File: p.file, Pos: pos(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// deref is the node an alias stands for, or n. It goes one step only:
// an alias never points at another alias, and nothing nested is followed,
// so it costs nothing however the file nests its aliases.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// key is a mapping key with aliases resolved: an alias's own Value is its
// anchor's name, not the value. It keeps the alias's position, where the
// key is.
func key(n *yaml.Node) *yaml.Node {
	if d := deref(n); d != n {
		k := *d
		k.Line, k.Column = n.Line, n.Column
		return &k
	}
	return n
}

func (p *parser) warnf(n *yaml.Node, path, format string, args ...any) {
	p.warns = append(p.warns, Error{File: p.file, Pos: pos(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// pairs yields a mapping's key/value nodes as wharf-cmd's visit.MapSlice
// does (pkg/wharfyml/visit/visit.go:113-152 at 421514f): a merge key
// "<<: *anchor" brings in the anchored map's pairs in its place, a key
// given twice (also through a merge) is an error, and so is a key that is
// not a string or is empty.
func (p *parser) pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	p.mergePairs(n, path, map[string]bool{}, &out, 0)
	return out
}

// maxMergeDepth bounds merges of maps that merge maps: an anchor cannot
// refer to itself, but a deep chain costs a pass per level.
const maxMergeDepth = 16

func (p *parser) mergePairs(n *yaml.Node, path string, seen map[string]bool, out *[][2]*yaml.Node, depth int) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := key(n.Content[i]), deref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			switch {
			case v.Kind != yaml.MappingNode:
				p.errorf(v, path, "a merge (<<) needs a map, got %s", kindName(v))
			case depth >= maxMergeDepth:
				p.errorf(k, path, "merges (<<) nested deeper than %d levels", maxMergeDepth)
			default:
				p.mergePairs(v, path, seen, out, depth+1)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.errorf(k, path, "map key must be a string, got %s", kindName(k))
			continue
		}
		if k.Value == "" {
			p.errorf(k, path, "map key must not be empty")
			continue
		}
		if seen[k.Value] {
			p.errorf(k, join(path, k.Value), "defined twice")
			continue
		}
		seen[k.Value] = true
		*out = append(*out, [2]*yaml.Node{k, v})
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// scalarValue decodes a scalar node into string, int, float64, bool or nil.
func scalarValue(n *yaml.Node) any {
	switch n.Tag {
	case "!!int":
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return int(i)
		}
	case "!!float":
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return f
		}
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!null":
		return nil
	}
	return n.Value
}

func (p *parser) inputs(n *yaml.Node) []Input {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "inputs", "expected a list of inputs, got %s", kindName(n))
		return nil
	}
	var out []Input
	names := map[string]bool{}
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("inputs[%d]", i)
		if item.Kind != yaml.MappingNode {
			p.errorf(item, path, "expected a map with name and type, got %s", kindName(item))
			continue
		}
		in := Input{Pos: pos(item)}
		var defNode, typeNode *yaml.Node
		for _, kv := range p.pairs(item, path) {
			k, v := kv[0], kv[1]
			switch k.Value {
			case "name":
				in.Name = p.str(v, join(path, "name"))
			case "type":
				in.Type, typeNode = InputType(p.str(v, join(path, "type"))), v
			case "default":
				defNode = v
			case "values":
				in.Values = p.strs(v, join(path, "values"))
			default:
				p.errorf(k, join(path, k.Value), "unknown key; expected name, type, default or values")
			}
		}
		if in.Name == "" {
			p.errorf(item, path, "input has no name")
			continue
		}
		path = "inputs." + in.Name
		if names[in.Name] {
			p.errorf(item, path, "input defined twice")
		}
		names[in.Name] = true
		switch in.Type {
		case InputString, InputPassword, InputNumber, InputChoice:
		case "":
			p.errorf(item, path, "input has no type; expected string, password, number or choice")
		default:
			p.errorf(typeNode, join(path, "type"), "unknown input type %q; expected string, password, number or choice", in.Type)
		}
		if in.Type == InputChoice && len(in.Values) == 0 {
			p.errorf(item, path, "choice input has no values")
		}
		if in.Type == InputChoice && defNode == nil {
			// wharf-cmd pkg/wharfyml/inputs.go:106-110.
			p.errorf(item, join(path, "default"), "a choice input needs a default, one of its values")
		}
		if defNode != nil && defNode.Kind == yaml.ScalarNode {
			in.Default = scalarValue(defNode)
			if msg := checkInputValue(in, in.Default); msg != "" {
				p.errorf(defNode, join(path, "default"), "%s", msg)
			}
		} else if defNode != nil {
			p.errorf(defNode, join(path, "default"), "expected a single value, got %s", kindName(defNode))
		}
		out = append(out, in)
	}
	return out
}

// checkInputValue says what is wrong with v for input in, or "".
func checkInputValue(in Input, v any) string {
	switch in.Type {
	case InputNumber:
		switch x := v.(type) {
		case int, float64:
			return ""
		case string:
			if _, err := strconv.ParseFloat(x, 64); err == nil {
				return ""
			}
		}
		return fmt.Sprintf("%v is not a number", v)
	case InputChoice:
		s := format(v)
		for _, allowed := range in.Values {
			if s == allowed {
				return ""
			}
		}
		return fmt.Sprintf("%q is not one of the choices %s", s, strings.Join(in.Values, ", "))
	}
	return ""
}

func (p *parser) checkInputValues(inputs []Input, given map[string]any) {
	// A request sets declared inputs only (wharf-cmd
	// pkg/wharfyml/inputs.go:117-126): never a built-in such as
	// GIT_COMMIT or REG_URL, which the inputs would otherwise override.
	declared := map[string]bool{}
	for _, in := range inputs {
		declared[in.Name] = true
	}
	var undeclared []string
	for name := range given {
		if !declared[name] {
			undeclared = append(undeclared, name)
		}
	}
	sort.Strings(undeclared)
	for _, name := range undeclared {
		p.errorf(nil, "inputs", "the request sets %q, which is not an input of this file", name)
	}
	for _, in := range inputs {
		if v, ok := given[in.Name]; ok {
			if msg := checkInputValue(in, v); msg != "" {
				p.errorf(nil, "inputs."+in.Name, "value from the request: %s", msg)
			}
		}
	}
}

func (p *parser) environments(n *yaml.Node) []Environment {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "environments", "expected a map of environment name to variables, got %s", kindName(n))
		return nil
	}
	var out []Environment
	for _, kv := range p.pairs(n, "environments") {
		k, v := kv[0], kv[1]
		path := "environments." + k.Value
		env := Environment{Name: k.Value, Vars: map[string]any{}, Pos: pos(k)}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		case v.Kind != yaml.MappingNode:
			p.errorf(v, path, "expected a map of variables, got %s", kindName(v))
		default:
			for _, vv := range p.pairs(v, path) {
				if vv[1].Kind != yaml.ScalarNode {
					p.errorf(vv[1], join(path, vv[0].Value), "expected a single value, got %s", kindName(vv[1]))
					continue
				}
				env.Vars[vv[0].Value] = scalarValue(vv[1])
			}
		}
		out = append(out, env)
	}
	return out
}

// substituteNode returns a copy of n with aliases resolved and variables
// substituted in every string scalar; a scalar that is exactly one ${var}
// takes the value's type. Every node it copies and all the text it goes
// through are taken from p.budget; when that runs out it reports an Error
// and returns nil. via is the outermost alias being resolved, where a
// budget error is reported: that is where the file asked for too much.
func (p *parser) substituteNode(n *yaml.Node, vars Vars, path string, via *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if via == nil {
			via = n
			// Counted before copying anything: copying a bomb only to
			// find it too big would cost what the budget is there to
			// save.
			if err := p.budget.nodesFit(expansion(n.Alias, MaxExpandNodes-p.budget.nodes)); err != nil {
				p.overBudget(n, via, path, err)
				return nil
			}
		}
		return p.substituteNode(n.Alias, vars, path, via)
	}
	if err := p.budget.node(); err != nil {
		p.overBudget(n, via, path, err)
		return nil
	}
	clone := *n
	if n.Kind == yaml.ScalarNode {
		if n.Tag != "!!str" || !strings.Contains(n.Value, "${") {
			if err := p.budget.text(len(n.Value)); err != nil {
				p.overBudget(n, via, path, err)
				return nil
			}
			return &clone
		}
		val, err := substitute(n.Value, vars, &p.budget, nil)
		if err != nil {
			if p.budget.err != nil {
				p.overBudget(n, via, path, err)
				return nil
			}
			p.errorf(n, path, "%v", err)
			return &clone
		}
		clone.Style = 0
		switch v := val.(type) {
		case int:
			clone.Tag, clone.Value = "!!int", strconv.Itoa(v)
		case float64:
			clone.Tag, clone.Value = "!!float", strconv.FormatFloat(v, 'f', -1, 64)
		case bool:
			clone.Tag, clone.Value = "!!bool", strconv.FormatBool(v)
		case nil:
			clone.Tag, clone.Value = "!!null", ""
		default:
			clone.Tag, clone.Value = "!!str", format(v)
		}
		// A value taken whole from a variable was not written by the
		// substitution, so count what the step gets here.
		if err := p.budget.text(len(clone.Value)); err != nil {
			p.overBudget(n, via, path, err)
			return nil
		}
		return &clone
	}
	clone.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			clone.Content[i] = c // keys are names, not values
			continue
		}
		if clone.Content[i] = p.substituteNode(c, vars, path, via); clone.Content[i] == nil {
			return nil
		}
	}
	return &clone
}

// overBudget reports that expanding the stage at path ran out of budget at
// node n, reached through the alias via (if any).
func (p *parser) overBudget(n, via *yaml.Node, path string, err error) {
	at := n
	if via != nil {
		at = via
	}
	p.errorf(at, path, "%v", err)
}

var stepTypes = []string{"container", "docker", "helm", "helm-package", "kubectl", "nuget-package"}

func (p *parser) stage(k, v *yaml.Node, vars Vars, images Images) (Stage, bool) {
	path := "stages." + k.Value
	st := Stage{Name: k.Value, RunsIf: RunsIfSuccess, Pos: pos(k)}
	// v itself stays an alias if it is one, so that a budget error points
	// at it.
	if d := deref(v); d.Kind != yaml.MappingNode {
		p.errorf(d, path, "expected a map of steps, got %s", kindName(d))
		return st, false
	}
	before := len(p.errs)
	if v = p.substituteNode(v, vars, path, nil); v == nil {
		return st, false
	}
	for _, kv := range p.pairs(v, path) {
		if p.budget.err != nil {
			break // reported once, by the step that ran out
		}
		sk, sv := kv[0], kv[1]
		switch sk.Value {
		case "environments":
			st.Environments = p.stageEnvironments(sv, join(path, "environments"))
		case "runs-if":
			switch r := RunsIf(p.str(sv, join(path, "runs-if"))); r {
			case RunsIfSuccess, RunsIfFail, RunsIfAlways:
				st.RunsIf = r
			default:
				p.errorf(sv, join(path, "runs-if"), "%q is not one of success, fail, always", r)
			}
		default:
			if step, ok := p.step(sk, sv, path, vars, images); ok {
				st.Steps = append(st.Steps, step)
			}
		}
	}
	if len(st.Steps) == 0 && len(p.errs) == before {
		p.errorf(k, path, "stage has no steps")
	}
	return st, len(p.errs) == before
}

func (p *parser) step(k, v *yaml.Node, stagePath string, vars Vars, images Images) (Step, bool) {
	path := stagePath + ".steps." + k.Value
	step := Step{Name: k.Value, Pos: pos(k)}
	if msg := checkStepName(k.Value); msg != "" {
		p.errorf(k, path, "%s", msg)
		return step, false
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(v, path, "expected a map with one step type (%s), got %s", strings.Join(stepTypes, ", "), kindName(v))
		return step, false
	}
	kvs := p.pairs(v, path)
	var found []string
	var typeNode *yaml.Node
	for _, kv := range kvs {
		if !slices.Contains(stepTypes, kv[0].Value) {
			p.errorf(kv[0], path, "unknown step type %q; expected one of %s", kv[0].Value, strings.Join(stepTypes, ", "))
			continue
		}
		found = append(found, kv[0].Value)
		typeNode = kv[1]
	}
	switch len(found) {
	case 0:
		if len(kvs) == 0 {
			p.errorf(v, path, "step has no type; expected one of %s", strings.Join(stepTypes, ", "))
		}
		return step, false
	case 1:
	default:
		p.errorf(k, path, "step has %d types, \"%s\"; expected exactly one", len(found), strings.Join(found, `", "`))
		return step, false
	}
	step.Type = found[0]
	before := len(p.errs)
	f, nodes := p.fields(typeNode, join(path, step.Type), stepFields[step.Type])
	if len(p.errs) > before {
		return step, false
	}
	step.Outputs = p.outputs(typeNode, join(path, step.Type))
	if len(p.errs) > before {
		return step, false
	}
	c, errs := expand(step.Type, step.Name, f, vars, &p.budget, images)
	for _, e := range errs {
		at := typeNode
		if n := nodes[e.field]; n != nil {
			at = n
		}
		p.errorf(at, join(join(path, step.Type), e.field), "%s", e.msg)
	}
	if len(errs) > 0 {
		return step, false
	}
	// Step types repeat their fields in the commands (a docker step's
	// destination once per tag), so a step can be much bigger than the
	// text it was made from: count what the steps are.
	if err := p.budget.text(c.size()); err != nil {
		p.errorf(typeNode, join(path, step.Type), "%v", err)
		return step, false
	}
	step.Container = c
	return step, true
}

// checkStepName keeps step names usable in Pod names, labels and log
// prefixes.
func checkStepName(name string) string {
	if name == "" || len(name) > 63 {
		return "step name must be 1 to 63 characters"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("step name has %q; allowed are letters, digits, '-', '_' and '.'", r)
		}
	}
	return ""
}

// fieldKind is the shape a step type's field takes.
type fieldKind int

const (
	kindString fieldKind = iota
	kindBool
	kindStrings
	kindMap
)

type fieldSpec struct {
	name     string
	kind     fieldKind
	required bool
}

// fieldValues holds a step type's decoded fields by name.
type fieldValues map[string]any

func (f fieldValues) str(name string) string {
	s, _ := f[name].(string)
	return s
}

func (f fieldValues) boolean(name string, def bool) bool {
	if b, ok := f[name].(bool); ok {
		return b
	}
	return def
}

func (f fieldValues) strs(name string) []string {
	s, _ := f[name].([]string)
	return s
}

func (f fieldValues) kv(name string) map[string]string {
	m, _ := f[name].(map[string]string)
	return m
}

// fields decodes a step type's fields, and gives the node of each, where
// a problem with its value is reported.
func (p *parser) fields(n *yaml.Node, path string, specs []fieldSpec) (fieldValues, map[string]*yaml.Node) {
	out := fieldValues{}
	nodes := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected a map of fields, got %s", kindName(n))
		return out, nodes
	}
	byName := map[string]fieldSpec{}
	var names []string
	for _, s := range specs {
		byName[s.name] = s
		names = append(names, s.name)
	}
	for _, kv := range p.pairs(n, path) {
		k, v := kv[0], kv[1]
		spec, ok := byName[k.Value]
		if !ok && slices.Contains(extensionFields, k.Value) {
			continue // decoded by outputs
		}
		if !ok {
			// wharf-cmd's step types read the fields they know and
			// ignore the others (pkg/steps/*.go at 421514f): a file
			// that runs there runs here, with a word in the log.
			p.warnf(k, join(path, k.Value), "unknown field, ignored; known are %s", strings.Join(append(names, extensionFields...), ", "))
			continue
		}
		fp := join(path, k.Value)
		nodes[k.Value] = v
		switch spec.kind {
		case kindString:
			out[k.Value] = p.str(v, fp)
		case kindBool:
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				p.errorf(v, fp, "expected true or false, got %s", kindName(v))
				continue
			}
			out[k.Value] = scalarValue(v)
		case kindStrings:
			out[k.Value] = p.strs(v, fp)
		case kindMap:
			if v.Kind != yaml.MappingNode {
				p.errorf(v, fp, "expected a map, got %s", kindName(v))
				continue
			}
			m := map[string]string{}
			for _, e := range p.pairs(v, fp) {
				m[e[0].Value] = p.str(e[1], join(fp, e[0].Value))
			}
			out[k.Value] = m
		}
	}
	for _, s := range specs {
		if _, ok := out[s.name]; s.required && (!ok || out[s.name] == "") {
			p.errorf(n, join(path, s.name), "required field is missing")
		}
	}
	return out, nodes
}

// str decodes a scalar as a string; numbers and booleans are accepted as
// their text, as Wharf does.
func (p *parser) str(n *yaml.Node, path string) string {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, path, "expected a string, got %s", kindName(n))
		return ""
	}
	return n.Value
}

// strs decodes a list of strings; a single string is a list of one.
func (p *parser) strs(n *yaml.Node, path string) []string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list of strings, got %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, p.str(c, fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

// stageEnvironments is a stage's list of environment names, which
// wharf-cmd wants as a list of non-empty strings
// (pkg/wharfyml/environment.go:79-101 at 421514f).
func (p *parser) stageEnvironments(n *yaml.Node, path string) []string {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list of environment names, got %s", kindName(n))
		return nil
	}
	var out []string
	for i, c := range n.Content {
		c = deref(c)
		ip := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case c.Kind != yaml.ScalarNode || c.Tag != "!!str":
			p.errorf(c, ip, "expected an environment name, got %s", kindName(c))
		case c.Value == "":
			p.errorf(c, ip, "environment name cannot be empty")
		default:
			out = append(out, c.Value)
		}
	}
	return out
}
