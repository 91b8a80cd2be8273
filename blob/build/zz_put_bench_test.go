package build_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
)

func BenchmarkRawPut(b *testing.B) {
	s := newMinIO(b)
	data := bytes.Repeat([]byte("x"), 256<<10)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(context.Background(), fmt.Sprintf("raw/%010d", i), bytes.NewReader(data), int64(len(data)), blob.PutOptions{IfNoneMatch: true}); err != nil {
			b.Fatal(err)
		}
	}
}
func BenchmarkRawPutParallel(b *testing.B) {
	s := newMinIO(b)
	data := bytes.Repeat([]byte("x"), 256<<10)
	b.SetBytes(int64(len(data)))
	b.SetParallelism(2)
	var n int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("rawp/%p-%d", &n, n)
			_ = k
			if _, err := s.Put(context.Background(), fmt.Sprintf("rawp/%d", randKey()), bytes.NewReader(data), int64(len(data)), blob.PutOptions{IfNoneMatch: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
func randKey() int64 { return rand.Int64() }
