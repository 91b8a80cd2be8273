package stepfiles

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// maxWindow bounds the zstd window a reader accepts, and so the memory one
// decoder holds. Our writer uses zstd's default (8 MiB); the zstd command
// stays at or below 8 MiB too unless told --long or --ultra. A frame asking
// for more is refused instead of allocated.
const maxWindow = 32 << 20

// WriteArchive writes files (from Match) under root to w as a tar stream
// compressed with zstd at its default level, and returns the number of
// content bytes written.
//
// lim is checked first against the sizes in files, so that an oversized
// upload fails before anything is sent, and again against each file's size
// when it is opened: a file over MaxFileSize, or the total over
// MaxTotalSize, is an error wrapping ErrTooLarge naming the file, its size
// and the limit. The size at opening is what the tar header declares and
// at most what is copied, so a file still growing cannot take the archive
// over a limit; a file that shrinks while copied is an error.
//
// Files are opened through os.Root: a path that has become a link out of
// root since Match is refused (ErrOutside), and one that is no longer a
// regular file is an error wrapping ErrInvalid. Modes keep the permission
// bits only (no setuid, setgid or sticky bit), owners are not stored.
func WriteArchive(w io.Writer, root string, files []File, lim Limits) (int64, error) {
	pre := budget{lim: lim}
	for _, f := range files {
		if err := checkName("file", f.Path); err != nil {
			return 0, err
		}
		if err := pre.add("file", f.Path, f.Size, f.Link != ""); err != nil {
			return 0, err
		}
	}
	res, err := openResolver(root)
	if err != nil {
		return 0, err
	}
	defer res.Close()
	zw, err := zstd.NewWriter(w)
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(zw)
	b := budget{lim: lim}
	var written int64
	for _, f := range files {
		n, err := writeFile(tw, res, f, &b)
		written += n
		if err != nil {
			zw.Close() // frees its goroutines; the stream is abandoned
			return written, err
		}
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return written, err
	}
	return written, zw.Close()
}

// writeFile writes one file's header and content.
func writeFile(tw *tar.Writer, res *resolver, f File, b *budget) (int64, error) {
	if f.Link != "" {
		if err := b.add("file", f.Path, 0, true); err != nil {
			return 0, err
		}
		return 0, tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeSymlink,
			Name:     f.Path,
			Linkname: f.Link,
			Mode:     0o777,
			ModTime:  time.Unix(0, 0),
		})
	}
	fh, fi, err := res.openRegular(f.Path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	size := fi.Size()
	if err := b.add("file", f.Path, size, false); err != nil {
		return 0, err
	}
	err = tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     f.Path,
		Size:     size,
		Mode:     int64(fi.Mode().Perm()),
		ModTime:  fi.ModTime().Truncate(time.Second),
	})
	if err != nil {
		return 0, err
	}
	n, err := io.CopyN(tw, fh, size)
	if errors.Is(err, io.EOF) {
		return n, fmt.Errorf("file %q shrank from %s to %s while it was archived", f.Path, FormatSize(size), FormatSize(n))
	}
	return n, err
}

// openRegular opens a file (following links inside the root) for reading,
// refusing anything but a regular file.
func (r *resolver) openRegular(rel string) (*os.File, fs.FileInfo, error) {
	resolved, _, err := r.resolve(rel)
	if err != nil {
		return nil, nil, pathError(rel, err)
	}
	// O_NONBLOCK: a FIFO put in a file's place must not block the open.
	fh, err := r.root.OpenFile(osPath(resolved), os.O_RDONLY|nonblock, 0)
	if err != nil {
		return nil, nil, pathError(rel, err)
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, fmt.Errorf("file %q: %w (no longer a regular file: %v)", rel, ErrInvalid, fi.Mode().Type())
	}
	return fh, fi, nil
}

// pathError words an error resolving rel, wrapping ErrOutside for escapes.
func pathError(rel string, err error) error {
	var esc *escapeError
	if errors.As(err, &esc) {
		if esc.link == "" {
			return fmt.Errorf("%q: %w", rel, ErrOutside)
		}
		return fmt.Errorf("%q: %w (through symlink %q -> %q)", rel, ErrOutside, esc.link, esc.target)
	}
	var loop *loopError
	if errors.As(err, &loop) {
		return fmt.Errorf("%q: %w (%v)", rel, ErrInvalid, loop)
	}
	return err
}

