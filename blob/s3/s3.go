// Package s3 is the blob.Store on aws-sdk-go-v2, for AWS S3 and other S3
// services. It needs a service that honours conditional writes (If-Match and
// If-None-Match on PutObject), as AWS S3 and MinIO do.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/wharfjobs/wharfjobs/blob"
)

// memSpoolLimit is the largest body of unknown length or without Seek that
// Put buffers in memory; larger ones go through a temporary file. The SDK
// signs the payload, which needs a body it can read twice.
const memSpoolLimit = 8 << 20

// Store is a blob.Store on one S3 bucket.
type Store struct {
	client  *s3.Client
	bucket  string
	timeout time.Duration
	where   string
}

var _ blob.Store = (*Store)(nil)

// Open builds the client, checks the bucket (creating it when
// cfg.CreateBucket allows) and returns the store.
func Open(ctx context.Context, cfg blob.Config) (*Store, error) {
	where := cfg.Where()
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	httpClient := &http.Client{Transport: blob.HTTPTransport(timeout)}
	var awsCfg aws.Config
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		awsCfg = aws.Config{
			Region:      cfg.Region,
			Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
			HTTPClient:  httpClient,
		}
	} else {
		var err error
		awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region), awsconfig.WithHTTPClient(httpClient))
		if err != nil {
			return nil, fmt.Errorf("%s: load AWS default credentials: %w", where, err)
		}
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(endpointURL(cfg.Endpoint, cfg.TLS))
		}
		// Checksums only where the API requires them: many S3 services
		// reject the SDK's default trailing checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.RetryMaxAttempts = 3
	})
	s := &Store{client: client, bucket: cfg.Bucket, timeout: timeout, where: where}
	if err := s.ensureBucket(ctx, cfg.CreateBucket, cfg.Region); err != nil {
		return nil, err
	}
	return s, nil
}

func endpointURL(ep string, tls bool) string {
	if strings.Contains(ep, "://") {
		return ep
	}
	if tls {
		return "https://" + ep
	}
	return "http://" + ep
}

func (s *Store) ensureBucket(ctx context.Context, create bool, region string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	err = describe(s.where, "check bucket", err)
	if !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if !create {
		return fmt.Errorf("%s: bucket does not exist and WHARFJOBS_STORE_CREATE_BUCKET is false: %w", s.where, blob.ErrNotFound)
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	if region != "" && region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(region)}
	}
	if _, err := s.client.CreateBucket(ctx, in); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return describe(s.where, "create bucket", err)
	}
	return nil
}

// describe maps an SDK error onto the blob sentinels and names the store.
func describe(where, op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w", where, op, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NoSuchBucket", "NotFound":
			return fmt.Errorf("%s: %s: %w", where, op, blob.ErrNotFound)
		case "PreconditionFailed", "ConditionalRequestConflict":
			// A conflict is S3's answer to the loser of two concurrent
			// conditional writes: it lost, like a failed precondition.
			return fmt.Errorf("%s: %s: %w", where, op, blob.ErrPreconditionFailed)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("%s: %s: credentials rejected (%s); check WHARFJOBS_STORE_ACCESS_KEY and WHARFJOBS_STORE_SECRET_KEY: %w",
				where, op, apiErr.ErrorCode(), blob.ErrAccessDenied)
		}
		return fmt.Errorf("%s: %s: %w", where, op, err)
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) {
		return fmt.Errorf("%s: %s: endpoint unreachable: %w: %v", where, op, blob.ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %s: %w", where, op, err)
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, opts blob.PutOptions) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	body, n, cleanup, err := seekable(r, size)
	if err != nil {
		return blob.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer cleanup()
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(n),
		ContentType:   aws.String(ct),
	}
	if opts.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(`"` + opts.IfMatch + `"`)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		err = describe(s.where, "put "+key, err)
		if opts.IfMatch != "" && errors.Is(err, blob.ErrNotFound) {
			return blob.Info{}, fmt.Errorf("put %s if-match: object missing: %w", key, blob.ErrPreconditionFailed)
		}
		return blob.Info{}, err
	}
	return blob.Info{Key: key, Size: n, ETag: strings.Trim(aws.ToString(out.ETag), `"`), ContentType: ct, ModTime: time.Now()}, nil
}

