package s3_test

import (
	"context"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/blobtest"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	s3 "github.com/wharfjobs/wharfjobs/blob/s3"
)

var srv *miniotest.Server

func TestMain(m *testing.M) { miniotest.Main(m, &srv) }

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return srv.Store(t, blob.BackendS3, "conf") })
}

func TestOpenErrors(t *testing.T) {
	blobtest.OpenErrors(t, srv.Config(blob.BackendS3, miniotest.BucketName("err")), func(ctx context.Context, cfg blob.Config) error {
		_, err := s3.Open(ctx, cfg)
		return err
	})
}

func TestPresign(t *testing.T) { blobtest.Presign(t, srv.Store(t, blob.BackendS3, "presign")) }
