package provisioner_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// Issue #14, HIGH 2: a re-trigger of a queued build used to overwrite
// request.json while the Job's Secret kept the first trigger's git token,
// so a caller could send that token to a URL of its choice.
func TestRetriggerNeverChangesTheBuild(t *testing.T) {
	e := newEnv(t, kube.Config{})
	ctx := context.Background()
	resp, body := e.post(t, "/api/worker", wharfAPIQuery("42"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger: %d %v", resp.StatusCode, body)
	}
	id := body["workerId"].(string)
	first, _, err := blob.ReadAll(ctx, e.store, build.RequestKey("prod-42"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}

	q := wharfAPIQuery("42")
	q.Set("GIT_FULLURL", "https://attacker.example.org/steal.git")
	q.Set("GIT_BRANCH", "other")
	q.Set("VARS", "LOG_LEVEL: debug\nEXTRA: 1\n")
	resp, body = e.post(t, "/api/worker", q)
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("re-trigger with other parameters: %d %v", resp.StatusCode, body)
	}
	var named []string
	for _, p := range body["invalid-params"].([]any) {
		named = append(named, p.(map[string]any)["name"].(string))
	}
	if strings.Join(named, ",") != "GIT_BRANCH,GIT_FULLURL,VARS" {
		t.Fatalf("409 names %v, want GIT_BRANCH, GIT_FULLURL, VARS", named)
	}
	if strings.Contains(body["detail"].(string), "attacker") {
		t.Fatalf("the detail repeats a value: %v", body["detail"])
	}
	after, _, err := blob.ReadAll(ctx, e.store, build.RequestKey("prod-42"), 1<<20)
	if err != nil || string(after) != string(first) {
		t.Fatalf("request.json changed:\n%s\n%s (%v)", first, after, err)
	}

	// The same parameters (another git token, which is never compared)
	// return the build as it is.
	q = wharfAPIQuery("42")
	q.Set("GIT_TOKEN", "another-token")
	resp, body = e.post(t, "/api/worker", q)
	if resp.StatusCode != http.StatusOK || body["workerId"] != id {
		t.Fatalf("same parameters: %d %v", resp.StatusCode, body)
	}
	sec, err := e.cs.CoreV1().Secrets("wharfjobs").Get(ctx, id, metav1.GetOptions{})
	if err != nil || string(sec.Data[kube.GitTokenKey]) != "git-token-secret" {
		t.Fatalf("the build's Secret changed: %v %v", sec.Data, err)
	}

	// A build that ended and whose Job is gone is never started again.
	now := build.Status{Status: build.Completed}
	if _, err := build.UpdateStatus(ctx, e.store, "prod-42", func(st *build.Status) error { st.Status = now.Status; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.cs.BatchV1().Jobs("wharfjobs").Delete(ctx, id, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, body = e.post(t, "/api/worker", wharfAPIQuery("42"))
	if resp.StatusCode != http.StatusOK || body["workerId"] != id || body["status"] != "Completed" {
		t.Fatalf("re-trigger of an ended build: %d %v", resp.StatusCode, body)
	}
	if jobs, _ := e.cs.BatchV1().Jobs("wharfjobs").List(ctx, metav1.ListOptions{}); len(jobs.Items) != 0 {
		t.Fatalf("an ended build was started again: %d jobs", len(jobs.Items))
	}
}

// Issue #14, MEDIUM 5: a password inside GIT_FULLURL was stored verbatim
// in request.json.
func TestURLCredentialsGoToTheSecret(t *testing.T) {
	e := newEnv(t, kube.Config{})
	q := wharfAPIQuery("7")
	q.Del("GIT_TOKEN")
	q.Set("GIT_FULLURL", "https://ci-user:url-pass-s3cret@git.example.org/default/app.git")
	resp, body := e.post(t, "/api/worker", q)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger: %d %v", resp.StatusCode, body)
	}
	raw, _, err := blob.ReadAll(context.Background(), e.store, build.RequestKey("prod-7"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var req job.Request
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "url-pass-s3cret") || req.GitFullURL != "https://ci-user@git.example.org/default/app.git" {
		t.Fatalf("request.json: %s", raw)
	}
	sec, err := e.cs.CoreV1().Secrets("wharfjobs").Get(context.Background(), body["workerId"].(string), metav1.GetOptions{})
	if err != nil || string(sec.Data[kube.GitTokenKey]) != "url-pass-s3cret" {
		t.Fatalf("the URL's password is not the build's git token: %v %v", sec.Data, err)
	}
	if strings.Contains(e.logs.String(), "url-pass-s3cret") {
		t.Fatal("the URL's password reached the log")
	}
}

// Issue #14, LOW 8: a trigger that fails after the request was written
// left the build Scheduling forever.
func TestFailedLaunchEndsTheBuild(t *testing.T) {
	e := newEnv(t, kube.Config{})
	e.cs.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcdserver: request timed out")
	})
	resp, body := e.post(t, "/api/worker", wharfAPIQuery("9"))
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("trigger: %d %v", resp.StatusCode, body)
	}
	ctx := context.Background()
	st, _, err := build.ReadStatus(ctx, e.store, "prod-9")
	if err != nil || st.Status != build.Failed || !build.ReasonLaunchFailed.Of(st.Reason) || st.FinishedAt == nil {
		t.Fatalf("status after a failed launch: %+v %v", st, err)
	}
	rc, err := build.OpenLog(ctx, e.store, "prod-9")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var lines []string
	_ = build.ScanRecords(rc, func(r build.Record) error { lines = append(lines, r.Text); return nil })
	if len(lines) != 1 || !strings.Contains(lines[0], "etcdserver: request timed out") {
		t.Fatalf("log of a failed launch: %q", lines)
	}
}

func TestHTTPHygiene(t *testing.T) {
	e := newEnv(t, kube.Config{})
	for _, c := range []struct {
		name, vars, says string
	}{
		{"infinity", "N: .inf", "not a finite number"},
		{"not a number", "N: .nan", "not a finite number"},
		{"nested", "A: {B: {C: {D: 1}}}", "input A: expected a single value, got a map"},
		{"list value", "A: [1, 2]", "input A: expected a single value, got a list"},
		{"complex key", "? [a, b]\n: 1", "an input name must be a plain name, got a list"},
		{"bad name", "'a b': 1", `input name "a b"`},
		{"control character", "A: \"x\\u0007y\"", "control character"},
		{"null", "~", "got a single value"},
	} {
		q := wharfAPIQuery("11")
		q.Set("VARS", c.vars)
		resp, body := e.post(t, "/api/worker", q)
		detail, _ := body["detail"].(string)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(detail, c.says) {
			t.Errorf("VARS %s: %d %q, want 400 saying %q", c.name, resp.StatusCode, detail, c.says)
		}
	}
	// None of the refused triggers left a build behind.
	if _, err := e.store.Stat(context.Background(), build.StatusKey("prod-11")); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a refused trigger wrote a status: %v", err)
	}
	// A multi-line value is fine in VARS (a password may be a key file).
	q := wharfAPIQuery("12")
	q.Set("VARS", "KEY: \"line1\\nline2\"")
	if resp, body := e.post(t, "/api/worker", q); resp.StatusCode != http.StatusCreated {
		t.Fatalf("multi-line VARS value: %d %v", resp.StatusCode, body)
	}

	// Newlines would forge log lines.
	for _, name := range []string{"GIT_BRANCH", "REPO_NAME", "ENVIRONMENT"} {
		q := wharfAPIQuery("13")
		q.Set(name, "main\n2026-12-02 build 13 completed")
		resp, body := e.post(t, "/api/worker", q)
		params, _ := body["invalid-params"].([]any)
		if resp.StatusCode != http.StatusBadRequest || len(params) == 0 || params[0].(map[string]any)["name"] != name {
			t.Errorf("%s with a newline: %d %v", name, resp.StatusCode, body)
		}
	}

	for _, ref := range []string{"a%00b", strings.Repeat("x", 5000)} {
		resp, body := e.get(t, "/api/build/"+ref+"/status")
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(body["detail"].(string), strings.Repeat("x", 200)) {
			t.Errorf("status of ref %.20q: %d %v", ref, resp.StatusCode, body)
		}
	}

	// A path that needs cleaning is not redirected with the query (the
	// token) in Location.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"//api/worker?"+wharfAPIQuery("14").Encode(), nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
		t.Fatalf("//api/worker: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
