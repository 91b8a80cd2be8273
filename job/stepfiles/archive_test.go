package stepfiles

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	random := make([]byte, 300<<10)
	rand.Read(random)
	write(t, src, "bin/tool", "#!/bin/sh\necho hi\n", 0o755)
	write(t, src, "bin/lib/data.bin", string(random), 0o644)
	write(t, src, "empty", "", 0o644)
	write(t, src, "private/key", "k", 0o600)
	write(t, src, "readonly", "r", 0o444)
	write(t, src, "deep/a/b/c/d/e/f/g/long-"+strings.Repeat("n", 150), "long name", 0o644)
	link(t, src, "bin/current", "tool")
	link(t, src, "lib", "bin/lib")
	mtime := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(src, "bin/tool"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	// setuid is not kept: a restored file must not gain privileges.
	if err := os.Chmod(filepath.Join(src, "bin/tool"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}

	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "followed", true: "KeepLinks"}[keep], func(t *testing.T) {
			files, _, err := Match(src, []string{"**"}, MatchOptions{KeepLinks: keep})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n, err := WriteArchive(&buf, src, files, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			for _, f := range files {
				want += f.Size
			}
			if n != want {
				t.Errorf("WriteArchive wrote %d content bytes, want %d", n, want)
			}
			dst := filepath.Join(t.TempDir(), "fresh")
			got, err := Extract(&buf, dst, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, paths(files)) {
				t.Errorf("extracted %q, want %q", got, paths(files))
			}
			for _, f := range files {
				sp, dp := filepath.Join(src, f.Path), filepath.Join(dst, f.Path)
				di, err := os.Lstat(dp)
				if err != nil {
					t.Fatal(err)
				}
				if f.Link != "" {
					tgt, err := os.Readlink(dp)
					if err != nil || tgt != f.Link {
						t.Errorf("%s: link %q (%v), want %q", f.Path, tgt, err, f.Link)
					}
					continue
				}
				si, _ := os.Stat(sp)
				if di.Mode() != si.Mode().Perm() {
					t.Errorf("%s: mode %v, want %v", f.Path, di.Mode(), si.Mode().Perm())
				}
				sb, _ := os.ReadFile(sp)
				db, _ := os.ReadFile(dp)
				if !bytes.Equal(sb, db) {
					t.Errorf("%s: content differs (%d vs %d bytes)", f.Path, len(db), len(sb))
				}
			}
			di, err := os.Stat(filepath.Join(dst, "bin/tool"))
			if err != nil {
				t.Fatal(err)
			}
			if di.Mode() != 0o755 {
				t.Errorf("bin/tool mode %v, want -rwxr-xr-x", di.Mode())
			}
			if !di.ModTime().Equal(mtime) {
				t.Errorf("bin/tool mtime %v, want %v", di.ModTime(), mtime)
			}
			if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || fi.Size() != 0 {
				t.Errorf("the empty file did not come back: %v", err)
			}
			if keep {
				if fi, err := os.Lstat(filepath.Join(dst, "lib")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("lib is not a link after extraction: %v", err)
				}
			}
		})
	}
}

func TestReadArchiveEntries(t *testing.T) {
	src := t.TempDir()
	write(t, src, "a/x", "12345", 0o640)
	link(t, src, "b", "a/x")
	files, _, err := Match(src, []string{"**"}, MatchOptions{KeepLinks: true})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, src, files, Limits{}); err != nil {
		t.Fatal(err)
	}
	var got []Entry
	err = ReadArchive(&buf, Limits{}, func(e Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		if int64(len(b)) != e.Size {
			t.Errorf("%s: read %d bytes, declared %d", e.Path, len(b), e.Size)
		}
		e.ModTime = time.Time{}
		got = append(got, e)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Path: "a/x", Size: 5, Mode: 0o640},
		{Path: "b", Mode: fs.ModeSymlink | 0o777, Link: "a/x"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries %+v, want %+v", got, want)
	}
}

