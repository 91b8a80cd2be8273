package localrun

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCopyWorkspace measures what the local runner's workspace of its
// own costs each step: the copy of a 300 MiB checkout (3,000 files of 100
// KiB, as source trees are many small files), with cp -a --reflink=auto on
// the file system of TMPDIR.
//
//	go test -run '^$' -bench CopyWorkspace -benchtime 3x ./job/worker/localrun/
func BenchmarkCopyWorkspace(b *testing.B) {
	src := b.TempDir()
	buf := make([]byte, 100<<10)
	const files = 3000
	for i := range files {
		dir := filepath.Join(src, fmt.Sprintf("pkg%02d", i%50))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		_, _ = rand.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.go", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(files * int64(len(buf)))
	b.ResetTimer()
	for i := range b.N {
		dst := filepath.Join(b.TempDir(), fmt.Sprint(i))
		if err := CopyWorkspace(context.Background(), src, dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = os.RemoveAll(dst)
		b.StartTimer()
	}
}
