package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/internal/wharfapitest"
)

func apiJSON(t *testing.T, method, url string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
}

// TestDevRelaysToARealWharfAPI: a real wharf-api v5 (SQLite) whose
// execution engine is wharfjobs dev (provisioner, local workers, a real
// MinIO, the aggregator with the wharfapi sink). A project's build started
// in wharf-api gets its log lines (each once), its status and an artifact.
func TestDevRelaysToARealWharfAPI(t *testing.T) {
	srv, err := miniotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	devPort := freePort(t)
	api, err := wharfapitest.Start(wharfapitest.Engine{URL: "http://127.0.0.1:" + devPort + "/api/worker", Token: "engine-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()

	t.Setenv("WHARFJOBS_TEST_MAIN", "1")
	t.Setenv("PORT", devPort)
	t.Setenv("WHARFJOBS_TOKEN", "engine-token")
	t.Setenv("WHARFJOBS_WHARF_API_URL", api.URL)
	t.Setenv("WHARFJOBS_STORE_ACCESS_KEY", srv.AccessKey)
	t.Setenv("WHARFJOBS_STORE_SECRET_KEY", srv.SecretKey)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	devCtx, stopDev := context.WithCancel(ctx)
	// Locked: the test reads them while dev writes them.
	out, errb := &testenv.Buffer{}, &testenv.Buffer{}
	bucket := miniotest.BucketName("wharfapi")
	storeArgs := []string{"--store", "minio", "--endpoint", srv.Endpoint, "--bucket", bucket}
	done := make(chan int, 1)
	go func() {
		done <- run(devCtx, append([]string{"dev", "--state", t.TempDir()}, storeArgs...), out, errb)
	}()
	defer func() {
		stopDev()
		<-done
	}()

	repo := filepath.Join(t.TempDir(), "repo")
	if err := makeDemoRepo(repo); err != nil {
		t.Fatal(err)
	}
	files, wantTests, err := wharfapitest.FilesRepo("alpine")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(repo, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCommit(t, repo)

	var project struct {
		ProjectID uint `json:"projectId"`
	}
	apiJSON(t, http.MethodPost, api.URL+"/api/project", map[string]any{
		"name": "demo", "groupName": "wharfjobs", "gitUrl": "file://" + repo, "buildDefinition": files[".wharf-ci.yml"],
	}, &project)
	// The provisioner must be up before wharf-api triggers it.
	if err := testenv.WaitHTTP(ctx, &http.Client{Timeout: time.Second}, "http://127.0.0.1:"+devPort+"/healthz", "", 10*time.Second); err != nil {
		t.Fatalf("dev did not start: %v\n%s", err, errb.String())
	}
	// Several builds at once: wharf-api on SQLite fails some of the
	// parallel log streams ("database is locked") after inserting part of
	// them; the relay must retry without losing or doubling a line.
	const builds = 4
	var refs []string
	for range builds {
		var started struct {
			BuildRef string `json:"buildRef"`
		}
		apiJSON(t, http.MethodPost, fmt.Sprintf("%s/api/project/%d/build?branch=main", api.URL, project.ProjectID), map[string]any{}, &started)
		if started.BuildRef == "" || started.BuildRef == "0" {
			t.Fatalf("wharf-api started build %q", started.BuildRef)
		}
		refs = append(refs, started.BuildRef)
	}

	for _, ref := range refs {
		var b struct {
			Status   string `json:"status"`
			WorkerID string `json:"workerId"`
		}
		err := testenv.WaitFor(ctx, 3*time.Minute, 200*time.Millisecond, func() error {
			apiJSON(t, http.MethodGet, fmt.Sprintf("%s/api/build/%s", api.URL, ref), nil, &b)
			if b.Status != "Completed" && b.Status != "Failed" {
				return fmt.Errorf("build %s is %q", ref, b.Status)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("build %s is %q in wharf-api: %v\ndev: %s\n%s\nwharf-api: %s", ref, b.Status, err, out.String(), errb.String(), api.Log())
		}
		if b.Status != "Completed" || !strings.HasPrefix(b.WorkerID, "wharf-build-") {
			t.Fatalf("wharf-api has build %s as %+v\n%s", ref, b, out.String())
		}

		// The status went out after every line, so all lines are there now.
		var logs []struct {
			Message   string    `json:"message"`
			Timestamp time.Time `json:"timestamp"`
		}
		apiJSON(t, http.MethodGet, fmt.Sprintf("%s/api/build/%s/log", api.URL, ref), nil, &logs)
		count := map[string]int{}
		for _, l := range logs {
			count[l.Message]++
			if l.Timestamp.IsZero() {
				t.Errorf("build %s: line %q has no timestamp", ref, l.Message)
			}
		}
		// The sink prefixes step lines with their step: wharf-api has one
		// log per build, and steps of a stage run in parallel.
		bad := 0
		for i := 1; i <= 2000; i++ {
			if n := count[fmt.Sprintf("[build/lines] line %d", i)]; n != 1 {
				bad++
				if bad < 5 {
					t.Errorf("build %s: wharf-api has %q %d times, want once", ref, fmt.Sprintf("[build/lines] line %d", i), n)
				}
			}
		}
		if bad > 0 {
			t.Errorf("build %s: %d of 2000 lines not exactly once (%d lines in all)", ref, bad, len(logs))
		}
		if count["[build/wait] starting"] != 1 {
			t.Errorf("build %s: wharf-api lacks the first step's line; it has %d lines", ref, len(logs))
		}
	}
	if n := strings.Count(errb.String(), "database is locked"); n > 0 {
		t.Logf("wharf-api refused %d deliveries with \"database is locked\"; all were retried", n)
	}

	// The artifacts and test results of every build, each once, before
	// its final status: the files with their bytes, and the counts.
	for _, ref := range refs {
		if err := api.Client().CheckFiles(ref, wantTests); err != nil {
			t.Error(err)
		}
	}
}