func TestWriteArchiveLimits(t *testing.T) {
	root := t.TempDir()
	write(t, root, "small", strings.Repeat("s", 1<<20), 0o644)
	write(t, root, "big.nupkg", strings.Repeat("b", 3<<20), 0o644)
	write(t, root, "mid", strings.Repeat("m", 2<<20), 0o644)
	files, _, err := Match(root, []string{"**"}, MatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		lim  Limits
		msg  []string
	}{
		{"one file over", Limits{MaxFileSize: 2 << 20}, []string{`"big.nupkg"`, "3 MiB", "2 MiB per file"}},
		{"total over", Limits{MaxTotalSize: 5 << 20}, []string{`"small"`, "5 MiB in all"}},
		{"too many files", Limits{MaxFiles: 2}, []string{`"small"`, "2 files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := WriteArchive(&buf, root, files, tt.lim)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written before the limit was checked", buf.Len())
			}
		})
	}
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, root, files, Limits{MaxFileSize: 3 << 20, MaxTotalSize: 6 << 20, MaxFiles: 3}); err != nil {
		t.Fatalf("files exactly at the limits: %v", err)
	}
}

func TestWriteArchiveRechecksWhileCopying(t *testing.T) {
	root := t.TempDir()
	write(t, root, "log.txt", "short", 0o644)
	files, _, err := Match(root, []string{"*"}, MatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The file grows after Match: the limit holds for what is read.
	write(t, root, "log.txt", strings.Repeat("x", 100), 0o644)
	_, err = WriteArchive(io.Discard, root, files, Limits{MaxFileSize: 50})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "100 B") {
		t.Fatalf("grown file: err = %v, want ErrTooLarge naming 100 B", err)
	}
	_, err = WriteArchive(io.Discard, root, files, Limits{MaxTotalSize: 50})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("grown file, total: err = %v, want ErrTooLarge", err)
	}
	// Within the limit the archive holds what the file has when opened.
	var buf bytes.Buffer
	n, err := WriteArchive(&buf, root, files, Limits{MaxFileSize: 200})
	if err != nil || n != 100 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
}

