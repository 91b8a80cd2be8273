package stepfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinkHops bounds the symlinks followed for one path, as the kernel's
// own limit (40 on Linux) does, so that a loop ends.
const maxLinkHops = 40

// resolver resolves paths inside a root the way the kernel would, one
// component at a time, but without ever leaving the root. os.Root already
// refuses to follow a symlink out of the root; resolving here first lets
// callers say which link leads where, tell a dangling link from an escaping
// one, and accept absolute links that point back inside.
type resolver struct {
	root *os.Root
	// real is the root's absolute path with symlinks evaluated, to tell
	// whether an absolute link target is inside the root.
	real string
}

// openResolver opens dir (trusted: the caller's workspace path) as a root.
func openResolver(dir string) (*resolver, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return nil, err
	}
	return &resolver{root: root, real: filepath.ToSlash(real)}, nil
}

func (r *resolver) Close() error { return r.root.Close() }

// escapeError says that resolving a path left the root, and through which
// symlink (empty when the path itself had too many "..").
type escapeError struct {
	link, target string
}

func (e *escapeError) Error() string {
	if e.link == "" {
		return "the path leads outside the root"
	}
	return fmt.Sprintf("symlink %q -> %q leads outside the root", e.link, e.target)
}

// loopError says that resolving a path followed too many symlinks.
type loopError struct{ link string }

func (e *loopError) Error() string {
	return fmt.Sprintf("too many levels of symlinks at %q", e.link)
}

// osPath turns a root-relative slash path into a name for os.Root.
func osPath(rel string) string {
	if rel == "" {
		return "."
	}
	return filepath.FromSlash(rel)
}

// joinRel joins root-relative slash paths where "" is the root.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// components splits a slash path, dropping empty and "." components.
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// missing reports whether an Lstat error means the path is not there (also
// when a component is a file used as a directory).
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// resolve follows rel (relative to the root, slash-separated; ".." is
// handled after the symlinks before it, as the kernel does) and returns
// the path it leads to, relative to the root and free of symlinks, with
// the Lstat information of that path. fi is nil when the path does not
// exist (a dangling link): the rest of the path is then resolved lexically,
// and still refused if it climbs out. Errors are *escapeError, *loopError,
// or an I/O error.
func (r *resolver) resolve(rel string) (resolved string, fi fs.FileInfo, err error) {
	var cur []string // resolved components so far, all existing directories
	rest := components(rel)
	hops := 0
	var link, target string // the last link followed, to blame for an escape
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			if len(cur) == 0 {
				return "", nil, &escapeError{link: link, target: target}
			}
			cur = cur[:len(cur)-1]
			continue
		}
		p := strings.Join(append(cur[:len(cur):len(cur)], c), "/")
		info, err := r.root.Lstat(osPath(p))
		if missing(err) {
			cur = append(cur, c)
			for _, c := range rest {
				if c != ".." {
					cur = append(cur, c)
				} else if len(cur) == 0 {
					return "", nil, &escapeError{link: link, target: target}
				} else {
					cur = cur[:len(cur)-1]
				}
			}
			return strings.Join(cur, "/"), nil, nil
		}
		if err != nil {
			return "", nil, err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			cur = append(cur, c)
			continue
		}
		hops++
		if hops > maxLinkHops {
			return "", nil, &loopError{link: p}
		}
		t, err := r.root.Readlink(osPath(p))
		if err != nil {
			return "", nil, err
		}
		link, target = p, t
		t = filepath.ToSlash(t)
		if strings.HasPrefix(t, "/") {
			// An absolute target is inside only if it names the root's
			// real path literally: what lies before it is the host's.
			in, ok := strings.CutPrefix(t, r.real)
			if !ok || in != "" && !strings.HasPrefix(in, "/") {
				return "", nil, &escapeError{link: link, target: target}
			}
			cur = cur[:0]
			t = in
		}
		rest = append(components(t), rest...)
	}
	resolved = strings.Join(cur, "/")
	fi, err = r.root.Lstat(osPath(resolved))
	if missing(err) {
		return resolved, nil, nil // removed meanwhile
	}
	return resolved, fi, err
}
