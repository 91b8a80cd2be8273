package blob_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/fs"
)

// A Store on a local directory (blob/minio and blob/s3 behave the same):
// a create-only put, a conditional replace, a read and a listing.
func Example() {
	dir, _ := os.MkdirTemp("", "blob-example-*")
	defer os.RemoveAll(dir)
	s, err := fs.Open(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()

	put := func(key, body string, opts blob.PutOptions) (blob.Info, error) {
		return s.Put(ctx, key, strings.NewReader(body), int64(len(body)), opts)
	}
	// Create-only: the second writer learns that it lost.
	first, _ := put("builds/42/relay/lease", "replica-a", blob.PutOptions{IfNoneMatch: true})
	_, err = put("builds/42/relay/lease", "replica-b", blob.PutOptions{IfNoneMatch: true})
	fmt.Println("second create:", errors.Is(err, blob.ErrPreconditionFailed))
	// Replace only what was read: If-Match on the ETag.
	_, err = put("builds/42/relay/lease", "replica-a renewed", blob.PutOptions{IfMatch: first.ETag})
	fmt.Println("renew:", err)

	body, _, _ := blob.ReadAll(ctx, s, "builds/42/relay/lease", 1<<10)
	fmt.Println("lease:", string(body))

	_, _ = put("builds/42/status.json", "{}", blob.PutOptions{})
	_, _ = put("builds/43/status.json", "{}", blob.PutOptions{})
	_ = blob.ListAll(ctx, s, blob.ListOptions{Prefix: "builds/", Delimited: true}, func(info blob.Info) error {
		fmt.Println("build:", info.Key)
		return nil
	})
	// Output:
	// second create: true
	// renew: <nil>
	// lease: replica-a renewed
	// build: builds/42/
	// build: builds/43/
}
