// Package stepfiles moves a step's declared files (artifacts, test results,
// caches) between workspaces: Match finds them with doublestar patterns,
// WriteArchive packs them as a zstd-compressed tar stream, ReadArchive and
// Extract unpack such a stream into another workspace, and CacheKey names a
// cache archive after the files it depends on.
//
// A workspace is written by a pipeline, which is untrusted code, and an
// archive may have been written by anyone who reached the store. So every
// function here assumes the worst of both: patterns and entry names may try
// to leave the root, symlinks may point at the host's files or loop, files
// may be huge or change while they are read, and an archive may lie about
// sizes or be a decompression bomb. Nothing is ever read or written outside
// the root: file access goes through os.Root, and symlinks are resolved one
// component at a time by this package before anything is followed, so an
// escape is reported with the link that caused it instead of failing with a
// bare "path escapes" error.
package stepfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// Errors every failure wraps one of (several, where more than one applies),
// so that callers can tell a pipeline's mistake from an attack or a limit
// without parsing messages.
var (
	// ErrOutside means a pattern, a path or a symlink leads outside the root.
	ErrOutside = errors.New("outside the workspace")
	// ErrTooLarge means a file, the files together or their number are over
	// a limit.
	ErrTooLarge = errors.New("over the size limit")
	// ErrInvalid means a bad pattern, cache key or archive entry.
	ErrInvalid = errors.New("invalid")
)

// Limits bound what an archive holds; 0 means no limit. They are checked
// when writing (before and while files are copied) and again when reading,
// since an archive read back may not be one this package wrote.
type Limits struct {
	// MaxFileSize bounds the content of one file.
	MaxFileSize int64
	// MaxTotalSize bounds the content of all files together.
	MaxTotalSize int64
	// MaxFiles bounds the number of files and links: empty files cost no
	// bytes, yet a million of them still fill a node's inodes and take a
	// million system calls to extract.
	MaxFiles int
}

// File is a matched file.
type File struct {
	// Path is relative to the root, slash-separated and clean.
	Path string
	// Size is the content size (0 for a link kept as a link).
	Size int64
	// Mode is the file's mode: permission bits for a regular file (of the
	// file a followed symlink points to), fs.ModeSymlink|0o777 for a link.
	Mode fs.FileMode
	// Link is set for a symlink kept as a link (MatchOptions.KeepLinks):
	// its target, relative and clean.
	Link string
}

// Entry is a file or link read from an archive.
type Entry struct {
	// Path is relative, slash-separated and clean (checked).
	Path string
	// Size is the declared content size, already checked against the limits.
	Size int64
	// Mode holds the permission bits (setuid, setgid and sticky dropped),
	// and fs.ModeSymlink for a link.
	Mode fs.FileMode
	// Link is a symlink's target as stored; empty for a regular file.
	Link string
	// ModTime is the stored modification time (whole seconds), kept so that
	// restored caches and build outputs look as old as they are to tools
	// that compare times (make, MSBuild's incremental builds).
	ModTime time.Time
}

// maxNameLen bounds entry names and link targets: PATH_MAX on Linux.
const maxNameLen = 4096

// FormatSize formats n bytes with binary units, as in "150 MiB" or
// "1.5 GiB", for messages a person reads.
func FormatSize(n int64) string {
	if n < 0 {
		if n == -n { // math.MinInt64
			return "-8 EiB"
		}
		return "-" + FormatSize(-n)
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, unit := float64(n), -1
	for v >= 1024 && unit < 5 {
		v /= 1024
		unit++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + "KMGTPE"[unit:unit+1] + "iB"
}

// checkName checks a slash-separated path relative to a root (an archive
// entry's name, or a File's path): relative, clean, no "..", no NUL, not
// too long. what names the thing in the message ("archive entry").
func checkName(what, name string) error {
	invalid := func(detail string) error {
		return fmt.Errorf("%s %q: %w (%s)", what, truncate(name), ErrInvalid, detail)
	}
	// A name that tries to leave the root is both invalid and an escape, so
	// that a caller checking either sentinel catches it.
	escapes := func(detail string) error {
		return fmt.Errorf("%s %q: %w, %w (%s)", what, truncate(name), ErrInvalid, ErrOutside, detail)
	}
	switch {
	case name == "" || name == ".":
		return invalid("empty name")
	case len(name) > maxNameLen:
		return invalid(fmt.Sprintf("name over %d bytes", maxNameLen))
	case strings.IndexByte(name, 0) >= 0:
		return invalid("NUL in the name")
	case strings.HasPrefix(name, "/"):
		return escapes("absolute path")
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return escapes(`".." element`)
		}
	}
	if path.Clean(name) != name {
		return invalid("not a clean path")
	}
	return nil
}

// truncate keeps a hostile name from making a message megabytes long.
func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// fileTooLarge formats an ErrTooLarge for one file over the per-file limit.
func fileTooLarge(what, name string, size, limit int64) error {
	return fmt.Errorf("%s %q is %s: %w (%s per file)", what, truncate(name), FormatSize(size), ErrTooLarge, FormatSize(limit))
}

// totalTooLarge formats an ErrTooLarge for the file that takes the total
// over the limit.
func totalTooLarge(what, name string, size, before, limit int64) error {
	return fmt.Errorf("%s %q (%s) after %s of other files: %w (%s in all)", what, truncate(name), FormatSize(size), FormatSize(before), ErrTooLarge, FormatSize(limit))
}

// tooMany formats an ErrTooLarge for the file over the count limit.
func tooMany(what, name string, limit int) error {
	return fmt.Errorf("%s %q is one file too many: %w (%d files)", what, truncate(name), ErrTooLarge, limit)
}

// budget applies Limits to a sequence of files, one add at a time.
type budget struct {
	lim   Limits
	total int64
	count int
}

func (b *budget) add(what, name string, size int64, link bool) error {
	b.count++
	if b.lim.MaxFiles > 0 && b.count > b.lim.MaxFiles {
		return tooMany(what, name, b.lim.MaxFiles)
	}
	if link {
		return nil
	}
	if b.lim.MaxFileSize > 0 && size > b.lim.MaxFileSize {
		return fileTooLarge(what, name, size, b.lim.MaxFileSize)
	}
	// Compared before adding: sizes declared by a hostile archive could
	// otherwise overflow the sum past the check.
	if b.lim.MaxTotalSize > 0 && size > b.lim.MaxTotalSize-b.total {
		return totalTooLarge(what, name, size, b.total, b.lim.MaxTotalSize)
	}
	b.total += size
	return nil
}