// seekable returns r as an io.ReadSeeker of known length, buffering it in
// memory or a temporary file when it is not one already.
func seekable(r io.Reader, size int64) (io.ReadSeeker, int64, func(), error) {
	noop := func() {}
	if rs, ok := r.(io.ReadSeeker); ok && size >= 0 {
		return rs, size, noop, nil
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, memSpoolLimit+1))
	if err != nil {
		return nil, 0, noop, err
	}
	if n <= memSpoolLimit {
		if size >= 0 && n != size {
			return nil, 0, noop, fmt.Errorf("read %d bytes, expected size %d", n, size)
		}
		return bytes.NewReader(buf.Bytes()), n, noop, nil
	}
	f, err := os.CreateTemp("", "wharfjobs-put-*")
	if err != nil {
		return nil, 0, noop, err
	}
	cleanup := func() { _ = f.Close(); _ = os.Remove(f.Name()) }
	total, err := io.Copy(f, io.MultiReader(&buf, r))
	if err == nil && size >= 0 && total != size {
		err = fmt.Errorf("read %d bytes, expected size %d", total, size)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, noop, err
	}
	return f, total, cleanup, nil
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, blob.Info{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, blob.Info{}, describe(s.where, "get "+key, err)
	}
	return out.Body, blob.Info{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ETag:        strings.Trim(aws.ToString(out.ETag), `"`),
		ContentType: aws.ToString(out.ContentType),
		ModTime:     aws.ToTime(out.LastModified),
	}, nil
}

// Stat implements blob.Store.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := blob.ValidateKey(key); err != nil {
		return blob.Info{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return blob.Info{}, describe(s.where, "stat "+key, err)
	}
	return blob.Info{
		Key:         key,
		Size:        aws.ToInt64(out.ContentLength),
		ETag:        strings.Trim(aws.ToString(out.ETag), `"`),
		ContentType: aws.ToString(out.ContentType),
		ModTime:     aws.ToTime(out.LastModified),
	}, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		if err = describe(s.where, "delete "+key, err); errors.Is(err, blob.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// List implements blob.Store.
func (s *Store) List(ctx context.Context, opts blob.ListOptions) ([]blob.Info, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = blob.DefaultListLimit
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(opts.Prefix),
		MaxKeys: aws.Int32(int32(min(limit, blob.DefaultListLimit))),
	}
	if opts.After != "" {
		in.StartAfter = aws.String(opts.After)
	}
	if opts.Delimited {
		in.Delimiter = aws.String("/")
	}
	var out []blob.Info
	for len(out) < limit {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, describe(s.where, fmt.Sprintf("list %q", opts.Prefix), err)
		}
		for _, o := range page.Contents {
			out = append(out, blob.Info{
				Key:     aws.ToString(o.Key),
				Size:    aws.ToInt64(o.Size),
				ETag:    strings.Trim(aws.ToString(o.ETag), `"`),
				ModTime: aws.ToTime(o.LastModified),
			})
		}
		for _, p := range page.CommonPrefixes {
			k := aws.ToString(p.Prefix)
			// Some services repeat the prefix that After points into.
			if k > opts.After && !strings.HasPrefix(opts.After, k) {
				out = append(out, blob.Info{Key: k, IsPrefix: true})
			}
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			break
		}
		in.ContinuationToken = page.NextContinuationToken
		in.StartAfter = nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// PresignGet returns a URL that allows a GET of key without credentials
// until ttl passes.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	req, err := s3.NewPresignClient(s.client).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", describe(s.where, "presign "+key, err)
	}
	return req.URL, nil
}

// PresignPut returns a URL that allows one PUT of key without credentials
// until ttl passes: a step pod uploads its archive with it.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", err
	}
	req, err := s3.NewPresignClient(s.client).PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", describe(s.where, "presign "+key, err)
	}
	return req.URL, nil
}
