package main

import (
	"context"
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

// addStoreFlags adds the store flags to cl, and blob.Config's settings to
// its --help.
func addStoreFlags(cl cmdLine, defaultRoot string) storeFlags {
	fl := cl.fl
	cl.env(&blob.Config{})
	return storeFlags{
		backend:  fl.String("store", "", "store backend: fs, minio or s3 (default $WHARFJOBS_STORE or fs)"),
		endpoint: fl.String("endpoint", "", "S3 endpoint host:port for minio and s3 (default $WHARFJOBS_STORE_ENDPOINT)"),
		bucket:   fl.String("bucket", "", "bucket (default $WHARFJOBS_STORE_BUCKET or wharf-builds)"),
		fsRoot:   fl.String("fs-root", "", "directory of the fs store (default $WHARFJOBS_STORE_FS_ROOT or "+defaultRoot+")"),
	}
}

// config reads the store configuration from the environment, applies
// the flags over it and validates the result.
func (f storeFlags) config() (blob.Config, error) {
	var cfg blob.Config
	if err := envconfig.Process(envPrefix, &cfg); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	for dst, v := range map[*string]string{&cfg.Backend: *f.backend, &cfg.Endpoint: *f.endpoint, &cfg.Bucket: *f.bucket, &cfg.FSRoot: *f.fsRoot} {
		if v != "" {
			*dst = v
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
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

// storeEnv renders the store configuration dev resolved (the environment
// with the store flags over it) as WHARFJOBS_STORE* variables for its
// local workers: every field of blob.Config, credentials included (a
// worker is ours, not a step), the fs root made absolute. They come after
// dev's own environment in a worker's, so they win over it.
func storeEnv(cfg blob.Config) []string {
	cfg.FSRoot, _ = filepath.Abs(cfg.FSRoot)
	return envAssignments(&cfg)
}