func TestWriteArchiveFileGrowingWhileCopied(t *testing.T) {
	// A process the step left behind keeps appending to a log: the archive
	// holds the size it had when opened, and stays a valid tar.
	root := t.TempDir()
	write(t, root, "grow.log", strings.Repeat("l", 4<<20), 0o644)
	files, _, err := Match(root, []string{"*"}, MatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		f, err := os.OpenFile(filepath.Join(root, "grow.log"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		chunk := []byte(strings.Repeat("g", 64<<10))
		for i := 0; i < 512; i++ {
			select {
			case <-stop:
				return
			default:
				f.Write(chunk)
			}
		}
	}()
	var buf bytes.Buffer
	n, err := WriteArchive(&buf, root, files, Limits{MaxFileSize: 40 << 20})
	t.Logf("archived %s", FormatSize(n))
	close(stop)
	<-stopped
	if err != nil {
		t.Fatal(err)
	}
	err = ReadArchive(&buf, Limits{}, func(e Entry, r io.Reader) error {
		m, err := io.Copy(io.Discard, r)
		if m != n || e.Size != n {
			t.Errorf("entry declares %d, holds %d, WriteArchive said %d", e.Size, m, n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteArchiveRefusesSwappedFiles(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "ws"), filepath.Join(base, "outside")
	write(t, outside, "secret", "secret", 0o644)
	write(t, root, "a", "a", 0o644)
	write(t, root, "b", "b", 0o644)
	files, _, err := Match(root, []string{"*"}, MatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// After Match, the step's leftover processes swap files around.
	os.Remove(filepath.Join(root, "a"))
	link(t, root, "a", filepath.Join(outside, "secret"))
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, root, files, Limits{}); !errors.Is(err, ErrOutside) {
		t.Fatalf("link swapped in: err = %v, want ErrOutside", err)
	}
	os.Remove(filepath.Join(root, "a"))
	write(t, root, "a", "a", 0o644)
	os.Remove(filepath.Join(root, "b"))
	if err := syscall.Mkfifo(filepath.Join(root, "b"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := WriteArchive(io.Discard, root, files, Limits{}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("FIFO swapped in: err = %v, want ErrInvalid", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteArchive blocked opening a FIFO")
	}
	bad := []File{{Path: "../x"}}
	if _, err := WriteArchive(io.Discard, root, bad, Limits{}); !errors.Is(err, ErrOutside) {
		t.Fatalf("path ../x: err = %v, want ErrOutside", err)
	}
}

func TestReadArchiveHostile(t *testing.T) {
	big := strings.Repeat("z", 2048)
	tests := []struct {
		name    string
		archive func(t *testing.T) []byte
		lim     Limits
		want    []error
		msg     string
	}{
		{"dot dot", func(t *testing.T) []byte { return archiveOf(t, reg("../x", "x")) }, Limits{}, []error{ErrInvalid, ErrOutside}, `"../x"`},
		{"inner dot dot", func(t *testing.T) []byte { return archiveOf(t, reg("a/../../x", "x")) }, Limits{}, []error{ErrInvalid, ErrOutside}, `"a/../../x"`},
		{"absolute", func(t *testing.T) []byte { return archiveOf(t, reg("/abs", "x")) }, Limits{}, []error{ErrInvalid, ErrOutside}, `"/abs"`},
		{"not clean", func(t *testing.T) []byte { return archiveOf(t, reg("a//b", "x")) }, Limits{}, []error{ErrInvalid}, `"a//b"`},
		{"dot", func(t *testing.T) []byte { return archiveOf(t, reg("./a", "x")) }, Limits{}, []error{ErrInvalid}, `"./a"`},
		{"name too long", func(t *testing.T) []byte { return archiveOf(t, reg(strings.Repeat("a/", 2100)+"x", "x")) }, Limits{}, []error{ErrInvalid}, "4096"},
		{"directory with dot dot", func(t *testing.T) []byte {
			return archiveOf(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "../d/", Mode: 0o755}})
		}, Limits{}, []error{ErrInvalid, ErrOutside}, `"../d"`},
		{"hard link", func(t *testing.T) []byte {
			return archiveOf(t, reg("a", "x"), tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "a"}})
		}, Limits{}, []error{ErrInvalid}, "hard link"},
		{"device", func(t *testing.T) []byte {
			return archiveOf(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}})
		}, Limits{}, []error{ErrInvalid}, "character device"},
		{"fifo", func(t *testing.T) []byte {
			return archiveOf(t, tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}})
		}, Limits{}, []error{ErrInvalid}, "FIFO"},
		{"declared size over the file limit", func(t *testing.T) []byte {
			return archiveOf(t, reg("big", big))
		}, Limits{MaxFileSize: 1024}, []error{ErrTooLarge}, `"big" is 2 KiB`},
		{"declared sizes over the total", func(t *testing.T) []byte {
			return archiveOf(t, reg("a", big), reg("b", big))
		}, Limits{MaxTotalSize: 3000}, []error{ErrTooLarge}, `"b"`},
		{"too many entries", func(t *testing.T) []byte {
			return archiveOf(t, reg("a", ""), reg("b", ""), reg("c", ""))
		}, Limits{MaxFiles: 2}, []error{ErrTooLarge}, `"c"`},
		{"declared size longer than the content", func(t *testing.T) []byte {
			raw := makeTar(t, reg("a", "ten bytes!"))
			setSize(t, raw, 0, 1<<20)
			return compress(t, raw[:1024]) // cut the end-of-archive too
		}, Limits{}, []error{ErrInvalid}, `"a"`},
		{"declared size shorter than the content", func(t *testing.T) []byte {
			raw := makeTar(t, reg("a", strings.Repeat("\xff", 4096)))
			setSize(t, raw, 0, 10)
			return compress(t, raw)
		}, Limits{MaxFileSize: 100}, []error{ErrInvalid}, "reading the archive"},
		{"not zstd", func(t *testing.T) []byte { return makeTar(t, reg("a", "x")) }, Limits{}, []error{ErrInvalid}, "reading the archive"},
		{"window bomb", func(t *testing.T) []byte { return windowBomb() }, Limits{}, []error{ErrInvalid}, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var read int64
			err := ReadArchive(bytes.NewReader(tt.archive(t)), tt.lim, func(e Entry, r io.Reader) error {
				n, err := io.Copy(io.Discard, r)
				read += n
				if tt.lim.MaxFileSize > 0 && n > tt.lim.MaxFileSize {
					t.Errorf("%s: fn read %d bytes, over the limit", e.Path, n)
				}
				return err
			})
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want %v", err, w)
				}
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
			if tt.lim.MaxTotalSize > 0 && read > tt.lim.MaxTotalSize {
				t.Errorf("read %d bytes, over the total", read)
			}
		})
	}
}

