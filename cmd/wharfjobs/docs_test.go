package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The README's two commands, exactly: they come first, and newcomers,
// `make demo` and CI rely on them.
const (
	readmeDemoCommand = "go run ./cmd/wharfjobs dev --demo"
	readmeTestCommand = "make test"
)

// readmeCommands returns the commands of the README's first code block,
// comments removed, and fails unless that block is the first thing after
// the title.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	i := 0
	if !strings.HasPrefix(lines[i], "# ") {
		t.Fatalf("README.md starts with %q, not its title", lines[i])
	}
	for i++; i < len(lines) && strings.TrimSpace(lines[i]) == ""; i++ {
	}
	if i == len(lines) || lines[i] != "```sh" {
		t.Fatalf("the first thing after the README's title is not a ```sh block of commands")
	}
	var cmds []string
	for i++; i < len(lines) && lines[i] != "```"; i++ {
		cmd, _, _ := strings.Cut(lines[i], "#")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// TestREADMEStartsWithTheTwoCommands: the README's first two commands are
// the demo (the embedded default) and the tests, as they are documented;
// `make demo` runs the first and CI's .ci/run runs exactly the second.
func TestREADMEStartsWithTheTwoCommands(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) < 2 || cmds[0] != readmeDemoCommand || cmds[1] != readmeTestCommand {
		t.Fatalf("the README's first commands are %q; want %q then %q", cmds, readmeDemoCommand, readmeTestCommand)
	}
	if _, ok := commands()["dev"]; !ok {
		t.Errorf("the README runs `wharfjobs dev`, which is not a command")
	}

	// .ci/run: its one command is the README's test command.
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "cd ") {
			continue
		}
		run = append(run, l)
	}
	if len(run) != 1 || strings.TrimPrefix(run[0], "exec ") != cmds[1] {
		t.Errorf(".ci/run runs %q; want exactly the README's test command %q", run, cmds[1])
	}

	// make demo: the README's first command.
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^demo:.*\n\t(.+)$`).FindStringSubmatch(string(mk))
	if m == nil || strings.Replace(m[1], "$(GO) ", "go ", 1) != cmds[0] {
		t.Errorf("make demo runs %q; want the README's first command %q", m, cmds[0])
	}
}

// markdownFiles are the documents whose links are checked.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md")
	}
	return append([]string{"../../README.md"}, docs...)
}

var (
	inlineCode   = regexp.MustCompile("`[^`]*`")
	markdownLink = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)
)

// prose returns a markdown file's lines outside fenced code blocks, with
// inline code spans kept (headings need them) and fenced lines blanked.
func prose(src string) []string {
	lines := strings.Split(src, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return lines
}

// anchors returns the anchors GitHub gives a markdown file's headings:
// lower case, punctuation removed, spaces as hyphens, "-1", "-2"... for
// repeats.
func anchors(src string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range prose(src) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		text = markdownLink.ReplaceAllString(text, "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocsLinksResolve: every relative link in README.md and docs/*.md
// points at a file of the repository, and every #anchor into a markdown
// file at one of its headings.
func TestDocsLinksResolve(t *testing.T) {
	files := markdownFiles(t)
	anchorsOf := map[string]map[string]bool{}
	anchorsIn := func(path string) (map[string]bool, error) {
		if a, ok := anchorsOf[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		anchorsOf[path] = anchors(string(b))
		return anchorsOf[path], nil
	}
	relative := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(f, "../../")
		for n, l := range prose(string(b)) {
			// Code spans hold text such as [--demo] that only looks like a link.
			l = inlineCode.ReplaceAllString(l, "`x`")
			for _, m := range markdownLink.FindAllStringSubmatch(l, -1) {
				target := m[2]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				relative++
				path, anchor, hasAnchor := strings.Cut(target, "#")
				resolved := f
				if path != "" {
					resolved = filepath.Join(filepath.Dir(f), path)
					if _, err := os.Stat(resolved); err != nil {
						t.Errorf("%s:%d: link %q: %s does not exist", name, n+1, target, strings.TrimPrefix(resolved, "../../"))
						continue
					}
					if rel, err := filepath.Rel("../..", resolved); err != nil || strings.HasPrefix(rel, "..") {
						t.Errorf("%s:%d: link %q leaves the repository", name, n+1, target)
						continue
					}
				}
				if !hasAnchor || !strings.HasSuffix(resolved, ".md") {
					continue
				}
				a, err := anchorsIn(resolved)
				if err != nil {
					t.Errorf("%s:%d: link %q: %v", name, n+1, target, err)
					continue
				}
				if !a[anchor] {
					t.Errorf("%s:%d: link %q: %s has no heading with the anchor #%s", name, n+1, target, strings.TrimPrefix(resolved, "../../"), anchor)
				}
			}
		}
	}
	if relative < 20 {
		t.Errorf("found only %d relative links: the link parser is broken", relative)
	}
}

// TestLinkAnchorsAreGitHubs pins the anchor rules the link test relies on.
func TestLinkAnchorsAreGitHubs(t *testing.T) {
	src := "# Pipelines (`.wharf-ci.yml`)\n## The provisioner (wharf-api's engine)\n### Trying it: `wharfjobs dev --demo`\n## Tests\n## Tests\n```\n# not a heading\n```\n## See [using](using.md)\n"
	got := anchors(src)
	for _, want := range []string{"pipelines-wharf-ciyml", "the-provisioner-wharf-apis-engine", "trying-it-wharfjobs-dev---demo", "tests", "tests-1", "see-using"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a line in a code block became an anchor")
	}
}
