package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
)

// step-exec, as a step container runs it: the command's exit code is the
// step's, its declared files go to the plan's PUT URL, and files it cannot
// keep make a successful command exit 1.
func TestStepExec(t *testing.T) {
	var mu sync.Mutex
	puts := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		puts[r.URL.Path] = len(b)
		mu.Unlock()
	}))
	defer ts.Close()
	dir := t.TempDir()
	write := func(ifNoFiles pipeline.IfNoFiles) string {
		plan := stepexec.Plan{
			Collect: []stepexec.Collect{{What: "artifacts", Key: "k", Paths: []string{"out.txt"}, When: pipeline.Always, IfNoFilesFound: ifNoFiles}},
			URLs:    map[string]string{"k": ts.URL + "/k?X-Amz-Signature=s"},
		}
		b, _ := json.Marshal(plan)
		f := filepath.Join(t.TempDir(), "files.json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Chdir(dir)
	code, _, errOut := runCLI(t, "step-exec", "--files", write(pipeline.NoFilesError), "--tmp", t.TempDir(), "--", "/bin/sh", "-c", "echo hi > out.txt; exit 3")
	if code != 3 || puts["/k"] == 0 {
		t.Fatalf("exit %d (want 3), uploads %v: %s", code, puts, errOut)
	}
	_ = os.Remove(filepath.Join(dir, "out.txt"))
	code, _, errOut = runCLI(t, "step-exec", "--files", write(pipeline.NoFilesError), "--", "/bin/sh", "-c", "true")
	if code != 1 || !strings.Contains(errOut, `no file matches "out.txt"`) {
		t.Fatalf("a step whose declared file is missing: exit %d, %s", code, errOut)
	}
	code, _, _ = runCLI(t, "step-exec", "--files", write(pipeline.NoFilesWarn), "--", "/bin/sh", "-c", "true")
	if code != 0 {
		t.Fatalf("exit %d with ifNoFilesFound: warn", code)
	}
	if code, _, errOut := runCLI(t, "step-exec", "--files", "x"); code != ExitUsage || !strings.Contains(errOut, "expected --") {
		t.Fatalf("no command: exit %d, %s", code, errOut)
	}
}

// store-setup creates the bucket and the cache expiry rule on a real MinIO.
func TestStoreSetup(t *testing.T) {
	srv, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bucket := miniotest.BucketName("setup")
	t.Setenv("WHARFJOBS_STORE_ACCESS_KEY", srv.AccessKey)
	t.Setenv("WHARFJOBS_STORE_SECRET_KEY", srv.SecretKey)
	code, out, errOut := runCLI(t, "store-setup", "--store", "minio", "--endpoint", srv.Endpoint, "--bucket", bucket, "--cache-expire-days", "14")
	if code != 0 || !strings.Contains(out, "expire 14 days") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	store, err := backend.Open(context.Background(), srv.Config(blob.BackendMinIO, bucket))
	if err != nil {
		t.Fatal(err)
	}
	days, err := store.(interface {
		Expiry(context.Context, string) (int, error)
	}).Expiry(context.Background(), cacheExpiryRule)
	if err != nil || days != 14 {
		t.Fatalf("lifecycle rule: %d days, %v", days, err)
	}
	// Run again with another value: the rule is replaced, not added.
	if code, _, errOut := runCLI(t, "store-setup", "--store", "minio", "--endpoint", srv.Endpoint, "--bucket", bucket, "--cache-expire-days", "30"); code != 0 {
		t.Fatal(errOut)
	}
	if days, _ := store.(interface {
		Expiry(context.Context, string) (int, error)
	}).Expiry(context.Background(), cacheExpiryRule); days != 30 {
		t.Fatalf("after the second run: %d days", days)
	}
}
