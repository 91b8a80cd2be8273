package pipeline

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"
)

// Budgets on what a parse may build. YAML aliases and ${variables} both let
// a few hundred bytes of file stand for gigabytes (a "billion laughs"
// document: a list of aliases to a list of aliases to ...), and the file
// comes from the repository, which is not trusted. Parse counts the work it
// does while it expands aliases and substitutes variables in stages, stops
// expanding when a budget runs out, and reports an Error instead. Real
// pipelines use a tiny fraction of these.
const (
	// MaxExpandNodes bounds the YAML nodes one parse copies while it
	// resolves aliases in stages (every node reached through every alias
	// counts again), and, separately, the variable references it resolves.
	MaxExpandNodes = 100_000
	// MaxExpandBytes bounds the text one parse goes through while it
	// expands stages: the scalars reached, the text substitution reads
	// (values of variables included) and writes, and the commands the
	// steps expand into.
	MaxExpandBytes = 16 << 20
)

// budget is what is left of the expansion budgets. A parse shares one
// across all its stages and the substitution in them, so many small
// expansions cannot add up to a big one.
type budget struct {
	nodes, refs, bytes int
	// err is the first budget that ran out; spending fails from then on.
	err *budgetError
}

// budgetError says which budget ran out.
type budgetError struct {
	limit int
	what  string
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("expands to more than %d %s", e.limit, e.what)
}

func (b *budget) spend(used *int, n, limit int, what string) error {
	if b.err != nil {
		return b.err
	}
	if *used += n; *used > limit {
		b.err = &budgetError{limit: limit, what: what}
		return b.err
	}
	return nil
}

// node counts one YAML node copied.
func (b *budget) node() error {
	return b.spend(&b.nodes, 1, MaxExpandNodes, "YAML nodes (aliases?)")
}

// nodesFit fails, as node would have on the way, if n more nodes would not
// fit, without spending any.
func (b *budget) nodesFit(n int) error {
	if b.err == nil && b.nodes+n > MaxExpandNodes {
		b.err = &budgetError{limit: MaxExpandNodes, what: "YAML nodes (aliases?)"}
	}
	if b.err != nil {
		return b.err
	}
	return nil
}

// expansion is how many nodes copying n makes with its aliases resolved
// (mapping keys, which are not copied, left out), or a number past limit
// once it is clear that it is more than limit. It stops there, so it never
// visits more than limit+1 nodes, however many n stands for.
func expansion(n *yaml.Node, limit int) int {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	size := 1
	for i, c := range n.Content {
		if size > limit {
			break
		}
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			continue
		}
		size += expansion(c, limit-size)
	}
	return size
}

// ref counts one variable reference resolved. References are counted on
// their own: one to an empty value costs no bytes but still costs a lookup.
func (b *budget) ref() error {
	return b.spend(&b.refs, 1, MaxExpandNodes, "variable references")
}

// text counts n bytes of text read or written.
func (b *budget) text(n int) error {
	return b.spend(&b.bytes, n, MaxExpandBytes, "bytes of text (aliases? variables?)")
}
