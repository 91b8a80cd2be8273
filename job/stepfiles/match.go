package stepfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// maxWalkEntries bounds the directory entries one Match looks at. Symlinks
// to directories inside the root are walked through, and a few of them can
// make a small tree look exponentially large (each directory linking twice
// to the next); a real workspace, node_modules included, stays far below.
//
// A variable only so that tests can lower it.
var maxWalkEntries = 5_000_000

// MatchOptions change how Match treats symlinks.
type MatchOptions struct {
	// KeepLinks returns a symlink inside the root as a link (File.Link set)
	// instead of as the file it points to, and does not walk a matched
	// link to a directory: what caches want (node_modules/.bin, virtualenvs),
	// where following links would duplicate content. File.Link is the
	// target as written when it is relative and clean; an absolute target
	// (inside the root) or one like "a/../b" is rewritten as the relative
	// path to where it leads, since Extract recreates only the former.
	KeepLinks bool
}

// Match returns the files under root that the doublestar patterns match
// (relative to root, slash-separated), sorted by path and unique, and the
// patterns that matched no file.
//
// A pattern that is absolute or has a ".." element is refused (ErrOutside),
// and so is invalid doublestar syntax (ErrInvalid). A matched directory
// brings every file below it (GitLab's semantics: `paths: [dist]`). Only
// regular files and symlinks are returned; sockets, devices and FIFOs are
// skipped.
//
// A matched symlink whose target (resolved through every link on the way)
// lies outside root is an error wrapping ErrOutside that names the link and
// its target as written, and so is a link out of root that a pattern's
// literal part goes through ("out/app.dll" for a link "out"). A symlink
// inside root is returned as the regular file it points to (its Size and
// Mode; a link to a directory is walked), or with opts.KeepLinks as a link.
// A dangling link, or one in a loop, has no content: it is skipped, or
// kept as a link with KeepLinks. Walking never follows a link out of root:
// one that only a wildcard passes over ("**/*.dll") is neither walked nor
// reported. Walking enters no directory already on the current path, so
// symlink loops end.
func Match(root string, patterns []string, opts MatchOptions) (files []File, unmatched []string, err error) {
	pats := make([]*pattern, len(patterns))
	for i, raw := range patterns {
		if pats[i], err = compile(raw); err != nil {
			return nil, nil, err
		}
	}
	res, err := openResolver(root)
	if err != nil {
		return nil, nil, err
	}
	defer res.Close()
	w := &walker{
		res:   res,
		pats:  pats,
		keep:  opts.KeepLinks,
		used:  make([]bool, len(pats)),
		chain: map[string]bool{"": true},
	}
	var top []int // patterns that match the root itself (".")
	for i, p := range pats {
		if len(p.comps) == 0 {
			top = append(top, i)
		}
	}
	if err := w.walk("", "", top); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(w.files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i, p := range pats {
		if !w.used[i] {
			unmatched = append(unmatched, p.raw)
		}
	}
	return w.files, unmatched, nil
}

// pattern is a compiled pattern.
type pattern struct {
	raw   string   // as the pipeline wrote it, for messages
	glob  string   // normalized: no "." or empty elements
	comps []string // glob's elements
	// base is the number of leading elements without meta characters:
	// only directories on the way to them can hold a match.
	base int
	// deep is set when the elements after base can match at any depth
	// ("**", or alternatives that may hold a "/"); otherwise the walk
	// below base goes no deeper than the elements left.
	deep bool
}

// compile checks and normalizes a pattern.
func compile(raw string) (*pattern, error) {
	bad := func(sentinel error, detail string) error {
		return fmt.Errorf("pattern %q: %w (%s)", truncate(raw), sentinel, detail)
	}
	switch {
	case raw == "":
		return nil, bad(ErrInvalid, "empty")
	case strings.IndexByte(raw, 0) >= 0:
		return nil, bad(ErrInvalid, "NUL in the pattern")
	case strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, `\`) || len(raw) > 1 && raw[1] == ':':
		return nil, bad(ErrOutside, "absolute; patterns are relative to the workspace")
	}
	comps := components(raw)
	for _, c := range comps {
		if c == ".." {
			return nil, bad(ErrOutside, `a ".." element`)
		}
	}
	p := &pattern{raw: raw, glob: strings.Join(comps, "/"), comps: comps}
	if !doublestar.ValidatePattern(p.glob) {
		return nil, bad(ErrInvalid, "not valid doublestar syntax")
	}
	for p.base < len(comps) && !strings.ContainsAny(comps[p.base], `*?[{\`) {
		p.base++
	}
	for _, c := range comps[p.base:] {
		if strings.Contains(c, "**") || strings.ContainsAny(c, "{") {
			p.deep = true
		}
	}
	return p, nil
}

// matches reports whether the pattern matches a path.
func (p *pattern) matches(rel string) bool {
	return doublestar.MatchUnvalidated(p.glob, rel)
}

// wants reports whether something below the directory dir could match.
func (p *pattern) wants(dir []string) bool {
	if len(dir) <= p.base {
		// On the way to the static base, or the base itself (then the
		// pattern matched it and everything below comes along anyway).
		return slices.Equal(dir, p.comps[:len(dir)])
	}
	if !slices.Equal(dir[:p.base], p.comps[:p.base]) {
		return false
	}
	if p.deep {
		return true
	}
	below := dir[p.base:]
	if len(below) >= len(p.comps)-p.base {
		return false
	}
	for i, c := range below {
		if !doublestar.MatchUnvalidated(p.comps[p.base+i], c) {
			return false
		}
	}
	return true
}

// walker is one Match's walk.
type walker struct {
	res   *resolver
	pats  []*pattern
	keep  bool
	files []File
	used  []bool // per pattern: matched a file
	// chain holds the real (symlink-free) paths of the directories on the
	// current path, so that a link back to one of them is not entered.
	chain   map[string]bool
	entries int
}

// wants reports whether any pattern could match something below dir.
func (w *walker) wants(dir string) bool {
	comps := strings.Split(dir, "/")
	for _, p := range w.pats {
		if p.wants(comps) {
			return true
		}
	}
	return false
}

// names reports whether a pattern's literal leading elements go through
// dir ("out/app.dll" or "out/*.dll" for "out"): the pipeline asked for
// something there, so a link there that leads out is its error to see.
func (w *walker) names(dir string) bool {
	comps := strings.Split(dir, "/")
	for _, p := range w.pats {
		if len(comps) <= p.base && slices.Equal(comps, p.comps[:len(comps)]) {
			return true
		}
	}
	return false
}

// matching returns the patterns that match rel, added to those that
// matched a directory above it (inherited).
func (w *walker) matching(rel string, inherited []int) []int {
	out := inherited
	for i, p := range w.pats {
		if !slices.Contains(inherited, i) && len(p.comps) > 0 && p.matches(rel) {
			if len(out) == len(inherited) {
				out = slices.Clip(out) // never write into the parent's slice
			}
			out = append(out, i)
		}
	}
	return out
}

func (w *walker) add(f File, by []int) {
	w.files = append(w.files, f)
	for _, i := range by {
		w.used[i] = true
	}
}

// walk lists the directory at logical path dir (as the patterns see it),
// whose real path is real; matchedBy are the patterns that matched dir or
// a directory above it, so everything below belongs to them.
func (w *walker) walk(dir, real string, matchedBy []int) error {
	f, err := w.res.root.Open(osPath(real))
	if err != nil {
		if missing(err) {
			return nil // removed meanwhile
		}
		return err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	slices.Sort(names)
	for _, name := range names {
		w.entries++
		if w.entries > maxWalkEntries {
			return fmt.Errorf("walking the workspace: more than %d entries: %w (are symlinks repeating directories?)", maxWalkEntries, ErrTooLarge)
		}
		if err := w.visit(joinRel(dir, name), joinRel(real, name), matchedBy); err != nil {
			return err
		}
	}
	return nil
}

// visit handles one directory entry: p is its logical path, rp its real one.
func (w *walker) visit(p, rp string, inherited []int) error {
	fi, err := w.res.root.Lstat(osPath(rp))
	if missing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	by := w.matching(p, inherited)
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		if len(by) > 0 {
			w.add(File{Path: p, Size: fi.Size(), Mode: mode.Perm()}, by)
		}
		return nil
	case mode.IsDir():
		if len(by) > 0 || w.wants(p) {
			return w.enter(p, rp, by)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		if len(by) == 0 && !w.wants(p) {
			return nil
		}
		return w.link(p, rp, by)
	default:
		return nil // sockets, devices, FIFOs: nothing to archive
	}
}

// enter walks a directory unless it is already on the current path.
func (w *walker) enter(p, real string, by []int) error {
	if w.chain[real] {
		return nil // a loop: its files are reached by the real path
	}
	w.chain[real] = true
	defer delete(w.chain, real)
	return w.walk(p, real, by)
}

// link handles a symlink at logical path p, real path rp.
func (w *walker) link(p, rp string, by []int) error {
	target, err := w.res.root.Readlink(osPath(rp))
	if missing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	resolved, fi, err := w.res.resolve(rp)
	var esc *escapeError
	var loop *loopError
	switch {
	case errors.As(err, &esc):
		if len(by) == 0 && !w.names(p) {
			// Only a wildcard passes over it ("**/*.trx"): not walked, and
			// not reported, since the pipeline did not ask for it.
			return nil
		}
		return outsideLink(p, target, esc)
	case errors.As(err, &loop):
		if !canonicalTarget(target) {
			return nil // nowhere to rewrite it to
		}
		fi = nil // a loop leads nowhere, like a dangling link
	case err != nil:
		return err
	}
	if w.keep && len(by) > 0 {
		w.add(File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: keptTarget(target, rp, resolved)}, by)
		return nil
	}
	switch {
	case fi == nil:
		return nil // dangling: no content to archive
	case fi.Mode().IsRegular():
		if len(by) > 0 {
			w.add(File{Path: p, Size: fi.Size(), Mode: fi.Mode().Perm()}, by)
		}
	case fi.IsDir():
		return w.enter(p, resolved, by)
	}
	return nil
}

// outsideLink is the error for a matched link that leads outside the root.
// It names the link and its target as written (what the pipeline made),
// and the link on the way that escaped when that is another one; never the
// host's absolute paths beyond what the links say.
func outsideLink(p, target string, esc *escapeError) error {
	if esc.link != "" && esc.target != target {
		return fmt.Errorf("symlink %q -> %q: %w (through symlink %q -> %q)", p, target, ErrOutside, esc.link, esc.target)
	}
	return fmt.Errorf("symlink %q -> %q: %w", p, target, ErrOutside)
}

// keptTarget is the target stored for a link kept as a link: as written
// when it is relative with ".." only in front (what Extract accepts, and
// what ln -s and npm make); otherwise (absolute, or "a/../b" whose meaning
// depends on whether a is a link) the relative path from the link's
// directory to where it resolves, which means the same in another root.
func keptTarget(target, rp, resolved string) string {
	if canonicalTarget(target) {
		return target
	}
	from := components(path.Dir(rp))
	to := components(resolved)
	n := 0
	for n < len(from) && n < len(to) && from[n] == to[n] {
		n++
	}
	parts := make([]string, 0, len(from)-n+len(to)-n)
	for range from[n:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[n:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

// canonicalTarget reports whether a link target is relative and clean,
// which leaves ".." elements only in front: such a target resolves from
// the link's directory up through plain directories, then down, so
// checking once where it leads is enough (no later link can turn an inner
// ".." somewhere else).
func canonicalTarget(t string) bool {
	return t != "" && !strings.HasPrefix(t, "/") && path.Clean(t) == t
}
