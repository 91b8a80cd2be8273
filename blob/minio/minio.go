// Package minio is the blob.Store on minio-go, the in-cluster default.
package minio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Store is a blob.Store on one MinIO (or S3-compatible) bucket.
type Store struct {
	client   *minio.Client
	bucket   string
	timeout  time.Duration
	where    string
	unsigned bool
}

var _ blob.Store = (*Store)(nil)

// Open connects to cfg.Endpoint, checks the bucket (creating it when
// cfg.CreateBucket allows) and returns the store. Its errors say whether the
// endpoint was unreachable (blob.ErrUnreachable) or the credentials were
// refused (blob.ErrAccessDenied).
func Open(ctx context.Context, cfg blob.Config) (*Store, error) {
	where := cfg.Where()
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("%s: WHARFJOBS_STORE_ENDPOINT is empty, expected host:port of the MinIO API", where)
	}
	endpoint, secure := splitEndpoint(cfg.Endpoint, cfg.TLS)
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    blob.HTTPTransport(cfg.Timeout),
		// Our own callers retry with backoff; minio-go's default of ten
		// attempts would hide an outage from them for a long time.
		MaxRetries: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s := &Store{client: client, bucket: cfg.Bucket, timeout: cfg.Timeout, where: where, unsigned: cfg.UnsignedPayload}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	if err := s.ensureBucket(ctx, cfg.CreateBucket, cfg.Region); err != nil {
		return nil, err
	}
	return s, nil
}

// Client exposes the minio-go client for MinIO-only features (bucket
// notifications).
func (s *Store) Client() *minio.Client { return s.client }

// Bucket is the bucket the store uses.
func (s *Store) Bucket() string { return s.bucket }

func (s *Store) ensureBucket(ctx context.Context, create bool, region string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return describe(s.where, "check bucket", err)
	}
	if ok {
		return nil
	}
	if !create {
		return fmt.Errorf("%s: bucket does not exist and WHARFJOBS_STORE_CREATE_BUCKET is false: %w", s.where, blob.ErrNotFound)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil {
		code := minio.ToErrorResponse(err).Code
		if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil // another replica created it first
		}
		return describe(s.where, "create bucket", err)
	}
	return nil
}

// splitEndpoint accepts host:port or a URL; a URL's scheme decides TLS.
func splitEndpoint(ep string, tls bool) (string, bool) {
	switch {
	case strings.HasPrefix(ep, "https://"):
		return strings.TrimSuffix(strings.TrimPrefix(ep, "https://"), "/"), true
	case strings.HasPrefix(ep, "http://"):
		return strings.TrimSuffix(strings.TrimPrefix(ep, "http://"), "/"), false
	}
	return ep, tls
}

// describe turns a minio-go error into one that names the store and wraps
// the matching sentinel.
func describe(where, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w", where, op, err)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return fmt.Errorf("%s: %s: %w", where, op, blob.ErrNotFound)
	case "PreconditionFailed":
		return fmt.Errorf("%s: %s: %w", where, op, blob.ErrPreconditionFailed)
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("%s: %s: credentials rejected (%s); check WHARFJOBS_STORE_ACCESS_KEY and WHARFJOBS_STORE_SECRET_KEY: %w",
			where, op, resp.Code, blob.ErrAccessDenied)
	}
	if resp.StatusCode == http.StatusPreconditionFailed {
		return fmt.Errorf("%s: %s: %w", where, op, blob.ErrPreconditionFailed)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %s: %w", where, op, blob.ErrNotFound)
	}
	if resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s: %s: %w (%s)", where, op, blob.ErrAccessDenied, resp.Message)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || (errors.As(err, &netErr) && netErr.Timeout()) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%s: %s: endpoint unreachable: %w: %v", where, op, blob.ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %s: %w", where, op, err)
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	conditional := opts.IfNoneMatch || opts.IfMatch != ""
	if size < 0 && conditional {
		// Without a size minio-go uploads in parts, and a condition only
		// holds for the final part's commit; refuse rather than half-check.
		return blob.Info{}, fmt.Errorf("put %s: a conditional put needs a known size", key)
	}
	po := minio.PutObjectOptions{ContentType: opts.ContentType}
	if po.ContentType == "" {
		po.ContentType = "application/octet-stream"
	}
	// The request itself stays signed; only the body's SHA-256 is skipped.
	po.DisableContentSha256 = s.unsigned
	if opts.IfNoneMatch {
		po.SetMatchETagExcept("*")
	}
	if opts.IfMatch != "" {
		po.SetMatchETag(opts.IfMatch)
	}
	// Large objects (a compacted log) go up in parts, each buffered in
	// memory: keep parts at S3's 5 MiB minimum unless the 10000-part limit
	// needs more, so compacting a big log does not add 16 MiB or more to a
	// worker's memory.
	const minPart, maxParts = 5 << 20, 9000
	switch {
	case size < 0:
		po.PartSize = 16 << 20
	case size > minPart:
		po.PartSize = uint64(max(minPart, (size+maxParts-1)/maxParts))
	}
	// A put streams its body, so only the wait for the answer is bounded
	// (the transport's response header timeout), not the whole transfer.
	up, err := s.client.PutObject(ctx, s.bucket, key, r, size, po)
	if err != nil {
		err = describe(s.where, "put "+key, err)
		if opts.IfMatch != "" && errors.Is(err, blob.ErrNotFound) {
			return blob.Info{}, fmt.Errorf("put %s if-match: object missing: %w", key, blob.ErrPreconditionFailed)
		}
		return blob.Info{}, err
	}
	return blob.Info{Key: key, Size: up.Size, ETag: up.ETag, ContentType: po.ContentType, ModTime: up.LastModified}, nil
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	// One GET for both the body and its Info: minio-go's Object type stats
	// first and then reads with If-Match, which fails when the object is
	// replaced in between (a status document under concurrent updates).
	rc, oi, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, blob.Info{}, describe(s.where, "get "+key, err)
	}
	oi.Key = key
	return rc, toInfo(oi), nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, describe(s.where, "stat "+key, err)
	}
	return toInfo(oi), nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err = describe(s.where, "delete "+key, err); errors.Is(err, blob.ErrNotFound) {
		return nil
	}
	return err
}

