package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
)

// StoreTransport reaches a Plan's objects in a blob store directly: the
// local runner, whose steps run in the worker's own trust domain.
type StoreTransport struct{ Store blob.Store }

// Get implements Transport.
func (t StoreTransport) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, _, err := t.Store.Get(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return rc, err
}

// Put implements Transport.
func (t StoreTransport) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	_, err := t.Store.Put(ctx, key, r, size, blob.PutOptions{ContentType: "application/zstd"})
	return err
}

// URLTransport reaches a Plan's objects through its pre-signed URLs: a
// step Pod, which holds no store credentials.
type URLTransport struct {
	URLs   map[string]string
	Client *http.Client
	// Timeout bounds one transfer (an archive can be large), its retries
	// included; 0 means 30 minutes.
	Timeout time.Duration
	// Attempts is how often a request that failed on the way (a refused
	// or reset connection, a DNS miss, an HTTP 5xx or 429 from a busy
	// store) is tried in all; 0 means DefaultAttempts. A PUT whose body
	// cannot be rewound is tried once.
	Attempts int
	// Retry spaces the attempts; the zero Policy is DefaultRetry.
	Retry backoff.Policy
}

// DefaultAttempts is a URLTransport's number of tries when it sets none:
// with DefaultRetry, 9 to 18 s of waiting between them, longer than a
// store's usual brief refusals and than a lost DNS answer.
const DefaultAttempts = 8

// DefaultRetry is the backoff between a URLTransport's attempts.
var DefaultRetry = backoff.Policy{Min: 250 * time.Millisecond, Max: 5 * time.Second}

// retryable reports whether a response status is worth another attempt:
// the store was busy or failed, not the request.
func retryable(code int) bool {
	return code == http.StatusTooManyRequests || code/100 == 5
}

// do sends the request for key and returns the response of the last
// attempt; the caller closes its body, then cancels.
func (t URLTransport) do(ctx context.Context, method, key string, body io.Reader, size int64) (*http.Response, context.CancelFunc, error) {
	u, ok := t.URLs[key]
	if !ok {
		return nil, nil, fmt.Errorf("no URL for %s in the plan", key)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	attempts := t.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	policy := t.Retry
	if policy == (backoff.Policy{}) {
		policy = DefaultRetry
	}
	seeker, rewindable := body.(io.Seeker)
	if body != nil && !rewindable {
		attempts = 1
	}
	client := t.Client
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := policy.Sleep(ctx, attempt-1); err != nil {
				cancel()
				return nil, nil, fmt.Errorf("%s %s: %w", method, key, err)
			}
			if rewindable {
				if _, err := seeker.Seek(0, io.SeekStart); err != nil {
					cancel()
					return nil, nil, fmt.Errorf("%s %s: rewind for another attempt: %w", method, key, err)
				}
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("%s: the plan's URL is not valid", key)
		}
		switch {
		case body != nil && size == 0:
			req.Body = http.NoBody // else a zero length reads as unknown: chunked
		case body != nil:
			// The client must not close the caller's body between attempts.
			req.Body, req.ContentLength = io.NopCloser(body), size
		}
		resp, err := client.Do(req)
		last := attempt+1 >= attempts || ctx.Err() != nil
		if err != nil {
			if last {
				cancel()
				// The URL carries a signature: name the host, never the URL.
				var uerr interface{ Unwrap() error }
				if errors.As(err, &uerr) {
					err = uerr.Unwrap()
				}
				return nil, nil, fmt.Errorf("%s %s on %s (attempt %d): %w", method, key, req.URL.Host, attempt+1, err)
			}
			continue
		}
		if !last && retryable(resp.StatusCode) {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			continue
		}
		return resp, cancel, nil
	}
}

// Get implements Transport.
func (t URLTransport) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	resp, cancel, err := t.do(ctx, http.MethodGet, key, nil, 0)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: HTTP %s", key, resp.Status)
	}
	return &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, nil
}

// Put implements Transport.
func (t URLTransport) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	resp, cancel, err := t.do(ctx, http.MethodPut, key, r, size)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: HTTP %s", key, resp.Status)
	}
	return nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
