package minio_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/minio"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

// TestWatchStreamsCreatedKeys checks that MinIO's notification stream
// reaches Watch: each key written under the prefix arrives, none from
// outside it.
func TestWatchStreamsCreatedKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := minio.Open(ctx, srv.Config(blob.BackendMinIO, miniotest.BucketName("watch")))
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string) {
		t.Helper()
		if _, err := st.Put(ctx, key, strings.NewReader("x"), 1, blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu         sync.Mutex
		streamErrs []error
	)
	keys := st.Watch(ctx, "builds/", func(err error) {
		mu.Lock()
		defer mu.Unlock()
		streamErrs = append(streamErrs, err)
	})

	// The stream subscribes asynchronously; write until the first key shows
	// up so the test does not depend on how long that takes.
	first := time.Now()
	var got string
	for got == "" {
		put("builds/warmup")
		select {
		case got = <-keys:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("no notification within 30 s of the first PUT; stream errors: %v", streamErrs)
		}
	}
	t.Logf("stream delivering %v after the first PUT", time.Since(first).Round(time.Millisecond))
	for len(keys) > 0 {
		<-keys // the warm-up PUTs' further events
	}

	put("other/ignored")
	// Notifications are at least once: a key seen twice is fine, a key
	// outside the prefix or one never seen is not.
	want := map[string]bool{}
	for i := range 20 {
		k := fmt.Sprintf("builds/b1/logs/%06d", i)
		want[k] = true
		start := time.Now()
		put(k)
		for want[k] {
			select {
			case k2 := <-keys:
				if !strings.HasPrefix(k2, "builds/") {
					t.Fatalf("key %q from outside the watched prefix", k2)
				}
				delete(want, k2)
			case <-ctx.Done():
				t.Fatalf("key %q never notified", k)
			}
		}
		if i == 19 {
			t.Logf("last key notified %v after its PUT returned", time.Since(start).Round(time.Microsecond))
		}
	}
	if len(want) != 0 {
		t.Fatalf("keys never notified: %v", want)
	}
}