// windowBomb is a zstd frame that asks for a 256 MiB window (which zstd's
// own default limit, 512 MiB, would grant): a decoder that believes it
// holds that much memory per stream.
func windowBomb() []byte {
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd} // magic
	frame = append(frame, 0x00)             // no checksum, no content size, not single-segment
	frame = append(frame, 18<<3)            // window log 10+18 = 28: 256 MiB
	data := bytes.Repeat([]byte{0}, 512)
	bh := uint32(1) | uint32(0)<<1 | uint32(len(data))<<3 // last, raw block
	frame = append(frame, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(frame, data...)
}

func TestReadArchiveBombIsStreamed(t *testing.T) {
	// 64 MiB of zeros compress to almost nothing: reading must stop at
	// the limit, and without a limit must stream in bounded memory.
	const n = 64
	var entries []tarEntry
	zeros := string(make([]byte, 1<<20))
	for i := range n {
		entries = append(entries, reg(fmt.Sprintf("z/%03d", i), zeros))
	}
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zw.Write(makeTar(t, entries...))
	zw.Close()
	bomb := buf.Bytes()
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes: not much of a bomb", len(bomb))
	}
	var read int64
	err := ReadArchive(bytes.NewReader(bomb), Limits{MaxTotalSize: 8 << 20}, func(e Entry, r io.Reader) error {
		n, err := io.Copy(io.Discard, r)
		read += n
		return err
	})
	if !errors.Is(err, ErrTooLarge) || read > 8<<20 {
		t.Fatalf("err = %v after %d bytes, want ErrTooLarge within 8 MiB", err, read)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	read = 0
	// A *bytes.Buffer, which zstd would decode whole into memory if let.
	err = ReadArchive(bytes.NewBuffer(bomb), Limits{}, func(e Entry, r io.Reader) error {
		n, err := io.Copy(io.Discard, r)
		read += n
		return err
	})
	runtime.ReadMemStats(&after)
	if err != nil || read != n<<20 {
		t.Fatalf("read %d, err %v", read, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("reading %d MiB from %s allocated %s", n, FormatSize(int64(len(bomb))), FormatSize(int64(alloc)))
	if alloc > 24<<20 { // a third of what was read
		t.Errorf("reading %d MiB allocated %s: not streamed", n, FormatSize(int64(alloc)))
	}
}

func TestExtractHostile(t *testing.T) {
	tests := []struct {
		name     string
		existing func(t *testing.T, root, outside string) // the workspace before
		entries  []tarEntry
		want     error
		msg      string
		done     []string // extracted before the error
	}{
		{
			name:    "a link entry out, then a file through it",
			entries: []tarEntry{symlinkEntry("link", "OUTSIDE"), reg("link/evil", "pwned")},
			want:    ErrOutside,
			msg:     `"link"`,
		},
		{
			name:    "a relative link entry out, then a file through it",
			entries: []tarEntry{symlinkEntry("link", "../outside"), reg("link/evil", "pwned")},
			want:    ErrOutside,
			msg:     `"link"`,
		},
		{
			name:     "an existing link out in the workspace, then a file through it",
			existing: func(t *testing.T, root, outside string) { link(t, root, "link", outside) },
			entries:  []tarEntry{reg("ok", "fine"), reg("link/evil", "pwned")},
			want:     ErrOutside,
			msg:      `existing symlink "link"`,
			done:     []string{"ok"},
		},
		{
			name:     "an existing link out deeper up",
			existing: func(t *testing.T, root, outside string) { link(t, root, "a/link", outside) },
			entries:  []tarEntry{reg("a/link/b/c/evil", "pwned")},
			want:     ErrOutside,
		},
		{
			name:     "an existing link out at the entry's own path",
			existing: func(t *testing.T, root, outside string) { link(t, root, "target", filepath.Join(outside, "file")) },
			entries:  []tarEntry{reg("target", "pwned")},
			want:     ErrOutside,
		},
		{
			name:    "a chain of link entries that ends outside",
			entries: []tarEntry{symlinkEntry("a", "b"), symlinkEntry("b", "..")},
			want:    ErrOutside,
			msg:     `"b"`,
			done:    []string{"a"},
		},
		{
			name:    "a link entry relying on an inner .. is refused",
			entries: []tarEntry{symlinkEntry("d/n", "."), symlinkEntry("d/a", "n/../../x")},
			want:    ErrInvalid,
			done:    []string{"d/n"},
		},
		{
			name:    "a link entry from a subdirectory climbing out",
			entries: []tarEntry{symlinkEntry("d/e/up", "../../../outside/file")},
			want:    ErrOutside,
		},
		{
			name:    "a link entry to an absolute path",
			entries: []tarEntry{symlinkEntry("abs", "/etc/shadow")},
			want:    ErrOutside,
		},
		{
			name:     "a directory in the way",
			existing: func(t *testing.T, root, outside string) { write(t, root, "d/keep", "k", 0o644) },
			entries:  []tarEntry{reg("d", "file over a directory")},
			want:     ErrInvalid,
		},
		{
			name:    "a file used as a directory",
			entries: []tarEntry{reg("f", "file"), reg("f/x", "below a file")},
			want:    nil, // any error: os.Root says EEXIST, os says ENOTDIR
			msg:     `"f/x"`,
			done:    []string{"f"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, outside := filepath.Join(base, "ws"), filepath.Join(base, "outside")
			for _, d := range []string{root, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.existing != nil {
				tt.existing(t, root, outside)
			}
			var entries []tarEntry
			for _, e := range tt.entries {
				e.hdr.Linkname = strings.ReplaceAll(e.hdr.Linkname, "OUTSIDE", outside)
				entries = append(entries, e)
			}
			done, err := Extract(bytes.NewReader(archiveOf(t, entries...)), root, Limits{})
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q lacks %q", err, tt.msg)
			}
			if !slices.Equal(done, tt.done) {
				t.Errorf("extracted %q, want %q", done, tt.done)
			}
			if names := dirEntries(t, outside); len(names) != 0 {
				t.Errorf("written outside the workspace: %q", names)
			}
			if names := dirEntries(t, base); !slices.Equal(names, []string{"outside", "ws"}) {
				t.Errorf("written beside the workspace: %q", names)
			}
			// Nothing left half-done: no temporary files.
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if strings.Contains(p, ".stepfiles-") {
					t.Errorf("temporary file left: %s", p)
				}
				return nil
			})
		})
	}
}

