package minio_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

var srv *miniotest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = miniotest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := minio.Open(context.Background(), srv.Config(blob.BackendMinIO, miniotest.BucketName("conf")))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformanceUnsignedPayload(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		cfg := srv.Config(blob.BackendMinIO, miniotest.BucketName("unsigned"))
		cfg.UnsignedPayload = true
		s, err := minio.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	cfg := srv.Config(blob.BackendMinIO, miniotest.BucketName("err"))
	cfg.SecretKey = "wrong-secret-value"
	_, err := minio.Open(ctx, cfg)
	if !errors.Is(err, blob.ErrAccessDenied) {
		t.Fatalf("wrong secret: %v, want ErrAccessDenied", err)
	}
	if strings.Contains(err.Error(), cfg.SecretKey) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("error leaks the secret: %v", err)
	}
	if !strings.Contains(err.Error(), "WHARFJOBS_STORE_SECRET_KEY") {
		t.Fatalf("error does not say what to check: %v", err)
	}

	cfg = srv.Config(blob.BackendMinIO, miniotest.BucketName("err"))
	cfg.Endpoint = "127.0.0.1:1" // nothing listens on port 1
	cfg.Timeout = 3 * time.Second
	_, err = minio.Open(ctx, cfg)
	if !errors.Is(err, blob.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable endpoint: %v, want ErrUnreachable naming the endpoint", err)
	}

	cfg = srv.Config(blob.BackendMinIO, miniotest.BucketName("err"))
	cfg.CreateBucket = false
	_, err = minio.Open(ctx, cfg)
	if !errors.Is(err, blob.ErrNotFound) || !strings.Contains(err.Error(), "WHARFJOBS_STORE_CREATE_BUCKET") {
		t.Fatalf("missing bucket without create: %v", err)
	}

	cfg = srv.Config(blob.BackendMinIO, "")
	cfg.Endpoint = ""
	if _, err = minio.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_STORE_ENDPOINT") {
		t.Fatalf("empty endpoint: %v", err)
	}
}
