// Package backend opens the blob.Store that a blob.Config names. It is the
// only package that knows every backend, so the others import just blob.
package backend

import (
	"context"
	"fmt"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/s3"
)

// Open returns the store cfg.Backend selects, ready to use: the bucket
// exists (or was created) and the credentials were accepted.
func Open(ctx context.Context, cfg blob.Config) (blob.Store, error) {
	switch cfg.Backend {
	case blob.BackendFS, "":
		return fs.Open(cfg.FSRoot)
	case blob.BackendMinIO:
		return minio.Open(ctx, cfg)
	case blob.BackendS3:
		return s3.Open(ctx, cfg)
	}
	return nil, fmt.Errorf("WHARFJOBS_STORE=%q: expected one of fs, minio, s3", cfg.Backend)
}
