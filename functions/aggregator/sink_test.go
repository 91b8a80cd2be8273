package aggregator_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
)

func TestWriterSink(t *testing.T) {
	var b strings.Builder
	ws := &aggregator.WriterSink{W: &b}
	ctx := context.Background()
	_ = ws.Lines(ctx, aggregator.Build{Ref: "5"}, []build.Record{{Stage: "build", Step: "go", Text: "ok"}})
	_ = ws.Status(ctx, aggregator.Build{Ref: "5"}, build.Status{Status: build.Failed, Reason: "Cancelled"})
	_ = ws.Artifact(ctx, aggregator.Build{Ref: "5"}, "a.txt", io.NopCloser(strings.NewReader("abc")))
	want := "[5] build/go             | ok\n[5] status Failed (Cancelled)\n[5] artifact a.txt (3 bytes)\n"
	if b.String() != want {
		t.Fatalf("got %q", b.String())
	}
}
