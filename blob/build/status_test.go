package build_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

func TestStatusConditionalWrites(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		if _, _, err := build.ReadStatus(ctx, s, "30"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("read missing status: %v", err)
		}
		etag, err := build.WriteStatus(ctx, s, "30", build.Status{Status: build.Scheduling, Reason: build.ReasonQueued.String()}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := build.WriteStatus(ctx, s, "30", build.Status{Status: build.Running}, ""); !errors.Is(err, blob.ErrPreconditionFailed) {
			t.Fatalf("second create: %v", err)
		}
		st, got, err := build.ReadStatus(ctx, s, "30")
		if err != nil || got != etag || st.Status != build.Scheduling || st.Reason != string(build.ReasonQueued) || st.Ref != "30" || st.CreatedAt.IsZero() {
			t.Fatalf("read = %+v %q %v", st, got, err)
		}
		st.Status = build.Running
		etag2, err := build.WriteStatus(ctx, s, "30", st, etag)
		if err != nil {
			t.Fatal(err)
		}
		st.Status = build.Failed
		if _, err := build.WriteStatus(ctx, s, "30", st, etag); !errors.Is(err, blob.ErrPreconditionFailed) {
			t.Fatalf("write with a stale etag: %v", err)
		}
		if st, cur, _ := build.ReadStatus(ctx, s, "30"); st.Status != build.Running || cur != etag2 {
			t.Fatalf("stale write changed the status: %+v", st)
		}
		if _, err := build.WriteStatus(ctx, s, "30", build.Status{Status: "running"}, etag2); err == nil || !strings.Contains(err.Error(), "Scheduling, Running, Completed, Failed") {
			t.Fatalf("invalid phase accepted or badly explained: %v", err)
		}
	})
}

func TestUpdateStatusConcurrentWritersAllLand(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		if _, err := build.WriteStatus(ctx, s, "31", build.Status{Status: build.Running}, ""); err != nil {
			t.Fatal(err)
		}
		const n = 10
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := build.UpdateStatus(ctx, s, "31", func(st *build.Status) error {
					st.Steps = append(st.Steps, build.StepStatus{Stage: "s", Step: fmt.Sprint(i), Status: build.Completed})
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		st, _, err := build.ReadStatus(ctx, s, "31")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, step := range st.Steps {
			seen[step.Step] = true
		}
		if len(st.Steps) != n || len(seen) != n {
			t.Fatalf("%d step updates stored (%d distinct), want %d: a writer was overwritten", len(st.Steps), len(seen), n)
		}
		// ErrNoChange leaves the document alone.
		_, etag, _ := build.ReadStatus(ctx, s, "31")
		if _, err := build.UpdateStatus(ctx, s, "31", func(*build.Status) error { return build.ErrNoChange }); err != nil {
			t.Fatal(err)
		}
		if _, etag2, _ := build.ReadStatus(ctx, s, "31"); etag2 != etag {
			t.Fatal("ErrNoChange rewrote the document")
		}
	})
}

func TestArtifacts(t *testing.T) {
	eachStore(t, func(t *testing.T, s blob.Store) {
		ctx := testCtx(t)
		files := map[string]string{"app.tar.gz": "binary", "test/results.trx": "<TestRun/>", "report.json": `{"ok":true}`}
		for name, body := range files {
			if _, err := build.PutArtifact(ctx, s, "32", name, strings.NewReader(body), int64(len(body)), ""); err != nil {
				t.Fatal(err)
			}
		}
		list, err := build.ListArtifacts(ctx, s, "32")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range list {
			names = append(names, a.Name)
			if a.Size != int64(len(files[a.Name])) {
				t.Fatalf("%s: size %d", a.Name, a.Size)
			}
		}
		if strings.Join(names, ",") != "app.tar.gz,report.json,test/results.trx" {
			t.Fatalf("artifacts = %v", names)
		}
		rc, a, err := build.GetArtifact(ctx, s, "32", "report.json")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != files["report.json"] || a.ContentType != "application/json" {
			t.Fatalf("get = %q type %q", b, a.ContentType)
		}
		if _, err := build.PutArtifact(ctx, s, "32", "../escape", strings.NewReader("x"), 1, ""); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("artifact name with ..: %v", err)
		}
		if _, _, err := build.GetArtifact(ctx, s, "32", "missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("missing artifact: %v", err)
		}
	})
}
