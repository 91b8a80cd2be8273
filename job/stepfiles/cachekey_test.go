package stepfiles

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCacheKey(t *testing.T) {
	ws := func(files map[string]string) string {
		root := t.TempDir()
		for p, c := range files {
			write(t, root, p, c, 0o644)
		}
		return root
	}
	key := func(root string, patterns ...string) string {
		t.Helper()
		full, _, err := CacheKey(root, "nuget-v1", patterns)
		if err != nil {
			t.Fatal(err)
		}
		return full
	}
	lock := map[string]string{"packages.lock.json": `{"a": "1.0"}`, "src/x.cs": "class X {}"}
	a, b := ws(lock), ws(lock)
	ka := key(a, "**/packages.lock.json")
	if !strings.HasPrefix(ka, "nuget-v1-") || len(ka) != len("nuget-v1-")+64 {
		t.Errorf("key %q: want nuget-v1- and 64 hex digits", ka)
	}
	if kb := key(b, "**/packages.lock.json"); kb != ka {
		t.Errorf("same content in another workspace: %q != %q", kb, ka)
	}
	if k := key(a, "packages.lock.json", "*.json"); k != ka {
		t.Errorf("the same files through other patterns: %q != %q", k, ka)
	}
	write(t, b, "packages.lock.json", `{"a": "1.1"}`, 0o644)
	if kb := key(b, "**/packages.lock.json"); kb == ka {
		t.Errorf("changed lock file, same key %q", kb)
	}
	// Source files the patterns do not match change nothing.
	write(t, a, "src/x.cs", "class Y {}", 0o644)
	if k := key(a, "**/packages.lock.json"); k != ka {
		t.Errorf("an unmatched file changed the key")
	}
	// Moving bytes between a path and its content, or between files,
	// must not give the same hash: both are length-prefixed.
	distinct := []map[string]string{
		{"a": "bc"},
		{"ab": "c"},
		{"a": "b", "c": ""},
		{"a": "", "bc": ""},
		{"a": "bc", "d": ""},
		{},
	}
	seen := map[string]int{}
	for i, files := range distinct {
		k := key(ws(files), "**")
		if j, ok := seen[k]; ok {
			t.Errorf("file sets %v and %v hash alike", distinct[j], files)
		}
		seen[k] = i
	}
	// No file patterns: the key alone.
	if full, unmatched, err := CacheKey(a, "plain", nil); full != "plain" || unmatched != nil || err != nil {
		t.Errorf("no files: %q %q %v", full, unmatched, err)
	}
	// Patterns matching nothing are fine, and returned.
	full, unmatched, err := CacheKey(a, "k", []string{"yarn.lock", "packages.lock.json"})
	if err != nil || !slices.Equal(unmatched, []string{"yarn.lock"}) || full == "k" {
		t.Errorf("full %q unmatched %q err %v", full, unmatched, err)
	}
	// Patterns leading out are refused.
	if _, _, err := CacheKey(a, "k", []string{"../x"}); !errors.Is(err, ErrOutside) {
		t.Errorf("pattern ../x: %v", err)
	}
	link(t, a, "evil.lock", filepath.Join(t.TempDir(), "x"))
	if _, _, err := CacheKey(a, "k", []string{"*.lock"}); !errors.Is(err, ErrOutside) {
		t.Errorf("lock file linked out: %v", err)
	}
}

func TestValidateKey(t *testing.T) {
	for _, tt := range []struct {
		key string
		ok  bool
	}{
		{"nuget", true},
		{"node-modules_v2.1", true},
		{strings.Repeat("k", 128), true},
		{"", false},
		{strings.Repeat("k", 129), false},
		{".", false},
		{"..", false},
		{"../x", false},
		{".hidden", false},
		{"a/b", false},
		{`a\b`, false},
		{"a b", false},
		{"ключ", false},
		{"a\x00", false},
	} {
		err := ValidateKey(tt.key)
		if tt.ok != (err == nil) {
			t.Errorf("ValidateKey(%.20q) = %v, want ok %v", tt.key, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cache key")) {
			t.Errorf("ValidateKey(%.20q) = %v, want ErrInvalid naming the key", tt.key, err)
		}
		if _, _, cerr := CacheKey(t.TempDir(), tt.key, []string{"x"}); (cerr == nil) != tt.ok {
			t.Errorf("CacheKey with key %.20q: %v", tt.key, cerr)
		}
	}
}
