package stepfiles

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchTree makes 64 MiB of files shaped like build output: a few large
// incompressible packages, large compressible text, and many small
// source-like files. It returns the root and the content size.
func benchTree(b *testing.B) (string, int64) {
	root := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var total int64
	random := func(n int) string {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		return string(buf)
	}
	words := strings.Fields("public class void return string int namespace using var new if else for while static readonly async await Task List Dictionary")
	text := func(n int) string {
		var sb strings.Builder
		for sb.Len() < n {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(" \n"[rng.IntN(2)])
		}
		return sb.String()[:n]
	}
	for i := range 12 { // 24 MiB incompressible: .nupkg, images
		write(b, root, fmt.Sprintf("bin/pkg%02d.nupkg", i), random(2<<20), 0o644)
		total += 2 << 20
	}
	for i := range 4 { // 24 MiB compressible: logs, .pdb-ish text
		write(b, root, fmt.Sprintf("logs/big%d.log", i), text(6<<20), 0o644)
		total += 6 << 20
	}
	for i := range 1024 { // 16 MiB in small files
		write(b, root, fmt.Sprintf("src/d%02d/f%04d.cs", i%32, i), text(16<<10), 0o755)
		total += 16 << 10
	}
	return root, total
}

func BenchmarkArchive(b *testing.B) {
	root, total := benchTree(b)
	// Match and WriteArchive, as a step's end does; the archive made here
	// also feeds the other sub-benchmarks, which may run alone (-bench).
	pack := func(w io.Writer) {
		files, _, err := Match(root, []string{"**"}, MatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := WriteArchive(w, root, files, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	var archive bytes.Buffer
	pack(&archive)
	b.Run("write", func(b *testing.B) {
		b.SetBytes(total)
		var out countWriter
		for b.Loop() {
			pack(&out)
		}
		b.ReportMetric(float64(archive.Len())/float64(total), "ratio")
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			err := ReadArchive(bytes.NewReader(archive.Bytes()), Limits{}, func(e Entry, r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("extract", func(b *testing.B) {
		b.SetBytes(total)
		dst := b.TempDir()
		i := 0
		for b.Loop() {
			i++
			if _, err := Extract(bytes.NewReader(archive.Bytes()), filepath.Join(dst, fmt.Sprint(i)), Limits{}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(filepath.Join(dst, fmt.Sprint(i)))
			b.StartTimer()
		}
	})
}

// countWriter discards what it is given, like io.Discard, but is not an
// io.ReaderFrom, so nothing downstream takes a shortcut.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