// ReadArchive reads a tar.zst archive, as WriteArchive writes it or as
// anyone may have (the input is untrusted), and calls fn for every regular
// file and symlink with a reader of its content. fn need not read it all.
//
// Every entry name must be relative, clean, without "..", without NUL and
// at most 4096 bytes; directories are skipped, and every other entry type
// (hard links, devices, FIFOs, sparse files) is refused: errors wrap
// ErrInvalid (and ErrOutside for names leading out) and name the entry.
// lim is enforced on the declared sizes before fn is called and on the
// bytes actually read (ErrTooLarge). zstd's window is bounded (32 MiB), so
// a hostile stream cannot make the decoder allocate more than that.
// An error from fn is returned as it is.
func ReadArchive(r io.Reader, lim Limits, fn func(e Entry, r io.Reader) error) error {
	zr, err := zstd.NewReader(r,
		zstd.WithDecoderMaxWindow(maxWindow),
		zstd.WithDecoderMaxMemory(maxWindow),
		// A small *bytes.Buffer would otherwise be decoded whole into
		// memory (capped by MaxMemory, so a legitimate archive of highly
		// compressible files over 32 MiB would fail): always stream.
		zstd.WithDecodeBuffersBelow(0),
		zstd.WithDecoderConcurrency(2))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	b := budget{lim: lim}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corrupt(err)
		}
		e, skip, err := entryOf(hdr)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if err := b.add("archive entry", e.Path, e.Size, e.Link != ""); err != nil {
			return err
		}
		var content io.Reader = eofReader{}
		if e.Link == "" {
			content = &entryReader{r: tr, name: e.Path, left: e.Size}
		}
		if err := fn(e, content); err != nil {
			return err
		}
	}
}

// entryOf checks a tar header and makes an Entry of it; skip is set for
// entries that hold no file (directories, global PAX headers).
func entryOf(hdr *tar.Header) (e Entry, skip bool, err error) {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/") // tar's mark of a directory
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return e, true, nil // metadata for the whole archive, no file
	case tar.TypeDir:
		// Directories are made as files need them; their names are still
		// checked, since a hostile one says something about the archive.
		return e, true, checkName("archive entry", name)
	}
	if err := checkName("archive entry", name); err != nil {
		return e, false, err
	}
	e = Entry{Path: name, ModTime: hdr.ModTime.Truncate(time.Second)}
	switch hdr.Typeflag {
	case tar.TypeReg, '\x00': // '\x00' is the old TypeRegA
		if hdr.Size < 0 {
			return e, false, fmt.Errorf("archive entry %q: %w (negative size)", truncate(name), ErrInvalid)
		}
		e.Size = hdr.Size
		e.Mode = fs.FileMode(hdr.Mode) & fs.ModePerm
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || len(t) > maxNameLen || strings.IndexByte(t, 0) >= 0 {
			return e, false, fmt.Errorf("archive entry %q: %w (bad symlink target)", truncate(name), ErrInvalid)
		}
		e.Link = t
		e.Mode = fs.ModeSymlink | fs.ModePerm
	default:
		return e, false, fmt.Errorf("archive entry %q: %w (%s; only regular files, symlinks and directories are accepted)", truncate(name), ErrInvalid, typeName(hdr.Typeflag))
	}
	return e, false, nil
}

// typeName names a tar entry type for messages.
func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a FIFO"
	case tar.TypeGNUSparse:
		return "a sparse file"
	case tar.TypeCont:
		return "a contiguous file"
	default:
		return fmt.Sprintf("entry type %q", t)
	}
}

// corrupt words an error reading the archive itself.
func corrupt(err error) error {
	return fmt.Errorf("reading the archive: %w (%v)", ErrInvalid, err)
}

// entryReader reads one entry's content, counting what is read against the
// declared size (archive/tar already stops there; counting again keeps the
// limit independent of it) and wording decompression errors as ErrInvalid.
type entryReader struct {
	r    io.Reader
	name string
	left int64
}

func (e *entryReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("archive entry %q: %w", truncate(e.name), corrupt(err))
	}
	if err == io.EOF && e.left > 0 {
		err = fmt.Errorf("archive entry %q: %w", truncate(e.name), corrupt(io.ErrUnexpectedEOF))
	}
	return n, err
}

// eofReader is the content of a link: none.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
