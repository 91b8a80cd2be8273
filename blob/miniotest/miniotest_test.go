package miniotest

import (
	"context"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
)

type fakeM func() int

func (f fakeM) Run() int { return f() }

// A package whose tests never ask for MinIO runs without it, even when the
// binary is missing.
func TestMainStartsNothingForTestsWithoutMinIO(t *testing.T) {
	t.Setenv("WHARFJOBS_MINIO_BIN", "/nonexistent/minio")
	var srv *Server
	code := Run(fakeM(func() int {
		if srv == nil || srv.Endpoint != "" {
			t.Errorf("srv = %+v during the tests, want a lazy server not yet started", srv)
		}
		return 3
	}), &srv)
	if code != 3 {
		t.Errorf("exit code %d, want the tests' 3", code)
	}
	if srv.cmd != nil || srv.dir != "" {
		t.Errorf("a server was started: cmd %v, dir %q", srv.cmd, srv.dir)
	}
}

func TestLazyStartFailsEveryCallerTheSameWay(t *testing.T) {
	t.Setenv("WHARFJOBS_MINIO_BIN", "/nonexistent/minio")
	s := Lazy()
	defer s.Close()
	err := s.ensure()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/minio") {
		t.Fatalf("ensure: %v, want the missing binary", err)
	}
	if again := s.ensure(); again != err {
		t.Errorf("second ensure: %v, want the first error %v", again, err)
	}
	defer func() {
		if r := recover(); r != err {
			t.Errorf("Config panicked with %v, want %v", r, err)
		}
	}()
	s.Config(blob.BackendMinIO, "b")
}

func TestLazyStartsOnFirstStore(t *testing.T) {
	var srv *Server
	Run(fakeM(func() int {
		if srv.cmd != nil {
			t.Fatal("started before first use")
		}
		st := srv.Store(t, blob.BackendMinIO, "lazy")
		if srv.cmd == nil || srv.Endpoint == "" {
			t.Fatal("Store did not start the server")
		}
		ctx := context.Background()
		if _, err := st.Put(ctx, "k", strings.NewReader("v"), 1, blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		// Later callers share the running server.
		if ep := srv.Ensure(t).Endpoint; ep != srv.Config(blob.BackendMinIO, "x").Endpoint {
			t.Errorf("endpoint changed: %s", ep)
		}
		return 0
	}), &srv)
	if srv.cmd != nil {
		t.Error("server still running after the tests")
	}
}
