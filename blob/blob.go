// Package blob defines the object store that holds every byte of build data
// (requests, status documents, log chunks, artifacts, relay cursors and
// leases) and the errors its implementations share.
//
// The interface is deliberately the small subset of S3 that the build data
// layout needs, so that a local directory (blob/fs), MinIO (blob/minio) and
// any S3 service (blob/s3) behave the same. The conformance suite in
// blob/blobtest pins that behaviour down.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Implementations wrap them so callers test with errors.Is.
var (
	// ErrNotFound means the key (or the bucket) does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed means a conditional put lost: the key already
	// existed for a create-only put, or its ETag no longer matched.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrUnreachable means the store's endpoint could not be reached at all
	// (DNS, connection refused, timeout), as opposed to answering with an error.
	ErrUnreachable = errors.New("store unreachable")
	// ErrAccessDenied means the store answered but rejected the credentials
	// or the permissions of the caller.
	ErrAccessDenied = errors.New("store access denied")
	// ErrInvalidKey means a key is empty, too long or has a forbidden shape.
	ErrInvalidKey = errors.New("invalid key")
)

// Info describes one stored object, or a common prefix in a delimited list.
type Info struct {
	Key         string
	Size        int64
	ETag        string // unquoted; equal ETags mean equal content
	ContentType string
	ModTime     time.Time
	// IsPrefix is set for a common prefix returned by a delimited list; only
	// Key is meaningful then and it ends in the delimiter.
	IsPrefix bool
}

// PutOptions are the optional parts of a put.
type PutOptions struct {
	// ContentType is stored with the object; empty means
	// application/octet-stream.
	ContentType string
	// IfNoneMatch makes the put create-only (If-None-Match: *): it fails with
	// ErrPreconditionFailed when the key exists.
	IfNoneMatch bool
	// IfMatch makes the put replace the object only when its current ETag
	// equals this value (If-Match); a missing object fails the put with
	// ErrPreconditionFailed as well.
	IfMatch string
}

// ListOptions select a page of keys.
type ListOptions struct {
	// Prefix restricts the listing to keys that start with it.
	Prefix string
	// After starts the listing at the first key strictly greater than it.
	After string
	// Limit caps the page; zero means DefaultListLimit. To read the next
	// page, set After to NextAfter of the last entry.
	Limit int
	// Delimited collapses keys that contain a "/" after the prefix into one
	// entry per common prefix (IsPrefix set), like S3's Delimiter=/.
	Delimited bool
}

// DefaultListLimit is the page size when ListOptions.Limit is zero. It matches
// S3's own maximum page.
const DefaultListLimit = 1000

// MaxKeyLen is S3's limit on a key's length in bytes.
const MaxKeyLen = 1024

// Store is the object store. Keys are "/"-separated paths and sort in byte
// order. Every method honours the context's deadline and cancellation.
type Store interface {
	// Put stores r under key. size is the exact length of r, or -1 when it is
	// unknown (implementations may then buffer). It returns the new object's
	// Info (at least Key, Size and ETag).
	Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (Info, error)
	// Get opens the object for reading. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat returns the object's Info without its content.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns up to opts.Limit entries in ascending key order. A page
	// shorter than the limit is the last one; to continue, pass the last
	// returned entry through NextAfter as opts.After.
	List(ctx context.Context, opts ListOptions) ([]Info, error)
	// Delete removes the object. Deleting a missing key is not an error,
	// as in S3.
	Delete(ctx context.Context, key string) error
}

// ValidateKey checks the key rules every backend enforces, so a key that
// works on the local directory works on S3 and the other way round.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidKey, key)
	case strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/"):
		return fmt.Errorf("%w: %q starts or ends with /", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has an empty, . or .. segment", ErrInvalidKey, key)
		}
	}
	if strings.ContainsAny(key, "\x00\\") {
		return fmt.Errorf("%w: %q contains NUL or backslash", ErrInvalidKey, key)
	}
	return nil
}

// ListAll pages through every entry matching opts and calls fn for each, in
// order. It stops early, returning nil, when fn returns ErrStop.
func ListAll(ctx context.Context, s Store, opts ListOptions, fn func(Info) error) error {
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	opts.Limit = limit
	for {
		page, err := s.List(ctx, opts)
		if err != nil {
			return err
		}
		for _, info := range page {
			if err := fn(info); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if len(page) < limit {
			return nil
		}
		opts.After = NextAfter(page[len(page)-1])
	}
}

// NextAfter is the ListOptions.After value that continues a listing after
// info. For a common prefix it skips every key under that prefix, which the
// prefix's own key would not.
func NextAfter(info Info) string {
	if info.IsPrefix {
		return info.Key + string(utf8.MaxRune)
	}
	return info.Key
}

// ErrStop ends ListAll early without an error.
var ErrStop = errors.New("stop listing")

// ReadAll gets a whole (small) object, refusing anything larger than max
// bytes so a corrupt or hostile object cannot exhaust memory.
func ReadAll(ctx context.Context, s Store, key string, max int64) ([]byte, Info, error) {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, Info{}, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(b)) > max {
		return nil, Info{}, fmt.Errorf("read %s: larger than %d bytes", key, max)
	}
	return b, info, nil
}
