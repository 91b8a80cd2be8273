package stepexec

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepfiles"
)

// objectServer is a pre-signed-URL endpoint: GET and PUT of objects by
// path, 404 for a missing one.
type objectServer struct {
	mu      sync.Mutex
	objects map[string][]byte
	lengths map[string]int64
}

func (o *objectServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		o.objects[r.URL.Path], o.lengths[r.URL.Path] = b, r.ContentLength
	case http.MethodGet:
		b, ok := o.objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}
}

// The step's side with URLs only: it uploads what it declared, restores it
// into the next workspace, tells a missing archive (404) from an error, and
// never puts a URL's signature in an error.
func TestURLTransportRoundTrip(t *testing.T) {
	srv := &objectServer{objects: map[string][]byte{}, lengths: map[string]int64{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	urls := map[string]string{
		"a/artifacts": ts.URL + "/a?X-Amz-Signature=sekrit",
		"a/cache":     ts.URL + "/cache?X-Amz-Signature=sekrit",
	}
	tr := URLTransport{URLs: urls}
	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(ws, "out", "app.bin"), []byte("binary"), 0o755)
	plan := Plan{Collect: []Collect{{What: "artifacts", Key: "a/artifacts", Paths: []string{"out/**"}, When: pipeline.OnSuccess, IfNoFilesFound: pipeline.NoFilesWarn}}}
	var log bytes.Buffer
	if err := After(context.Background(), plan, tr, ws, true, t.TempDir(), &log); err != nil {
		t.Fatal(err)
	}
	if n := srv.lengths["/a"]; n <= 0 || int(n) != len(srv.objects["/a"]) {
		t.Fatalf("PUT with Content-Length %d for %d bytes", n, len(srv.objects["/a"]))
	}
	next := t.TempDir()
	restore := Plan{Restore: []Restore{{What: "artifacts of b/a", Keys: []string{"a/artifacts"}}, {What: "cache go", Keys: []string{"a/cache"}, Optional: true}}}
	if err := Before(context.Background(), restore, tr, next, &log); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(next, "out", "app.bin")); err != nil || string(b) != "binary" {
		t.Fatalf("restored %q %v", b, err)
	}
	if !strings.Contains(log.String(), "restored artifacts of b/a: 1 file(s)") || !strings.Contains(log.String(), "cache go: none saved yet") {
		t.Fatalf("log:\n%s", log.String())
	}
	// A missing archive that is not optional fails the restore.
	err := Before(context.Background(), Plan{Restore: []Restore{{What: "artifacts of b/c", Keys: []string{"a/cache"}}}}, tr, next, &log)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing archive: %v", err)
	}
	ts.Close()
	tr.Attempts, tr.Retry = 2, quick
	_, err = tr.Get(context.Background(), "a/artifacts")
	if err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("error of an unreachable URL: %v", err)
	}
}

// quick is a retry policy that keeps the tests fast.
var quick = backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}

// flakyServer answers each path's first requests as a busy or failing
// store does (503 SlowDown, then a connection dropped before any answer),
// then as objectServer; it counts the requests by method and path.
type flakyServer struct {
	objectServer
	failures int // per method and path
	mu       sync.Mutex
	seen     map[string]int
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen[r.Method+" "+r.URL.Path]++
	n := f.seen[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/busy":
		http.Error(w, "<Code>SlowDown</Code>", http.StatusServiceUnavailable)
	case n > f.failures:
		f.objectServer.ServeHTTP(w, r)
	case n%2 == 1:
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "<Code>SlowDown</Code>", http.StatusServiceUnavailable)
	default:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
}

func (f *flakyServer) count(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[method+" "+path]
}