func TestExtractReplaces(t *testing.T) {
	root := t.TempDir()
	write(t, root, "real", "untouched", 0o644)
	link(t, root, "viaLink", "real")
	write(t, root, "old", "old content that is longer", 0o755)
	link(t, root, "dirlink", "realdir")
	write(t, root, "realdir/keep", "k", 0o644)
	archive := archiveOf(t, reg("viaLink", "new"), reg("old", "new"), reg("dirlink/x", "through an inside link"), symlinkEntry("old2", "old"))
	done, err := Extract(bytes.NewReader(archive), root, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []string{"viaLink", "old", "dirlink/x", "old2"}) {
		t.Errorf("done = %q", done)
	}
	check := func(rel, want string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", rel, b, err, want)
		}
	}
	check("real", "untouched") // the link was replaced, not written through
	check("viaLink", "new")
	check("old", "new")
	check("realdir/x", "through an inside link")
	check("old2", "new")
	if fi, _ := os.Lstat(filepath.Join(root, "viaLink")); !fi.Mode().IsRegular() {
		t.Errorf("viaLink is %v, want a regular file", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(root, "old")); fi.Mode() != 0o644 {
		t.Errorf("old has mode %v, want the archive's -rw-r--r--", fi.Mode())
	}
}

func TestExtractLimits(t *testing.T) {
	root := t.TempDir()
	archive := archiveOf(t, reg("a", "12345"), reg("b", "1234567890"))
	done, err := Extract(bytes.NewReader(archive), root, Limits{MaxFileSize: 8})
	if !errors.Is(err, ErrTooLarge) || !slices.Equal(done, []string{"a"}) {
		t.Fatalf("done %q, err %v", done, err)
	}
	if _, err := os.Stat(filepath.Join(root, "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("b was written: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name string
		want error
	}{
		{"a/b.txt", nil},
		{".hidden/x", nil},
		{"a..b", nil},
		{"", ErrInvalid},
		{".", ErrInvalid},
		{"a\x00b", ErrInvalid},
		{"a/", ErrInvalid},
		{"a/./b", ErrInvalid},
		{"..", ErrOutside},
		{"a/..", ErrOutside},
		{"/a", ErrOutside},
		{strings.Repeat("x", 4097), ErrInvalid},
	} {
		if err := checkName("entry", tt.name); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("checkName(%.20q) = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{150 << 20, "150 MiB"},
		{3 << 30, "3 GiB"},
		{5<<40 + 1<<39, "5.5 TiB"},
		{-2048, "-2 KiB"},
		{1<<63 - 1, "8 EiB"},
	} {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
