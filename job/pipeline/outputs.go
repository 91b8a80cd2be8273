package pipeline

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"

	"github.com/wharfjobs/wharfjobs/job/stepfiles"
)

// Outputs are the files a step declares besides its log: artifacts kept
// with the build (and given to the steps of later stages), test results
// shown in wharf-api, and a cache restored before the step and saved after
// it. They are wharfjobs' extensions of the step-type map, where wharf-cmd
// ignores keys it does not know, so the same file still runs there.
type Outputs struct {
	Artifacts   *Artifacts
	TestResults *TestResults
	Cache       *Cache
}

// Empty reports whether the step declares nothing.
func (o Outputs) Empty() bool { return o.Artifacts == nil && o.TestResults == nil && o.Cache == nil }

// When says after which outcome of a step's script files are collected.
type When string

// When values.
const (
	OnSuccess When = "onSuccess"
	OnFailure When = "onFailure"
	Always    When = "always"
)

// Applies reports whether files are collected after a script that
// succeeded (ok) or failed.
func (w When) Applies(ok bool) bool {
	return w == Always || w == OnSuccess && ok || w == OnFailure && !ok
}

// IfNoFiles says what a pattern matching nothing does.
type IfNoFiles string

// IfNoFiles values.
const (
	NoFilesWarn   IfNoFiles = "warn"
	NoFilesError  IfNoFiles = "error"
	NoFilesIgnore IfNoFiles = "ignore"
)

// Artifacts are files kept with the build: relayed to wharf-api and
// restored, at the same paths, into the workspaces of later stages' steps.
type Artifacts struct {
	// Paths are doublestar patterns relative to the repository root; a
	// matched directory brings every file below it.
	Paths          []string  `json:"paths"`
	When           When      `json:"when"`           // default OnSuccess
	IfNoFilesFound IfNoFiles `json:"ifNoFilesFound"` // default NoFilesWarn
}

// TestResultFormat is the format of a test result file.
type TestResultFormat string

// Test result formats; empty means told from each file's content.
const (
	FormatTRX   TestResultFormat = "trx"
	FormatJUnit TestResultFormat = "junit"
)

// TestResults are test reports (TRX, or JUnit XML converted to TRX) that
// wharf-api shows in the build's Test Results.
type TestResults struct {
	Paths          []string         `json:"paths"`
	Format         TestResultFormat `json:"format,omitempty"`
	When           When             `json:"when"`           // default Always: a failed test run is when they matter most
	IfNoFilesFound IfNoFiles        `json:"ifNoFilesFound"` // default NoFilesWarn
}

// CachePolicy says whether a step restores its cache, saves it, or both.
type CachePolicy string

// Cache policies.
const (
	CachePull     CachePolicy = "pull"
	CachePush     CachePolicy = "push"
	CachePullPush CachePolicy = "pull-push"
)

// Pull reports whether the cache is restored before the script.
func (p CachePolicy) Pull() bool { return p == CachePull || p == CachePullPush }

// Push reports whether the cache is saved after the script.
func (p CachePolicy) Push() bool { return p == CachePush || p == CachePullPush }

// Cache is a set of workspace paths saved under a key and restored into
// later builds of the same project.
type Cache struct {
	// Key names the cache; the SHA-256 of the files that Files match is
	// appended, so a changed lock file starts a new cache.
	Key   string   `json:"key"`
	Files []string `json:"files,omitempty"`
	// FallbackKeys are tried in order when Key (with its hash) has no
	// archive yet; they are used as they are, without a hash.
	FallbackKeys []string    `json:"fallbackKeys,omitempty"`
	Paths        []string    `json:"paths"`
	Policy       CachePolicy `json:"policy"` // default CachePullPush
	When         When        `json:"when"`   // when it is saved; default OnSuccess
}

// extensionFields are the keys every step type accepts besides its own.
var extensionFields = []string{"artifacts", "testResults", "cache"}

// outputs decodes a step type's extension fields.
func (p *parser) outputs(n *yaml.Node, path string) Outputs {
	var o Outputs
	if n.Kind != yaml.MappingNode {
		return o
	}
	for _, kv := range p.pairs(n, path) {
		k, v := kv[0], deref(kv[1])
		fp := join(path, k.Value)
		switch k.Value {
		case "artifacts":
			a := &Artifacts{When: OnSuccess, IfNoFilesFound: NoFilesWarn}
			a.Paths = p.fileList(v, fp, &a.When, &a.IfNoFilesFound, nil, "paths, when, ifNoFilesFound")
			o.Artifacts = a
		case "testResults":
			t := &TestResults{When: Always, IfNoFilesFound: NoFilesWarn}
			t.Paths = p.fileList(v, fp, &t.When, &t.IfNoFilesFound, func(k, v *yaml.Node, fp string) bool {
				if k.Value != "format" {
					return false
				}
				switch f := TestResultFormat(p.str(v, fp)); f {
				case FormatTRX, FormatJUnit:
					t.Format = f
				default:
					p.errorf(v, fp, "%q is not a test result format; expected trx or junit", f)
				}
				return true
			}, "paths, format, when, ifNoFilesFound")
			o.TestResults = t
		case "cache":
			o.Cache = p.cache(v, fp)
		}
	}
	return o
}

