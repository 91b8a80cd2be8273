package stepfiles

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// patternTree is a workspace as a .NET and web build leaves it.
func patternTree(t *testing.T) string {
	root := t.TempDir()
	for _, f := range []string{
		"bin/x.nupkg",
		"bin/other.dll",
		"bin/Debug/App.nupkg",
		"bin/Release/net8.0/App.1.0.nupkg",
		"TestResults/a.trx",
		"TestResults/b.trx",
		"TestResults/x.xml",
		"TestResults/sub/c.trx",
		"dist/index.html",
		"dist/js/app.js",
		"README.md",
		".hidden",
		"a.txt",
		"a/b",
	} {
		write(t, root, f, "content of "+f, 0o644)
	}
	write(t, root, "dist/empty", "", 0o644)
	if err := syscall.Mkfifo(filepath.Join(root, "dist", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestMatchPatterns(t *testing.T) {
	root := patternTree(t)
	all := []string{
		".hidden", "README.md", "TestResults/a.trx", "TestResults/b.trx", "TestResults/sub/c.trx", "TestResults/x.xml",
		"a.txt", "a/b", "bin/Debug/App.nupkg", "bin/Release/net8.0/App.1.0.nupkg", "bin/other.dll", "bin/x.nupkg",
		"dist/empty", "dist/index.html", "dist/js/app.js",
	}
	tests := []struct {
		name      string
		patterns  []string
		want      []string
		unmatched []string
	}{
		{"doublestar at any depth, zero included", []string{"bin/**/*.nupkg"},
			[]string{"bin/Debug/App.nupkg", "bin/Release/net8.0/App.1.0.nupkg", "bin/x.nupkg"}, nil},
		{"star stays in its directory", []string{"TestResults/*.trx"},
			[]string{"TestResults/a.trx", "TestResults/b.trx"}, nil},
		{"a directory brings everything below, the empty file too, no FIFO", []string{"dist"},
			[]string{"dist/empty", "dist/index.html", "dist/js/app.js"}, nil},
		{"dot and trailing slash are the same directory", []string{"./dist/"},
			[]string{"dist/empty", "dist/index.html", "dist/js/app.js"}, nil},
		{"everything", []string{"**"}, all, nil},
		{"the root itself", []string{"."}, all, nil},
		{"overlaps are unique, sorted with / after .", []string{"a/b", "a.txt", "a", "**/*.txt"},
			[]string{"a.txt", "a/b"}, nil},
		{"alternatives", []string{"{dist,TestResults}/*.{html,xml}"},
			[]string{"TestResults/x.xml", "dist/index.html"}, nil},
		{"a matched directory's files count for its pattern", []string{"TestResults/sub", "nothing/*.x", "bin/*.exe"},
			[]string{"TestResults/sub/c.trx"}, []string{"nothing/*.x", "bin/*.exe"}},
		{"a literal file", []string{"bin/Debug/App.nupkg"}, []string{"bin/Debug/App.nupkg"}, nil},
		{"hidden files match a star", []string{"*hidden"}, []string{".hidden"}, nil},
		{"nothing at all", []string{"none"}, []string{}, []string{"none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, unmatched, err := Match(root, tt.patterns, MatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(files); !slices.Equal(got, tt.want) {
				t.Errorf("files = %q, want %q", got, tt.want)
			}
			if !slices.Equal(unmatched, tt.unmatched) {
				t.Errorf("unmatched = %q, want %q", unmatched, tt.unmatched)
			}
			for _, f := range files {
				if f.Mode != 0o644 || f.Link != "" {
					t.Errorf("%s: mode %v link %q", f.Path, f.Mode, f.Link)
				}
				if want := int64(len("content of " + f.Path)); f.Path != "dist/empty" && f.Size != want {
					t.Errorf("%s: size %d, want %d", f.Path, f.Size, want)
				}
			}
		})
	}
}

func TestMatchRefusesPatterns(t *testing.T) {
	root := patternTree(t)
	tests := []struct {
		pattern string
		want    error
	}{
		{"../x", ErrOutside},
		{"/etc/passwd", ErrOutside},
		{"a/../../b", ErrOutside},
		{"a/../b", ErrOutside},
		{`\etc`, ErrOutside},
		{"C:/x", ErrOutside},
		{"[", ErrInvalid},
		{"{a,b", ErrInvalid},
		{"", ErrInvalid},
		{"a\x00b", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			files, _, err := Match(root, []string{"dist", tt.pattern}, MatchOptions{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if files != nil {
				t.Errorf("files = %v on error", files)
			}
			if !strings.Contains(err.Error(), "pattern "+strconv.Quote(tt.pattern)) {
				t.Errorf("error %q does not name the pattern", err)
			}
		})
	}
}

// linkTree is a workspace with every kind of symlink, and a directory
// outside it holding a secret.
func linkTree(t *testing.T) (root, outside string) {
	base := t.TempDir()
	root, outside = filepath.Join(base, "ws"), filepath.Join(base, "outside")
	write(t, outside, "secret", "the host's secret", 0o600)
	write(t, root, "real.txt", "real", 0o755)
	write(t, root, "dir/x.txt", "x", 0o644)
	write(t, root, "dir/sub/y.txt", "yy", 0o644)
	return root, outside
}

func TestMatchSymlinks(t *testing.T) {
	type want struct {
		files []File
		err   error
		msg   []string // substrings of the error
	}
	tests := []struct {
		name     string
		setup    func(t *testing.T, root, outside string)
		patterns []string
		plain    want // without KeepLinks
		keep     want // with KeepLinks
	}{
		{
			name: "link to a file outside",
			setup: func(t *testing.T, root, outside string) {
				link(t, root, "out/shadow", filepath.Join(outside, "secret"))
			},
			patterns: []string{"out"},
			plain:    want{err: ErrOutside, msg: []string{`"out/shadow"`, "secret"}},
			keep:     want{err: ErrOutside, msg: []string{`"out/shadow"`}},
		},
		{
			name:     "relative link climbing out",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "up", "../outside/secret") },
			patterns: []string{"**"},
			plain:    want{err: ErrOutside, msg: []string{`"up" -> "../outside/secret"`}},
			keep:     want{err: ErrOutside},
		},
		{
			name:     "link to a directory outside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "od", outside) },
			patterns: []string{"od"},
			plain:    want{err: ErrOutside, msg: []string{`"od"`}},
			keep:     want{err: ErrOutside},
		},
		{
			name:     "a literal path through a link to a directory outside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "od", outside) },
			patterns: []string{"od/secret"},
			plain:    want{err: ErrOutside},
			keep:     want{err: ErrOutside},
		},
		{
			name:     "a wildcard passing over a link to a directory outside does not walk it",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "od", outside) },
			patterns: []string{"**/secret", "**/*.txt"},
			plain:    want{files: []File{{Path: "dir/sub/y.txt", Size: 2, Mode: 0o644}, {Path: "dir/x.txt", Size: 1, Mode: 0o644}, {Path: "real.txt", Size: 4, Mode: 0o755}}},
			keep:     want{files: []File{{Path: "dir/sub/y.txt", Size: 2, Mode: 0o644}, {Path: "dir/x.txt", Size: 1, Mode: 0o644}, {Path: "real.txt", Size: 4, Mode: 0o755}}},
		},
		{
			name: "link inside whose way goes through a symlinked parent outside",
			setup: func(t *testing.T, root, outside string) {
				link(t, root, "pd", outside)
				link(t, root, "in/l", "../pd/secret")
			},
			patterns: []string{"in"},
			plain:    want{err: ErrOutside, msg: []string{`"in/l" -> "../pd/secret"`, `through symlink "pd"`}},
			keep:     want{err: ErrOutside},
		},
		{
			name:     "link to a file inside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "l", "real.txt") },
			patterns: []string{"l"},
			plain:    want{files: []File{{Path: "l", Size: 4, Mode: 0o755}}},
			keep:     want{files: []File{{Path: "l", Mode: fs.ModeSymlink | 0o777, Link: "real.txt"}}},
		},
		{
			name:     "absolute link to a file inside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "sub/abs", filepath.Join(root, "real.txt")) },
			patterns: []string{"sub/abs"},
			plain:    want{files: []File{{Path: "sub/abs", Size: 4, Mode: 0o755}}},
			keep:     want{files: []File{{Path: "sub/abs", Mode: fs.ModeSymlink | 0o777, Link: "../real.txt"}}},
		},
		{
			name:     "link to a directory inside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "ld", "dir/sub") },
			patterns: []string{"ld"},
			plain:    want{files: []File{{Path: "ld/y.txt", Size: 2, Mode: 0o644}}},
			keep:     want{files: []File{{Path: "ld", Mode: fs.ModeSymlink | 0o777, Link: "dir/sub"}}},
		},
		{
			name:     "a pattern through a link to a directory inside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "ld", "dir") },
			patterns: []string{"ld/*.txt"},
			plain:    want{files: []File{{Path: "ld/x.txt", Size: 1, Mode: 0o644}}},
			keep:     want{files: []File{{Path: "ld/x.txt", Size: 1, Mode: 0o644}}},
		},
		{
			// The link leads to the root, a directory on the current path:
			// its files are reached by their own paths, not again.
			name:     "a directory loop ends",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "dir/sub/loop", "../..") },
			patterns: []string{"dir"},
			plain: want{files: []File{
				{Path: "dir/sub/y.txt", Size: 2, Mode: 0o644},
				{Path: "dir/x.txt", Size: 1, Mode: 0o644},
			}},
			keep: want{files: []File{
				{Path: "dir/sub/loop", Mode: fs.ModeSymlink | 0o777, Link: "../.."},
				{Path: "dir/sub/y.txt", Size: 2, Mode: 0o644},
				{Path: "dir/x.txt", Size: 1, Mode: 0o644},
			}},
		},
		{
			name: "a link loop ends",
			setup: func(t *testing.T, root, outside string) {
				link(t, root, "loop/a", "b")
				link(t, root, "loop/b", "a")
				link(t, root, "loop/self", "self")
			},
			patterns: []string{"loop"},
			plain:    want{files: []File{}},
			keep: want{files: []File{
				{Path: "loop/a", Mode: fs.ModeSymlink | 0o777, Link: "b"},
				{Path: "loop/b", Mode: fs.ModeSymlink | 0o777, Link: "a"},
				{Path: "loop/self", Mode: fs.ModeSymlink | 0o777, Link: "self"},
			}},
		},
		{
			name:     "a dangling link inside",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "dangling", "not/yet") },
			patterns: []string{"dangling"},
			plain:    want{files: []File{}},
			keep:     want{files: []File{{Path: "dangling", Mode: fs.ModeSymlink | 0o777, Link: "not/yet"}}},
		},
		{
			name:     "a link that leaves and comes back is still refused",
			setup:    func(t *testing.T, root, outside string) { link(t, root, "back", "../ws/real.txt") },
			patterns: []string{"back"},
			plain:    want{err: ErrOutside},
			keep:     want{err: ErrOutside},
		},
		{
			name: "links to directories repeating each other stay bounded by the real paths",
			setup: func(t *testing.T, root, outside string) {
				link(t, root, "d1/a", "../d2")
				link(t, root, "d2/a", "../d1")
			},
			patterns: []string{"d1"},
			plain:    want{files: []File{}},
			keep:     want{files: []File{{Path: "d1/a", Mode: fs.ModeSymlink | 0o777, Link: "../d2"}}},
		},
	}
	for _, tt := range tests {
		for _, keep := range []bool{false, true} {
			w := tt.plain
			name := tt.name
			if keep {
				w, name = tt.keep, name+"/KeepLinks"
			}
			t.Run(name, func(t *testing.T) {
				root, outside := linkTree(t)
				tt.setup(t, root, outside)
				files, _, err := Match(root, tt.patterns, MatchOptions{KeepLinks: keep})
				if w.err != nil {
					if !errors.Is(err, w.err) {
						t.Fatalf("err = %v, want %v", err, w.err)
					}
					for _, m := range w.msg {
						if !strings.Contains(err.Error(), m) {
							t.Errorf("error %q lacks %q", err, m)
						}
					}
					// Only link text may name host paths, never the root's.
					if strings.Contains(err.Error(), root+"/") {
						t.Errorf("error %q shows the workspace's host path", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if files == nil {
					files = []File{}
				}
				if !slices.Equal(files, w.files) {
					t.Errorf("files =\n%+v\nwant\n%+v", files, w.files)
				}
			})
		}
	}
}

func TestMatchMissingRoot(t *testing.T) {
	if _, _, err := Match(filepath.Join(t.TempDir(), "nope"), []string{"**"}, MatchOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestResolveHandlesDotDotAfterLinks(t *testing.T) {
	// "l/.." is the parent of where l points, not the directory holding l:
	// lexical cleaning would call "l/../../x" inside when it is not.
	root, _ := linkTree(t)
	link(t, root, "dir/l", ".")
	link(t, root, "tricky", "dir/l/../../outside/secret")
	_, _, err := Match(root, []string{"tricky"}, MatchOptions{})
	if !errors.Is(err, ErrOutside) {
		t.Fatalf("err = %v, want ErrOutside", err)
	}
	// dir/l/.. is the root itself here, so this one is inside.
	link(t, root, "fine", "dir/l/../real.txt")
	files, _, err := Match(root, []string{"fine"}, MatchOptions{})
	if err != nil || len(files) != 1 || files[0].Size != 4 {
		t.Fatalf("files %v, err %v", files, err)
	}
	files, _, err = Match(root, []string{"fine"}, MatchOptions{KeepLinks: true})
	if err != nil || len(files) != 1 || files[0].Link != "real.txt" {
		t.Fatalf("kept %v, err %v; want the target rewritten to where it leads", files, err)
	}
}

func TestMatchBoundsRepeatingLinks(t *testing.T) {
	// Each level links twice to the next: 2^24 paths, no loop.
	root := t.TempDir()
	const levels = 24
	for i := range levels {
		d := "d" + strconv.Itoa(i)
		next := "../d" + strconv.Itoa(i+1)
		link(t, root, d+"/a", next)
		link(t, root, d+"/b", next)
	}
	write(t, root, "d"+strconv.Itoa(levels)+"/f", "f", 0o644)
	defer func(n int) { maxWalkEntries = n }(maxWalkEntries)
	maxWalkEntries = 20_000
	_, _, err := Match(root, []string{"d0"}, MatchOptions{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// Kept as links, nothing is walked twice.
	files, _, err := Match(root, []string{"d0"}, MatchOptions{KeepLinks: true})
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v, err %v", files, err)
	}
}
