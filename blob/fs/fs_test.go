package fs_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/fs"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := fs.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The helper process: one create-only put of its own pid into the store
// given in the environment; exit 0 if it won, 3 if it lost.
func TestMain(m *testing.M) {
	if root := os.Getenv("FS_TEST_RACE_ROOT"); root != "" {
		s, err := fs.Open(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// Say ready, then wait for the parent to close stdin, which it
		// does once all helpers are ready: the processes really race.
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		body := fmt.Sprint(os.Getpid())
		_, err = s.Put(context.Background(), "race/key", strings.NewReader(body), int64(len(body)), blob.PutOptions{IfNoneMatch: true})
		switch {
		case err == nil:
			os.Exit(0)
		case errors.Is(err, blob.ErrPreconditionFailed):
			os.Exit(3)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func TestCreateOnlyAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	const n = 10
	cmds := make([]*exec.Cmd, n)
	starts := make([]io.Closer, n)
	readies := make([]io.Reader, n)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FS_TEST_RACE_ROOT="+root)
		start, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		ready, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill() // a helper the test gave up on
		cmds[i], starts[i], readies[i] = cmd, start, ready
	}
	for i, ready := range readies {
		if line, err := bufio.NewReader(ready).ReadString('\n'); line != "ready\n" {
			t.Fatalf("helper %d: %q, %v", cmds[i].Process.Pid, line, err)
		}
	}
	for _, start := range starts {
		start.Close()
	}
	winners := []int{}
	for _, cmd := range cmds {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			winners = append(winners, cmd.Process.Pid)
		case errors.As(err, &exit) && exit.ExitCode() == 3:
		default:
			t.Fatalf("helper %d: %v", cmd.Process.Pid, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d processes won the create-only put, want 1: %v", len(winners), winners)
	}
	b, err := os.ReadFile(filepath.Join(root, "race", "key"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != fmt.Sprint(winners[0]) {
		t.Fatalf("object holds %q, winner was %d", b, winners[0])
	}
}

func TestPlainFilesAndStaleSidecar(t *testing.T) {
	root := t.TempDir()
	s, err := fs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := s.Put(ctx, "builds/7/log.ndjson", strings.NewReader("hello\n"), 6, blob.PutOptions{ContentType: "application/x-ndjson"})
	if err != nil {
		t.Fatal(err)
	}
	// Operators read objects as plain files.
	p := filepath.Join(root, "builds", "7", "log.ndjson")
	if b, _ := os.ReadFile(p); string(b) != "hello\n" {
		t.Fatalf("file holds %q", b)
	}
	// Someone edits the file behind the store's back: the cached ETag
	// must not be trusted.
	if err := os.WriteFile(p, []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stat(ctx, "builds/7/log.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag == info.ETag || st.Size != 8 {
		t.Fatalf("stale sidecar trusted: %+v", st)
	}
	if _, err := s.Put(ctx, "builds/7/log.ndjson", strings.NewReader("x"), 1, blob.PutOptions{IfMatch: info.ETag}); !errors.Is(err, blob.ErrPreconditionFailed) {
		t.Fatalf("if-match against the stale etag: %v", err)
	}
	if _, err := s.Put(ctx, ".wharfjobs-meta/x", strings.NewReader("x"), 1, blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidKey) {
		t.Fatalf("reserved key accepted: %v", err)
	}
}

func TestOpenEmptyRoot(t *testing.T) {
	_, err := fs.Open("")
	if err == nil || !strings.Contains(err.Error(), "WHARFJOBS_STORE_FS_ROOT") {
		t.Fatalf("error %v does not name the setting", err)
	}
}