// fileList decodes a list of patterns, or a map with "paths", "when"
// and "ifNoFilesFound" (into *when and *ifNo) and the fields extra decodes
// (it returns false for a key it does not know; nil knows none).
func (p *parser) fileList(n *yaml.Node, path string, when *When, ifNo *IfNoFiles, extra func(k, v *yaml.Node, path string) bool, known string) []string {
	if n.Kind != yaml.MappingNode {
		return p.patterns(n, path)
	}
	var paths []string
	seen := false
	for _, kv := range p.pairs(n, path) {
		k, v := kv[0], deref(kv[1])
		fp := join(path, k.Value)
		switch {
		case k.Value == "paths":
			paths, seen = p.patterns(v, fp), true
		case k.Value == "when":
			*when = p.when(v, fp)
		case k.Value == "ifNoFilesFound":
			*ifNo = p.ifNoFiles(v, fp)
		case extra == nil || !extra(k, v, fp):
			p.errorf(k, fp, "unknown field; expected %s", known)
		}
	}
	if !seen {
		p.errorf(n, join(path, "paths"), "required field is missing")
	}
	return paths
}

// patterns decodes a non-empty list of workspace-relative patterns.
func (p *parser) patterns(n *yaml.Node, path string) []string {
	list := p.strs(n, path)
	if n.Kind == yaml.SequenceNode && len(list) == 0 {
		p.errorf(n, path, "expected at least one path pattern")
	}
	for i, pat := range list {
		if msg := checkPattern(pat); msg != "" {
			at := n
			if n.Kind == yaml.SequenceNode {
				at = n.Content[i]
			}
			p.errorf(at, fmt.Sprintf("%s[%d]", path, i), "%q %s", pat, msg)
		}
	}
	return list
}

// checkPattern refuses a pattern that could name a file outside the
// repository: the step's files are collected by the worker's side, which
// must never read the node's own files on a pipeline's behalf.
func checkPattern(pat string) string {
	switch {
	case pat == "":
		return "is empty; expected a path pattern relative to the repository root"
	case strings.HasPrefix(pat, "/") || strings.HasPrefix(pat, `\`) || len(pat) > 1 && pat[1] == ':':
		return "is absolute; patterns are relative to the repository root"
	case strings.ContainsRune(pat, 0):
		return "has a NUL byte"
	}
	for _, el := range strings.Split(pat, "/") {
		if el == ".." {
			return "leads outside the repository (..)"
		}
	}
	if !doublestar.ValidatePattern(pat) {
		return "is not a valid pattern (doublestar syntax: *, **, ?, [a-z], {a,b})"
	}
	return ""
}

func (p *parser) when(n *yaml.Node, path string) When {
	switch w := When(p.str(n, path)); w {
	case OnSuccess, OnFailure, Always:
		return w
	default:
		p.errorf(n, path, "%q is not one of onSuccess, onFailure, always", w)
		return OnSuccess
	}
}

func (p *parser) ifNoFiles(n *yaml.Node, path string) IfNoFiles {
	switch v := IfNoFiles(p.str(n, path)); v {
	case NoFilesWarn, NoFilesError, NoFilesIgnore:
		return v
	default:
		p.errorf(n, path, "%q is not one of warn, error, ignore", v)
		return NoFilesWarn
	}
}

func (p *parser) cache(n *yaml.Node, path string) *Cache {
	c := &Cache{Policy: CachePullPush, When: OnSuccess}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "expected a map with key and paths, got %s", kindName(n))
		return c
	}
	for _, kv := range p.pairs(n, path) {
		k, v := kv[0], deref(kv[1])
		fp := join(path, k.Value)
		switch k.Value {
		case "key":
			c.Key = p.str(v, fp)
			if err := stepfiles.ValidateKey(c.Key); err != nil {
				p.errorf(v, fp, "%v", err)
			}
		case "fallbackKeys":
			c.FallbackKeys = p.strs(v, fp)
			for i, key := range c.FallbackKeys {
				if err := stepfiles.ValidateKey(key); err != nil {
					p.errorf(v, fmt.Sprintf("%s[%d]", fp, i), "%v", err)
				}
			}
		case "files":
			c.Files = p.patterns(v, fp)
		case "paths":
			c.Paths = p.patterns(v, fp)
		case "policy":
			switch pol := CachePolicy(p.str(v, fp)); pol {
			case CachePull, CachePush, CachePullPush:
				c.Policy = pol
			default:
				p.errorf(v, fp, "%q is not one of pull, push, pull-push", pol)
			}
		case "when":
			c.When = p.when(v, fp)
		default:
			p.errorf(k, fp, "unknown field; expected key, files, fallbackKeys, paths, policy, when")
		}
	}
	if c.Key == "" {
		p.errorf(n, join(path, "key"), "required field is missing")
	}
	if c.Paths == nil {
		p.errorf(n, join(path, "paths"), "required field is missing")
	}
	return c
}
