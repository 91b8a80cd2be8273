// Package blobtest is the conformance suite every blob.Store passes: the
// same cases, run against the local directory and against a real MinIO
// through both S3 clients, so the backends cannot drift apart.
package blobtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Run runs every case. newStore returns an empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGetRoundTrip", testPutGet},
		{"UnknownSize", testUnknownSize},
		{"LargeObject", testLarge},
		{"ETagStable", testETagStable},
		{"Missing", testMissing},
		{"CreateOnly", testCreateOnly},
		{"IfMatch", testIfMatch},
		{"CreateOnlyRace", testCreateOnlyRace},
		{"IfMatchRace", testIfMatchRace},
		{"ListOrderAndPaging", testList},
		{"ListDelimited", testListDelimited},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"CancelledContext", testCancelled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, s blob.Store, key, body string, opts blob.PutOptions) (blob.Info, error) {
	t.Helper()
	return s.Put(ctx(t), key, strings.NewReader(body), int64(len(body)), opts)
}

func mustPut(t *testing.T, s blob.Store, key, body string) blob.Info {
	t.Helper()
	info, err := put(t, s, key, body, blob.PutOptions{})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

func get(t *testing.T, s blob.Store, key string) (string, blob.Info) {
	t.Helper()
	rc, info, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b), info
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func testPutGet(t *testing.T, s blob.Store) {
	body := `{"status":"Running"}`
	info, err := put(t, s, "builds/1/status.json", body, blob.PutOptions{ContentType: "application/json"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "builds/1/status.json" || info.Size != int64(len(body)) || info.ETag == "" {
		t.Fatalf("put info = %+v", info)
	}
	got, ginfo := get(t, s, "builds/1/status.json")
	if got != body {
		t.Fatalf("get = %q, want %q", got, body)
	}
	if ginfo.ETag != info.ETag || ginfo.Size != int64(len(body)) || ginfo.ContentType != "application/json" {
		t.Fatalf("get info = %+v, put info = %+v", ginfo, info)
	}
	st, err := s.Stat(ctx(t), "builds/1/status.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != info.ETag || st.Size != info.Size || st.ContentType != "application/json" {
		t.Fatalf("stat = %+v, put = %+v", st, info)
	}
	if st.ModTime.IsZero() {
		t.Fatal("stat has no modification time")
	}
	// Overwrite without a condition replaces.
	mustPut(t, s, "builds/1/status.json", "v2")
	if got, _ := get(t, s, "builds/1/status.json"); got != "v2" {
		t.Fatalf("after overwrite get = %q", got)
	}
}

func testUnknownSize(t *testing.T, s blob.Store) {
	body := strings.Repeat("line\n", 1000)
	// io.MultiReader hides Seek and Len, like a pipe.
	info, err := s.Put(ctx(t), "u/obj", io.MultiReader(strings.NewReader(body)), -1, blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(body)) {
		t.Fatalf("size = %d, want %d", info.Size, len(body))
	}
	if got, _ := get(t, s, "u/obj"); got != body {
		t.Fatal("content differs")
	}
	_, err = s.Put(ctx(t), "u/short", strings.NewReader("abc"), 10, blob.PutOptions{})
	if err == nil {
		t.Fatal("put with a size larger than the body succeeded")
	}
}

func testLarge(t *testing.T, s blob.Store) {
	b := bytes.Repeat([]byte("0123456789abcdef"), 6<<16) // 6 MiB
	info, err := s.Put(ctx(t), "big/obj", bytes.NewReader(b), int64(len(b)), blob.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, ginfo := get(t, s, "big/obj")
	if got != string(b) {
		t.Fatal("large object content differs")
	}
	if ginfo.Size != int64(len(b)) || info.Size != int64(len(b)) {
		t.Fatalf("sizes: put %d get %d want %d", info.Size, ginfo.Size, len(b))
	}
}

func testETagStable(t *testing.T, s blob.Store) {
	a := mustPut(t, s, "e/1", "same")
	b := mustPut(t, s, "e/2", "same")
	c := mustPut(t, s, "e/1", "same")
	d := mustPut(t, s, "e/3", "different")
	if a.ETag != b.ETag || a.ETag != c.ETag {
		t.Fatalf("equal content, different ETags: %q %q %q", a.ETag, b.ETag, c.ETag)
	}
	if a.ETag == d.ETag {
		t.Fatalf("different content, same ETag %q", a.ETag)
	}
	if a.ETag != md5hex("same") {
		t.Fatalf("ETag = %q, want the content's MD5 %q", a.ETag, md5hex("same"))
	}
	st, err := s.Stat(ctx(t), "e/1")
	if err != nil || st.ETag != a.ETag {
		t.Fatalf("stat etag %q, %v; want %q", st.ETag, err, a.ETag)
	}
}

func testMissing(t *testing.T, s blob.Store) {
	if _, _, err := s.Get(ctx(t), "no/such/key"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx(t), "no/such/key"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat missing: %v, want ErrNotFound", err)
	}
	page, err := s.List(ctx(t), blob.ListOptions{Prefix: "no/"})
	if err != nil || len(page) != 0 {
		t.Fatalf("list of missing prefix = %v, %v", page, err)
	}
}

func testCreateOnly(t *testing.T, s blob.Store) {
	if _, err := put(t, s, "c/lease", "first", blob.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatalf("first create-only put: %v", err)
	}
	_, err := put(t, s, "c/lease", "second", blob.PutOptions{IfNoneMatch: true})
	if !errors.Is(err, blob.ErrPreconditionFailed) {
		t.Fatalf("second create-only put: %v, want ErrPreconditionFailed", err)
	}
	if got, _ := get(t, s, "c/lease"); got != "first" {
		t.Fatalf("content = %q, the failed put changed it", got)
	}
}

func testIfMatch(t *testing.T, s blob.Store) {
	v1 := mustPut(t, s, "m/cursor", "v1")
	v2, err := put(t, s, "m/cursor", "v2", blob.PutOptions{IfMatch: v1.ETag})
	if err != nil {
		t.Fatalf("if-match with the current etag: %v", err)
	}
	_, err = put(t, s, "m/cursor", "v3", blob.PutOptions{IfMatch: v1.ETag})
	if !errors.Is(err, blob.ErrPreconditionFailed) {
		t.Fatalf("if-match with a stale etag: %v, want ErrPreconditionFailed", err)
	}
	if got, info := get(t, s, "m/cursor"); got != "v2" || info.ETag != v2.ETag {
		t.Fatalf("content = %q etag %q, want v2 %q", got, info.ETag, v2.ETag)
	}
	_, err = put(t, s, "m/missing", "x", blob.PutOptions{IfMatch: v2.ETag})
	if !errors.Is(err, blob.ErrPreconditionFailed) {
		t.Fatalf("if-match on a missing key: %v, want ErrPreconditionFailed", err)
	}
	if _, err := s.Stat(ctx(t), "m/missing"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("failed if-match created the key: %v", err)
	}
}

func testCreateOnlyRace(t *testing.T, s blob.Store) {
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf("writer %d", i)
			_, errs[i] = s.Put(ctx(t), "race/lease", strings.NewReader(body), int64(len(body)), blob.PutOptions{IfNoneMatch: true})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both won a create-only put", winner, i)
			}
			winner = i
		case !errors.Is(err, blob.ErrPreconditionFailed):
			t.Fatalf("writer %d: %v, want success or ErrPreconditionFailed", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	if got, _ := get(t, s, "race/lease"); got != fmt.Sprintf("writer %d", winner) {
		t.Fatalf("content %q is not the winner's (%d)", got, winner)
	}
}

func testIfMatchRace(t *testing.T, s blob.Store) {
	base := mustPut(t, s, "race/cursor", "base")
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf("writer %d", i)
			_, errs[i] = s.Put(ctx(t), "race/cursor", strings.NewReader(body), int64(len(body)), blob.PutOptions{IfMatch: base.ETag})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		if err == nil {
			wins++
		} else if !errors.Is(err, blob.ErrPreconditionFailed) {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d writers won an if-match put on the same etag, want exactly 1", wins)
	}
}

func keysOf(page []blob.Info) []string {
	out := make([]string, len(page))
	for i, p := range page {
		out[i] = p.Key
	}
	return out
}

func testList(t *testing.T, s blob.Store) {
	// "p/a-c" sorts before "p/a/b" ('-' < '/'): listing must follow key
	// order, not directory order.
	keys := []string{"p/a/b", "p/a-c", "p/b", "p/log/0000000001", "p/log/0000000002", "p/log/0000000010", "q/x"}
	for _, k := range keys {
		mustPut(t, s, k, k)
	}
	page, err := s.List(ctx(t), blob.ListOptions{Prefix: "p/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p/a-c", "p/a/b", "p/b", "p/log/0000000001", "p/log/0000000002", "p/log/0000000010"}
	if got := keysOf(page); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("list p/ = %v, want %v", got, want)
	}
	for _, p := range page {
		if p.ETag != md5hex(p.Key) || p.Size != int64(len(p.Key)) {
			t.Fatalf("list entry %+v lacks etag or size", p)
		}
	}
	page, err = s.List(ctx(t), blob.ListOptions{Prefix: "p/log/", After: "p/log/0000000001"})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(page); strings.Join(got, ",") != "p/log/0000000002,p/log/0000000010" {
		t.Fatalf("list after = %v", got)
	}
	// Paging with a limit visits every key once, in order.
	var all []string
	err = blob.ListAll(ctx(t), s, blob.ListOptions{Prefix: "p/", Limit: 2}, func(i blob.Info) error {
		all = append(all, i.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Fatalf("paged listing = %v, want %v", all, want)
	}
	page, err = s.List(ctx(t), blob.ListOptions{Prefix: "p/", Limit: 3})
	if err != nil || len(page) != 3 {
		t.Fatalf("limit 3 gave %d entries, %v", len(page), err)
	}
	// A partial-segment prefix matches like a string prefix.
	page, err = s.List(ctx(t), blob.ListOptions{Prefix: "p/a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(page); strings.Join(got, ",") != "p/a-c,p/a/b" {
		t.Fatalf("list p/a = %v", got)
	}
}

func testListDelimited(t *testing.T, s blob.Store) {
	for _, k := range []string{"builds/1/status.json", "builds/1/log/0000000001", "builds/10/status.json", "builds/2/status.json", "builds/readme"} {
		mustPut(t, s, k, "x")
	}
	page, err := s.List(ctx(t), blob.ListOptions{Prefix: "builds/", Delimited: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "builds/1/,builds/10/,builds/2/,builds/readme"
	if got := strings.Join(keysOf(page), ","); got != want {
		t.Fatalf("delimited list = %s, want %s", got, want)
	}
	for _, p := range page {
		if p.IsPrefix != strings.HasSuffix(p.Key, "/") {
			t.Fatalf("entry %q IsPrefix=%v", p.Key, p.IsPrefix)
		}
	}
	var all []string
	err = blob.ListAll(ctx(t), s, blob.ListOptions{Prefix: "builds/", Delimited: true, Limit: 1}, func(i blob.Info) error {
		all = append(all, i.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(all, ","); got != want {
		t.Fatalf("paged delimited list = %s, want %s", got, want)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	mustPut(t, s, "d/a/1", "1")
	mustPut(t, s, "d/b", "2")
	if err := s.Delete(ctx(t), "d/a/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx(t), "d/a/1"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if err := s.Delete(ctx(t), "d/a/1"); err != nil {
		t.Fatalf("deleting a missing key: %v, want nil", err)
	}
	page, err := s.List(ctx(t), blob.ListOptions{Prefix: "d/", Delimited: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(page), ","); got != "d/b" {
		t.Fatalf("list after delete = %s, want d/b", got)
	}
	// A deleted key can be created again, create-only.
	if _, err := put(t, s, "d/a/1", "again", blob.PutOptions{IfNoneMatch: true}); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	for _, k := range []string{"", "/abs", "trailing/", "a//b", "a/../b", "./a", strings.Repeat("k", blob.MaxKeyLen+1), "bad\xffutf8"} {
		if _, err := put(t, s, k, "x", blob.PutOptions{}); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
		}
	}
}

func testCancelled(t *testing.T, s blob.Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(c, "x/y", strings.NewReader("z"), 1, blob.PutOptions{}); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	if _, err := s.Stat(ctx(t), "x/y"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("cancelled put left an object: %v", err)
	}
}

// OpenErrors checks that opening a remote store says which problem it met:
// refused credentials (without leaking the secret), an unreachable
// endpoint (naming it), a missing bucket it may not create. good is a
// working configuration; open is the backend's Open.
func OpenErrors(t *testing.T, good blob.Config, open func(context.Context, blob.Config) error) {
	ctx := context.Background()
	cfg := good
	cfg.SecretKey = "wrong-secret-value"
	err := open(ctx, cfg)
	if !errors.Is(err, blob.ErrAccessDenied) {
		t.Fatalf("wrong secret: %v, want ErrAccessDenied", err)
	}
	if strings.Contains(err.Error(), cfg.SecretKey) || strings.Contains(err.Error(), good.SecretKey) {
		t.Fatalf("error leaks the secret: %v", err)
	}
	if !strings.Contains(err.Error(), "WHARFJOBS_STORE_SECRET_KEY") {
		t.Fatalf("error does not say what to check: %v", err)
	}
	cfg = good
	cfg.Endpoint = "127.0.0.1:1" // nothing listens on port 1
	cfg.Timeout = 3 * time.Second
	err = open(ctx, cfg)
	if !errors.Is(err, blob.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable endpoint: %v, want ErrUnreachable naming the endpoint", err)
	}
	cfg = good
	cfg.CreateBucket = false
	err = open(ctx, cfg)
	if !errors.Is(err, blob.ErrNotFound) || !strings.Contains(err.Error(), "WHARFJOBS_STORE_CREATE_BUCKET") {
		t.Fatalf("missing bucket without create: %v", err)
	}
}
