package provisioner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

const token = "engine-token-123"

type env struct {
	srv    *httptest.Server
	cs     *fake.Clientset
	store  blob.Store
	logs   *bytes.Buffer
	launch *kube.Launcher
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func newEnv(t *testing.T, cfg kube.Config) *env {
	t.Helper()
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset()
	if cfg.Namespace == "" {
		cfg.Namespace = "wharfjobs"
	}
	cfg.Image = "wharfjobs:test"
	l := &kube.Launcher{Client: cs, Config: cfg}
	logs := &syncBuffer{}
	p, err := provisioner.New(l, store, provisioner.Config{Token: token, MaxQueryBytes: 4096}, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &env{srv: srv, cs: cs, store: store, logs: &logs.Buffer, launch: l}
}

// wharfAPIQuery is a trigger's query as wharf-api v5 builds it.
func wharfAPIQuery(ref string) url.Values {
	return url.Values{
		"BUILD_REF": {ref}, "REPO_NAME": {"app"}, "REPO_GROUP": {"Default"}, "REPO_BRANCH": {"main"}, "GIT_BRANCH": {"main"},
		"RUN_STAGES": {"ALL"}, "VARS": {"LOG_LEVEL: debug\nDEPLOY_PASSWORD: hunter2-pw\nREPLICAS: 3\n"},
		"GIT_FULLURL": {"https://git.example.org/default/app.git"}, "GIT_TOKEN": {"git-token-secret"},
		"WHARF_PROJECT_ID": {"17"}, "WHARF_INSTANCE": {"prod"}, "ENVIRONMENT": {"stage"}, "token": {token},
	}
}

// post sends what wharf-api sends: POST, empty body, no Content-Type.
func (e *env) post(t *testing.T, path string, q url.Values) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path+"?"+q.Encode(), nil)
	req.Header.Del("Content-Type")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp, m
}

