package blobtest

import (
	"context"
	"io"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Discard is a store that keeps nothing: a LogWriter over it costs what
// the path to the store costs, without a store (benchmarks of the code
// in front of one).
type Discard struct{}

// Put reads the body and forgets it.
func (Discard) Put(_ context.Context, key string, r io.Reader, _ int64, _ blob.PutOptions) (blob.Info, error) {
	n, err := io.Copy(io.Discard, r)
	return blob.Info{Key: key, Size: n, ETag: "-"}, err
}

// Get finds nothing.
func (Discard) Get(context.Context, string) (io.ReadCloser, blob.Info, error) {
	return nil, blob.Info{}, blob.ErrNotFound
}

// Stat finds nothing.
func (Discard) Stat(context.Context, string) (blob.Info, error) { return blob.Info{}, blob.ErrNotFound }

// List lists nothing.
func (Discard) List(context.Context, blob.ListOptions) ([]blob.Info, error) { return nil, nil }

// Delete deletes nothing.
func (Discard) Delete(context.Context, string) error { return nil }
