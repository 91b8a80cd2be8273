package stepfiles

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Extract unpacks an archive (see ReadArchive, whose checks and limits
// apply) into root, which is created if missing, and returns the paths
// extracted in archive order.
//
// Parent directories are created as needed. An existing file or link at an
// entry's path is replaced (written to a temporary name beside it, then
// renamed over it), so nothing is ever written through a symlink; an
// existing directory there is not replaced (ErrInvalid). An existing
// symlink at or above an entry's path that leads outside root is an error
// wrapping ErrOutside, and a symlink entry is recreated only if its target
// is relative, clean and resolves inside root (ErrOutside otherwise; a
// target like "a/../b" is ErrInvalid, since where it leads depends on
// links made later). All access goes through os.Root as well.
//
// The first error stops the extraction; what was extracted before it stays.
func Extract(r io.Reader, root string, lim Limits) ([]string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	res, err := openResolver(root)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var done []string
	err = ReadArchive(r, lim, func(e Entry, content io.Reader) error {
		if err := res.extract(e, content); err != nil {
			return err
		}
		done = append(done, e.Path)
		return nil
	})
	return done, err
}

// extract writes one entry.
func (r *resolver) extract(e Entry, content io.Reader) error {
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("archive entry %q: %w (%s)", truncate(e.Path), sentinel, fmt.Sprintf(format, args...))
	}
	dir, base := path.Split(e.Path)
	dir, err := r.resolveExisting(e.Path, path.Clean(dir))
	if err != nil {
		return err
	}
	if err := r.root.MkdirAll(osPath(dir), 0o755); err != nil {
		return fmt.Errorf("archive entry %q: %w", truncate(e.Path), err)
	}
	dst := joinRel(dir, base)
	if fi, err := r.root.Lstat(osPath(dst)); err == nil {
		switch {
		case fi.IsDir():
			return fail(ErrInvalid, "a directory is in the way")
		case fi.Mode()&fs.ModeSymlink != 0:
			// Replacing the link would be safe, but one leading out of the
			// workspace is a sign of an attack worth stopping at.
			var esc *escapeError
			if _, _, err := r.resolve(dst); errors.As(err, &esc) {
				return fail(ErrOutside, "the existing symlink %q -> %q is in the way", esc.link, esc.target)
			}
		}
	} else if !missing(err) {
		return err
	}
	tmp, err := tempName(dir, base)
	if err != nil {
		return err
	}
	if e.Link != "" {
		if err := r.checkLinkTarget(e, dir); err != nil {
			return err
		}
		if err := r.root.Symlink(e.Link, osPath(tmp)); err != nil {
			return err
		}
	} else if err := r.writeTemp(tmp, e, content); err != nil {
		r.root.Remove(osPath(tmp))
		return err
	}
	if err := r.root.Rename(osPath(tmp), osPath(dst)); err != nil {
		r.root.Remove(osPath(tmp))
		return fmt.Errorf("archive entry %q: %w", truncate(e.Path), err)
	}
	return nil
}

// resolveExisting resolves p (a parent directory of entry, or the entry's
// own path) through the links already in the root, refusing one that
// leads outside.
func (r *resolver) resolveExisting(entry, p string) (string, error) {
	if p == "." {
		return "", nil
	}
	resolved, _, err := r.resolve(p)
	var esc *escapeError
	if errors.As(err, &esc) {
		return "", fmt.Errorf("archive entry %q: %w (through the existing symlink %q -> %q)", truncate(entry), ErrOutside, esc.link, esc.target)
	}
	if err != nil {
		return "", fmt.Errorf("archive entry %q: %w", truncate(entry), pathError(p, err))
	}
	return resolved, nil
}

// checkLinkTarget refuses a symlink entry whose target is not canonical
// (see canonicalTarget) or resolves outside the root from dir, the real
// directory the link goes in.
func (r *resolver) checkLinkTarget(e Entry, dir string) error {
	if !canonicalTarget(e.Link) {
		sentinel := ErrInvalid
		if path.IsAbs(e.Link) {
			sentinel = ErrOutside
		}
		return fmt.Errorf("archive entry %q: symlink to %q: %w (only relative, clean targets are recreated)", truncate(e.Path), truncate(e.Link), sentinel)
	}
	// dir is free of links and the target has ".." only in front, so
	// joining them lexically leaves every link in it to resolve.
	_, _, err := r.resolve(joinRel(dir, e.Link))
	var esc *escapeError
	var loop *loopError
	switch {
	case errors.As(err, &esc):
		if esc.link == "" {
			return fmt.Errorf("archive entry %q: symlink to %q: %w", truncate(e.Path), truncate(e.Link), ErrOutside)
		}
		return fmt.Errorf("archive entry %q: symlink to %q: %w (through the symlink %q -> %q)", truncate(e.Path), truncate(e.Link), ErrOutside, esc.link, esc.target)
	case errors.As(err, &loop):
		return nil // leads nowhere, like a dangling link: harmless
	}
	return err
}

// writeTemp writes a file entry's content to the new file tmp.
func (r *resolver) writeTemp(tmp string, e Entry, content io.Reader) error {
	f, err := r.root.OpenFile(osPath(tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, content)
	if err == nil {
		// Chmod after writing: the mode may lack the owner's write bit,
		// and the umask must not change what the archive says.
		err = f.Chmod(e.Mode.Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !e.ModTime.IsZero() {
		err = r.root.Chtimes(osPath(tmp), e.ModTime, e.ModTime)
	}
	return err
}

// tempName is a new name beside dir/base; O_EXCL (or symlink's EEXIST)
// guards the unlikely clash.
func tempName(dir, base string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if len(base) > 200 {
		base = base[:200] // NAME_MAX is 255
	}
	return joinRel(dir, "."+base+".stepfiles-"+hex.EncodeToString(b[:])), nil
}
