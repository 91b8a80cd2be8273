package blobtest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Presigner is a store that hands out pre-signed URLs (minio, s3).
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Presign checks that a pre-signed PUT URL stores an object with no
// credentials but the URL, a pre-signed GET URL reads it back, and a GET
// URL of a missing object answers 404 (a cache not saved yet).
func Presign(t *testing.T, s blob.Store) {
	t.Helper()
	ps, ok := s.(Presigner)
	if !ok {
		t.Fatalf("%T cannot pre-sign URLs", s)
	}
	ctx := context.Background()
	body := []byte("an archive a step uploads")
	put, err := ps.PresignPut(ctx, "builds/1/steps/b/s/artifacts.tar.zst", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, put, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT to the pre-signed URL: %s", resp.Status)
	}
	rc, _, err := s.Get(ctx, "builds/1/steps/b/s/artifacts.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("stored %q", got)
	}
	get, err := ps.PresignGet(ctx, "cache/_/1/none.tar.zst", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of a missing object: %s, want 404", resp.Status)
	}
	if _, err := ps.PresignPut(ctx, "../escape", time.Minute); err == nil || !strings.Contains(err.Error(), "..") {
		t.Fatalf("pre-signing an invalid key: %v", err)
	}
}