func (e *env) get(t *testing.T, path string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

func TestTriggerAsWharfAPISendsIt(t *testing.T) {
	e := newEnv(t, kube.Config{})
	resp, body := e.post(t, "/api/worker", wharfAPIQuery("42"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %v", resp.StatusCode, body)
	}
	id, _ := body["workerId"].(string)
	if id == "" || len(id) > 40 || body["name"] != id || body["status"] != "Scheduling" || body["createdAt"] == "" {
		t.Fatalf("answer %v", body)
	}
	ctx := context.Background()
	j, err := e.cs.BatchV1().Jobs("wharfjobs").Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Labels[job.LabelManagedBy] != "wharfjobs" || j.Labels[job.LabelComponent] != "build" || j.Labels[job.LabelBuildRef] != "prod-42" ||
		j.Labels[job.LabelInstance] != "prod" || j.Labels[job.LabelProjectID] != "17" {
		t.Fatalf("job labels %v", j.Labels)
	}
	spec, _ := json.Marshal(j)
	for _, secret := range []string{"git-token-secret", "hunter2-pw", token} {
		if strings.Contains(string(spec), secret) {
			t.Fatalf("the Job spec holds the secret %q", secret)
		}
	}
	sec, err := e.cs.CoreV1().Secrets("wharfjobs").Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[kube.GitTokenKey]) != "git-token-secret" || !strings.Contains(string(sec.Data[kube.VarsKey]), `"DEPLOY_PASSWORD":"hunter2-pw"`) {
		t.Fatalf("secret data %v", sec.Data)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "Job" || sec.OwnerReferences[0].Name != id {
		t.Fatalf("secret owner %v", sec.OwnerReferences)
	}
	st, _, err := build.ReadStatus(ctx, e.store, "prod-42")
	if err != nil || st.Status != build.Scheduling {
		t.Fatalf("status document %+v %v", st, err)
	}
	reqJSON, _, err := blob.ReadAll(ctx, e.store, build.RequestKey("prod-42"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"git-token-secret", "hunter2-pw", token} {
		if strings.Contains(string(reqJSON), secret) {
			t.Fatalf("request.json holds the secret %q: %s", secret, reqJSON)
		}
	}
	if strings.Contains(e.logs.String(), token) || strings.Contains(e.logs.String(), "git-token-secret") {
		t.Fatalf("a secret reached the log: %s", e.logs.String())
	}
	if !strings.Contains(e.logs.String(), `"path":"/api/worker","status":201`) || !strings.Contains(e.logs.String(), `"buildRef":"42"`) {
		t.Fatalf("request not logged: %s", e.logs.String())
	}

	// Again: the same build, 200, still one Job.
	resp, body = e.post(t, "/api/worker", wharfAPIQuery("42"))
	if resp.StatusCode != http.StatusOK || body["workerId"] != id {
		t.Fatalf("repeat: %d %v", resp.StatusCode, body)
	}
	jobs, _ := e.cs.BatchV1().Jobs("wharfjobs").List(ctx, metav1.ListOptions{})
	if len(jobs.Items) != 1 {
		t.Fatalf("%d jobs after a repeated trigger", len(jobs.Items))
	}
	// The Jenkins-shaped URL runs the same handler.
	resp, body = e.post(t, "/generic-webhook-trigger/invoke", wharfAPIQuery("43"))
	if resp.StatusCode/100 != 2 || body["workerId"] == "" {
		t.Fatalf("generic webhook: %d %v", resp.StatusCode, body)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, kube.Config{})
	q := wharfAPIQuery("1")
	q.Del("token")
	resp, body := e.post(t, "/api/worker", q)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body["detail"].(string), "no token") {
		t.Fatalf("no token: %d %v", resp.StatusCode, body)
	}
	q.Set("token", "wrong")
	if resp, _ := e.post(t, "/api/worker", q); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	q.Del("token")
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/worker?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, body := do(t, req); resp.StatusCode != http.StatusCreated {
		t.Fatalf("bearer: %d %v", resp.StatusCode, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s without a token: %v %v", p, resp, err)
		}
	}
	if _, err := provisioner.New(e.launch, e.store, provisioner.Config{}, nil); !errors.Is(err, provisioner.ErrNoToken) {
		t.Fatalf("empty token accepted: %v", err)
	}
	if _, err := provisioner.New(e.launch, e.store, provisioner.Config{InsecureNoAuth: true}, nil); err != nil {
		t.Fatalf("--insecure-no-auth refused: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, kube.Config{})
	cases := []struct {
		set   map[string]string
		param string
		says  string
	}{
		{map[string]string{"BUILD_REF": "abc"}, "BUILD_REF", "is not a positive integer"},
		{map[string]string{"BUILD_REF": ""}, "BUILD_REF", "required"},
		{map[string]string{"GIT_FULLURL": ""}, "GIT_FULLURL", "required"},
		{map[string]string{"GIT_FULLURL": "not a url"}, "GIT_FULLURL", "not a git URL"},
		{map[string]string{"VARS": "- a\n- b"}, "VARS", "expected a YAML map of input names to values, got a list"},
		{map[string]string{"VARS": "{unclosed"}, "VARS", "invalid YAML"},
		{map[string]string{"RUN_STAGES": "build,,deploy"}, "RUN_STAGES", "empty stage name"},
		{map[string]string{"WHARF_PROJECT_ID": "x"}, "WHARF_PROJECT_ID", "not a number"},
	}
	for _, c := range cases {
		q := wharfAPIQuery("5")
		for k, v := range c.set {
			q.Set(k, v)
		}
		resp, body := e.post(t, "/api/worker", q)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%v: status %d %v", c.set, resp.StatusCode, body)
		}
		params, _ := body["invalid-params"].([]any)
		if len(params) == 0 || params[0].(map[string]any)["name"] != c.param || !strings.Contains(body["detail"].(string), c.says) {
			t.Fatalf("%v: problem %v does not name %s with %q", c.set, body, c.param, c.says)
		}
	}
	// An scp-like git URL is fine.
	q := wharfAPIQuery("6")
	q.Set("GIT_FULLURL", "git@git.example.org:default/app.git")
	if resp, body := e.post(t, "/api/worker", q); resp.StatusCode != http.StatusCreated {
		t.Fatalf("scp-like URL: %d %v", resp.StatusCode, body)
	}
	q.Set("VARS", strings.Repeat("x", 5000))
	if resp, _ := e.post(t, "/api/worker", q); resp.StatusCode != http.StatusRequestURITooLong {
		t.Fatalf("oversized query: %d", resp.StatusCode)
	}
}

func TestListGetCancel(t *testing.T) {
	e := newEnv(t, kube.Config{})
	ids := map[string]string{}
	for _, ref := range []string{"1", "2"} {
		_, body := e.post(t, "/api/worker", wharfAPIQuery(ref))
		ids[ref] = body["workerId"].(string)
	}
	q := wharfAPIQuery("3")
	q.Set("WHARF_INSTANCE", "other")
	e.post(t, "/api/worker", q)

	_, body := e.get(t, "/api/worker?WHARF_INSTANCE=prod")
	if body["totalCount"] != float64(2) {
		t.Fatalf("list prod: %v", body)
	}
	_, body = e.get(t, "/api/worker")
	if body["totalCount"] != float64(3) {
		t.Fatalf("list all: %v", body)
	}
	resp, _ := e.get(t, "/api/worker?status=Bogus")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad status filter: %d", resp.StatusCode)
	}
	resp, body = e.get(t, "/api/worker/"+ids["1"])
	if resp.StatusCode != http.StatusOK || body["workerId"] != ids["1"] || body["buildRef"] != "1" {
		t.Fatalf("get: %d %v", resp.StatusCode, body)
	}
	if resp, _ := e.get(t, "/api/worker/wharf-build-nope"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get unknown: %d", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/api/worker/"+ids["1"]+"?token="+token, nil)
	resp, body = do(t, req)
	if resp.StatusCode != http.StatusOK || body["status"] != "Failed" || body["reason"] != "Cancelled" {
		t.Fatalf("cancel: %d %v", resp.StatusCode, body)
	}
	if _, err := e.cs.BatchV1().Jobs("wharfjobs").Get(context.Background(), ids["1"], metav1.GetOptions{}); err == nil {
		t.Fatal("cancelled job still there")
	}
	st, _, _ := build.ReadStatus(context.Background(), e.store, "prod-1")
	if st.Status != build.Failed || st.Reason != string(build.ReasonCancelled) {
		t.Fatalf("status after cancel %+v", st)
	}
	_, body = e.get(t, "/api/worker?status=Scheduling")
	if body["totalCount"] != float64(2) {
		t.Fatalf("filter by status: %v", body)
	}
	req, _ = http.NewRequest(http.MethodDelete, e.srv.URL+"/api/worker/"+ids["1"]+"?token="+token, nil)
	if resp, _ := do(t, req); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("cancel again: %d", resp.StatusCode)
	}
}

func TestQueue(t *testing.T) {
	e := newEnv(t, kube.Config{MaxRunning: 1})
	_, first := e.post(t, "/api/worker", wharfAPIQuery("1"))
	_, second := e.post(t, "/api/worker", wharfAPIQuery("2"))
	_, third := e.post(t, "/api/worker", wharfAPIQuery("3"))
	ctx := context.Background()
	jobs := e.cs.BatchV1().Jobs("wharfjobs")
	j1, _ := jobs.Get(ctx, first["workerId"].(string), metav1.GetOptions{})
	j2, _ := jobs.Get(ctx, second["workerId"].(string), metav1.GetOptions{})
	if *j1.Spec.Suspend || !*j2.Spec.Suspend {
		t.Fatalf("suspend: first %v second %v", *j1.Spec.Suspend, *j2.Spec.Suspend)
	}
	if second["status"] != "Scheduling" || second["reason"] != "Queued" {
		t.Fatalf("queued answer %v", second)
	}
	if released, err := e.launch.ReleaseQueued(ctx); err != nil || len(released) != 0 {
		t.Fatalf("released %v while the first runs: %v", released, err)
	}
	// The first build finishes: the oldest queued one is released, only it.
	j1.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if _, err := jobs.UpdateStatus(ctx, j1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	released, err := e.launch.ReleaseQueued(ctx)
	if err != nil || len(released) != 1 || released[0] != second["workerId"] {
		t.Fatalf("released %v, %v; want the second build (%v) only (third %v)", released, err, second["workerId"], third["workerId"])
	}
	j2, _ = jobs.Get(ctx, second["workerId"].(string), metav1.GetOptions{})
	if *j2.Spec.Suspend {
		t.Fatal("released job still suspended")
	}

	e = newEnv(t, kube.Config{KueueQueue: "builds"})
	_, body := e.post(t, "/api/worker", wharfAPIQuery("9"))
	j, _ := e.cs.BatchV1().Jobs("wharfjobs").Get(ctx, body["workerId"].(string), metav1.GetOptions{})
	if j.Labels[kube.LabelKueueQueue] != "builds" || !*j.Spec.Suspend {
		t.Fatalf("kueue job: labels %v suspend %v", j.Labels, *j.Spec.Suspend)
	}
}

func TestReadyzNeedsTheKubernetesAPI(t *testing.T) {
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := fs.Open(t.TempDir())
	p, err := provisioner.New(&kube.Launcher{Client: cs, Config: kube.Config{RequestTimeout: time.Second}}, store, provisioner.Config{Token: token}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with an unreachable API server: %d", resp.StatusCode)
	}
	if resp, _ := http.Get(srv.URL + "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

func TestBuildLogAndStatusOverHTTP(t *testing.T) {
	e := newEnv(t, kube.Config{})
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, e.store, "77", build.Status{Status: build.Running}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, e.store, "77", build.WriterConfig{SpillDir: t.TempDir(), FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Write(build.Record{Stage: "build", Step: "go", Stream: build.StreamStdout, Line: 1, Time: time.Now(), Text: "first"})
	w.Flush()
	// Follow while the build runs: the response streams until it ends.
	// The second line is written once the follower has read the first.
	followed := make(chan string, 1)
	gotFirst := make(chan struct{})
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/build/77/log?follow=true&token="+token, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			followed <- err.Error()
			return
		}
		defer resp.Body.Close()
		body := bufio.NewReader(resp.Body)
		first, err := body.ReadString('\n')
		if err != nil {
			followed <- first + err.Error()
			return
		}
		close(gotFirst)
		rest, _ := io.ReadAll(body)
		followed <- first + string(rest)
	}()
	select {
	case <-gotFirst:
	case got := <-followed:
		t.Fatalf("follow ended before the build: %q", got)
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not send the first line")
	}
	_ = w.Write(build.Record{Stage: "build", Step: "go", Stream: build.StreamStdout, Line: 2, Time: time.Now(), Text: "second"})
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	build.UpdateStatus(ctx, e.store, "77", func(st *build.Status) error { st.Status = build.Completed; return nil })
	select {
	case got := <-followed:
		if got != "build/go | first\nbuild/go | second\n" {
			t.Fatalf("followed log %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end with the build")
	}
	resp, body := e.get(t, "/api/build/77/status")
	if resp.StatusCode != http.StatusOK || body["status"] != "Completed" {
		t.Fatalf("status: %d %v", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/build/77/log?format=json", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.Header.Get("Content-Type") != "application/x-ndjson" || strings.Count(string(b), "\n") != 2 || !strings.Contains(string(b), `"text":"second"`) {
		t.Fatalf("json log %q", b)
	}
	if resp, _ := e.get(t, "/api/build/nope/log"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown build log: %d", resp.StatusCode)
	}
	if resp, _ := http.Get(e.srv.URL + "/api/build/77/log"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("log without a token: %d", resp.StatusCode)
	}
}