// List implements blob.Store. It pages with the S3 ListObjectsV2 call
// itself rather than minio-go's channel iterator, because the iterator
// yields a page's objects before its common prefixes and hides where pages
// end, which breaks a cut at the limit.
func (s *Store) List(ctx context.Context, opts blob.ListOptions) ([]blob.Info, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = blob.DefaultListLimit
	}
	delimiter := ""
	if opts.Delimited {
		delimiter = "/"
	}
	core := minio.Core{Client: s.client}
	var out []blob.Info
	token, after := "", opts.After
	for len(out) < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Core takes no context; the transport's timeouts bound the call.
		page, err := core.ListObjectsV2(s.bucket, opts.Prefix, after, token, delimiter, min(limit, blob.DefaultListLimit))
		if err != nil {
			return nil, describe(s.where, fmt.Sprintf("list %q", opts.Prefix), err)
		}
		for _, oi := range page.Contents {
			out = append(out, toInfo(oi))
		}
		for _, p := range page.CommonPrefixes {
			// MinIO may repeat the prefix that After points into; S3 skips it.
			if p.Prefix > opts.After && !strings.HasPrefix(opts.After, p.Prefix) {
				out = append(out, blob.Info{Key: p.Prefix, IsPrefix: true})
			}
		}
		if !page.IsTruncated || page.NextContinuationToken == "" {
			break
		}
		token, after = page.NextContinuationToken, ""
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func toInfo(oi minio.ObjectInfo) blob.Info {
	return blob.Info{
		Key:         oi.Key,
		Size:        oi.Size,
		ETag:        strings.Trim(oi.ETag, `"`),
		ContentType: oi.ContentType,
		ModTime:     oi.LastModified,
		IsPrefix:    strings.HasSuffix(oi.Key, "/"),
	}
}

// PresignGet returns a URL that allows a GET of key without credentials
// until ttl passes.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, ttl, nil)
	if err != nil {
		return "", describe(s.where, "presign "+key, err)
	}
	return u.String(), nil
}

// PresignPut returns a URL that allows one PUT of key without credentials
// until ttl passes: a step pod uploads its archive with it.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	u, err := s.client.PresignedPutObject(ctx, s.bucket, key, ttl)
	if err != nil {
		return "", describe(s.where, "presign "+key, err)
	}
	return u.String(), nil
}

// Watch streams the keys of objects created under prefix, from MinIO's
// bucket notification stream (a MinIO extension to S3), so a reader can
// react within milliseconds instead of at its next poll. The channel closes
// when ctx ends. Errors of the stream are reported once each on errs and
// minio-go reconnects with backoff and jitter; pollers stay the safety net.
func (s *Store) Watch(ctx context.Context, prefix string, errs func(error)) <-chan string {
	out := make(chan string, 256)
	go func() {
		defer close(out)
		for info := range s.client.ListenBucketNotification(ctx, s.bucket, prefix, "", []string{"s3:ObjectCreated:*"}) {
			if info.Err != nil {
				if errs != nil && ctx.Err() == nil {
					errs(describe(s.where, "bucket notifications", info.Err))
				}
				continue
			}
			for _, rec := range info.Records {
				key, err := url.QueryUnescape(rec.S3.Object.Key)
				if err != nil {
					key = rec.S3.Object.Key
				}
				select {
				case out <- key:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// ExpireAfter sets the bucket's lifecycle rule that deletes objects below
// prefix days after they were written (MinIO applies it in the
// background). It replaces the bucket's rules that have the same ID and
// keeps the others.
func (s *Store) ExpireAfter(ctx context.Context, id, prefix string, days int) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		var resp minio.ErrorResponse
		if !errors.As(err, &resp) || resp.Code != "NoSuchLifecycleConfiguration" {
			return describe(s.where, "read the lifecycle rules", err)
		}
		cfg = lifecycle.NewConfiguration()
	}
	rules := cfg.Rules[:0]
	for _, r := range cfg.Rules {
		if r.ID != id {
			rules = append(rules, r)
		}
	}
	cfg.Rules = append(rules, lifecycle.Rule{
		ID:         id,
		Status:     "Enabled",
		RuleFilter: lifecycle.Filter{Prefix: prefix},
		Expiration: lifecycle.Expiration{Days: lifecycle.ExpirationDays(days)},
	})
	if err := s.client.SetBucketLifecycle(ctx, s.bucket, cfg); err != nil {
		return describe(s.where, "set the lifecycle rule "+id, err)
	}
	return nil
}

// Expiry returns the days after which the lifecycle rule id deletes
// objects, or 0 when the bucket has no such rule.
func (s *Store) Expiry(ctx context.Context, id string) (int, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cfg, err := s.client.GetBucketLifecycle(ctx, s.bucket)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.Code == "NoSuchLifecycleConfiguration" {
			return 0, nil
		}
		return 0, describe(s.where, "read the lifecycle rules", err)
	}
	for _, r := range cfg.Rules {
		if r.ID == id {
			return int(r.Expiration.Days), nil
		}
	}
	return 0, nil
}
