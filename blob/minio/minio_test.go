package minio_test

import (
	"context"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

var srv *miniotest.Server

func TestMain(m *testing.M) { miniotest.Main(m, &srv) }

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return srv.Store(t, blob.BackendMinIO, "conf") })
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
	blobtest.OpenErrors(t, srv.Config(blob.BackendMinIO, miniotest.BucketName("err")), func(ctx context.Context, cfg blob.Config) error {
		_, err := minio.Open(ctx, cfg)
		return err
	})
	cfg := srv.Config(blob.BackendMinIO, "")
	cfg.Endpoint = ""
	if _, err := minio.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_STORE_ENDPOINT") {
		t.Fatalf("empty endpoint: %v", err)
	}
}

func TestPresign(t *testing.T) { blobtest.Presign(t, srv.Store(t, blob.BackendMinIO, "presign")) }
