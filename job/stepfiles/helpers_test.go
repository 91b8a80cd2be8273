package stepfiles

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// write makes a file under root with its parents.
func write(t testing.TB, root, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode goes through the umask.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// link makes a symlink under root with its parents.
func link(t testing.TB, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// paths lists the files' paths.
func paths(files []File) []string {
	out := []string{}
	for _, f := range files {
		out = append(out, f.Path)
	}
	return out
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	hdr     tar.Header
	content string
}

// makeTar builds a tar stream from entries as archive/tar writes them.
func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.content))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress wraps a tar stream in zstd.
func compress(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// archiveOf builds a tar.zst archive from entries.
func archiveOf(t testing.TB, entries ...tarEntry) []byte {
	return compress(t, makeTar(t, entries...))
}

func reg(name, content string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, content: content}
}

func symlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// setSize rewrites the size field of the tar header at offset off in raw
// (an octal USTAR field) and its checksum, to make an archive lie.
func setSize(t testing.TB, raw []byte, off int, size int64) {
	t.Helper()
	hdr := raw[off : off+512]
	field := []byte(padOctal(size, 11))
	copy(hdr[124:136], append(field, 0))
	for i := 148; i < 156; i++ {
		hdr[i] = ' '
	}
	var sum int64
	for _, b := range hdr {
		sum += int64(b)
	}
	copy(hdr[148:156], append([]byte(padOctal(sum, 6)), 0, ' '))
}

func padOctal(n int64, width int) string {
	s := []byte{}
	for n > 0 {
		s = append([]byte{byte('0' + n%8)}, s...)
		n /= 8
	}
	for len(s) < width {
		s = append([]byte{'0'}, s...)
	}
	return string(s)
}

// dirEntries lists a directory's names (for "nothing was written there").
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
