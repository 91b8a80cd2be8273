package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
)

// cacheExpiryRule is the ID of the lifecycle rule on the cache prefix.
const cacheExpiryRule = "wharfjobs-cache-expiry"

// expirer is a store that can expire objects by prefix (MinIO).
type expirer interface {
	ExpireAfter(ctx context.Context, id, prefix string, days int) error
}

// runStoreSetup prepares the store once per installation: the bucket, and
// the lifecycle rule that expires old caches.
func runStoreSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFlags("store-setup", "[--cache-expire-days N] [store flags]", "Prepares the store once per installation (the bucket Job of manifests/ runs it):\ncreates the bucket, and sets the lifecycle rule that deletes cache archives\n(cache/...) N days after they were saved.", stdout, stderr)
	fl := cl.fl
	days := fl.Int("cache-expire-days", 30, "days a cache archive is kept after it was saved; 0 leaves the rule alone")
	sf := addStoreFlags(cl, ".wharfjobs/store")
	if _, err := cl.parse(args, 0, 0); err != nil {
		return err
	}
	if *days < 0 {
		return fmt.Errorf("--cache-expire-days %d: expected 0 or more", *days)
	}
	cfg, err := sf.config()
	if err != nil {
		return err
	}
	cfg.CreateBucket = true
	store, err := backend.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store %s is ready\n", cfg.Where())
	if *days == 0 {
		return nil
	}
	ex, ok := store.(expirer)
	if !ok {
		fmt.Fprintf(stderr, "the %s store has no lifecycle rules: remove old caches under %s yourself\n", cfg.Backend, build.CacheRoot)
		return nil
	}
	if err := ex.ExpireAfter(ctx, cacheExpiryRule, build.CacheRoot, *days); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "caches under %s expire %d days after they were saved (lifecycle rule %s)\n", build.CacheRoot, *days, cacheExpiryRule)
	return nil
}
