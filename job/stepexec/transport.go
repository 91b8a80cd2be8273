package stepexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

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
	// Timeout bounds one transfer (an archive can be large); 0 means 30
	// minutes.
	Timeout time.Duration
}

func (t URLTransport) do(ctx context.Context, method, key string, body io.Reader, size int64) (*http.Response, context.CancelFunc, error) {
	u, ok := t.URLs[key]
	if !ok {
		return nil, nil, fmt.Errorf("no URL for %s in the plan", key)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: the plan's URL is not valid", key)
	}
	if body != nil {
		req.ContentLength = size
	}
	client := t.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		// The URL carries a signature: name the host, never the URL.
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			err = uerr.Unwrap()
		}
		return nil, nil, fmt.Errorf("%s %s on %s: %w", method, key, req.URL.Host, err)
	}
	return resp, cancel, nil
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
	resp, cancel, err := t.do(ctx, http.MethodPut, key, io.NopCloser(r), size)
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
