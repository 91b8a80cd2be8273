package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
)

// storeFlags are the store flags dev, logs and status share; they override
// the WHARFJOBS_STORE* environment. Credentials come from the environment
// only, never from a command line.
type storeFlags struct {
	backend, endpoint, bucket, fsRoot *string
}

func addStoreFlags(fl *flag.FlagSet, defaultRoot string) storeFlags {
	return storeFlags{
		backend:  fl.String("store", "", "store backend: fs, minio or s3 (default $WHARFJOBS_STORE or fs)"),
		endpoint: fl.String("endpoint", "", "S3 endpoint host:port for minio and s3 (default $WHARFJOBS_STORE_ENDPOINT)"),
		bucket:   fl.String("bucket", "", "bucket (default $WHARFJOBS_STORE_BUCKET or wharf-builds)"),
		fsRoot:   fl.String("fs-root", "", "directory of the fs store (default $WHARFJOBS_STORE_FS_ROOT or "+defaultRoot+")"),
	}
}

// config reads the store configuration from the environment and applies
// the flags over it.
func (f storeFlags) config() (blob.Config, error) {
	var cfg blob.Config
	if err := envconfig.Process("WHARFJOBS", &cfg); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	for dst, v := range map[*string]string{&cfg.Backend: *f.backend, &cfg.Endpoint: *f.endpoint, &cfg.Bucket: *f.bucket, &cfg.FSRoot: *f.fsRoot} {
		if v != "" {
			*dst = v
		}
	}
	return cfg, nil
}

// open opens the store the environment and the flags name.
func (f storeFlags) open(ctx context.Context) (blob.Store, blob.Config, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, cfg, err
	}
	store, err := backend.Open(ctx, cfg)
	return store, cfg, err
}

// storeEnv renders cfg as the environment of a child worker, which reads
// the same store (credentials included: the worker is ours, not a step).
func storeEnv(cfg blob.Config) []string {
	root, _ := filepath.Abs(cfg.FSRoot)
	return []string{
		"WHARFJOBS_STORE=" + cfg.Backend, "WHARFJOBS_STORE_ENDPOINT=" + cfg.Endpoint, "WHARFJOBS_STORE_BUCKET=" + cfg.Bucket,
		"WHARFJOBS_STORE_REGION=" + cfg.Region, "WHARFJOBS_STORE_ACCESS_KEY=" + cfg.AccessKey, "WHARFJOBS_STORE_SECRET_KEY=" + cfg.SecretKey,
		fmt.Sprintf("WHARFJOBS_STORE_TLS=%v", cfg.TLS), fmt.Sprintf("WHARFJOBS_STORE_PATH_STYLE=%v", cfg.PathStyle),
		fmt.Sprintf("WHARFJOBS_STORE_UNSIGNED_PAYLOAD=%v", cfg.UnsignedPayload), "WHARFJOBS_STORE_FS_ROOT=" + root,
	}
}