// A step's transfers outlast a store that is briefly busy or unreachable:
// each request is tried again, with backoff, on a dropped connection and
// on 5xx, with the whole body every time; a 404 or a 403 is final, a body
// that cannot be rewound is sent once, and the attempts are bounded.
func TestURLTransportRetries(t *testing.T) {
	srv := &flakyServer{objectServer: objectServer{objects: map[string][]byte{}, lengths: map[string]int64{}}, failures: 3, seen: map[string]int{}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	tr := URLTransport{URLs: map[string]string{
		"obj": ts.URL + "/obj?X-Amz-Signature=sekrit", "gone": ts.URL + "/gone", "bare": ts.URL + "/bare", "busy": ts.URL + "/busy?X-Amz-Signature=sekrit",
	}, Retry: quick}
	ctx := context.Background()
	body := bytes.Repeat([]byte("archive "), 64<<10)
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(body); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put(ctx, "obj", f, int64(len(body))); err != nil {
		t.Fatalf("PUT through 3 failures: %v", err)
	}
	if got := srv.objects["/obj"]; !bytes.Equal(got, body) || srv.count("PUT", "/obj") != 4 {
		t.Fatalf("PUT stored %d of %d bytes after %d requests, want all after 4", len(got), len(body), srv.count("PUT", "/obj"))
	}
	rc, err := tr.Get(ctx, "obj")
	if err != nil {
		t.Fatalf("GET through 3 failures: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) || srv.count("GET", "/obj") != 4 {
		t.Fatalf("GET read %d of %d bytes (%v) after %d requests", len(got), len(body), err, srv.count("GET", "/obj"))
	}

	// Final answers are not retried.
	srv.failures = 0
	if _, err := tr.Get(ctx, "gone"); !errors.Is(err, ErrNotFound) || srv.count("GET", "/gone") != 1 {
		t.Fatalf("404: %v after %d requests, want ErrNotFound after 1", err, srv.count("GET", "/gone"))
	}
	// A body that cannot be rewound gets one attempt.
	srv.failures = 1
	if err := tr.Put(ctx, "bare", io.MultiReader(strings.NewReader("x")), 1); err == nil || srv.count("PUT", "/bare") != 1 {
		t.Fatalf("unrewindable PUT: %v after %d requests, want a failure after 1", err, srv.count("PUT", "/bare"))
	}
	// A store that stays busy fails the transfer after Attempts, and the
	// error keeps the URL's signature out.
	tr.Attempts = 3
	if _, err := tr.Get(ctx, "busy"); err == nil || !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), "sekrit") || srv.count("GET", "/busy") != 3 {
		t.Fatalf("always busy: %v after %d requests, want a 503 error after 3", err, srv.count("GET", "/busy"))
	}
}

// Collecting: when decides, ifNoFilesFound decides, limits fail the step
// naming the file and the settings, a cache is a warning only, and a
// corrupt cache is a warning too.
func TestAfterRules(t *testing.T) {
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := StoreTransport{Store: store}
	ws := t.TempDir()
	_ = os.WriteFile(filepath.Join(ws, "big.bin"), make([]byte, 4096), 0o644)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    Collect
		ok   bool
		fail string // "" when After succeeds
		log  string
	}{
		{"not when failed", Collect{What: "artifacts", Key: "k1", Paths: []string{"big.bin"}, When: pipeline.OnSuccess}, false, "", ""},
		{"no match warns", Collect{What: "artifacts", Key: "k2", Paths: []string{"dist/*"}, When: pipeline.Always, IfNoFilesFound: pipeline.NoFilesWarn}, true, "", `warning: artifacts: no file matches "dist/*"`},
		{"no match fails", Collect{What: "artifacts", Key: "k3", Paths: []string{"dist/*"}, When: pipeline.Always, IfNoFilesFound: pipeline.NoFilesError}, true, `no file matches "dist/*" (ifNoFilesFound: error)`, ""},
		{"over the limit", Collect{What: "artifacts", Key: "k4", Paths: []string{"big.bin"}, When: pipeline.Always, Limits: stepfiles.Limits{MaxFileSize: 1024}, LimitsFrom: "WHARFJOBS_ARTIFACT_MAX_FILE_SIZE=1 KiB"}, true, "big.bin", "WHARFJOBS_ARTIFACT_MAX_FILE_SIZE=1 KiB"},
		{"cache over the limit warns", Collect{What: "cache go", Key: "k5", Paths: []string{"big.bin"}, When: pipeline.Always, WarnOnly: true, Limits: stepfiles.Limits{MaxTotalSize: 1024}}, true, "", "warning: cache go:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			err := After(ctx, Plan{Collect: []Collect{tc.c}}, tr, ws, tc.ok, t.TempDir(), &log)
			if tc.fail == "" && err != nil || tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)) {
				t.Fatalf("After: %v, want failure %q", err, tc.fail)
			}
			if !strings.Contains(log.String(), tc.log) {
				t.Fatalf("log %q lacks %q", log.String(), tc.log)
			}
			if _, _, err := store.Get(ctx, tc.c.Key); err == nil && (tc.fail != "" || tc.c.WarnOnly || !tc.ok) {
				t.Fatalf("an archive was uploaded for %s", tc.name)
			}
		})
	}
	// A corrupt cache archive: restored nothing, said so, went on.
	_, _ = store.Put(ctx, "corrupt", strings.NewReader("not zstd"), 8, blob.PutOptions{})
	var log bytes.Buffer
	if err := Before(ctx, Plan{Restore: []Restore{{What: "cache go", Keys: []string{"corrupt"}, Optional: true}}}, tr, t.TempDir(), &log); err != nil || !strings.Contains(log.String(), "warning: restore cache go") {
		t.Fatalf("corrupt cache: %v, log %q", err, log.String())
	}
}
