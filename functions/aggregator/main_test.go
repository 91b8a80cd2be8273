package aggregator_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
)

var srv *miniotest.Server

func TestMain(m *testing.M) { miniotest.Main(m, &srv) }

func newMinIO(t testing.TB) blob.Store { return srv.Store(t, blob.BackendMinIO, "agg") }

var quiet = slog.New(slog.DiscardHandler)

// writeBuild writes a finished build the way a worker does: lines through
// the chunk writer, then the final status.
func writeBuild(t testing.TB, s blob.Store, ref string, lines int, final build.Phase, artifacts map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := build.WriteStatus(ctx, s, ref, build.Status{Status: build.Running}, ""); err != nil {
		t.Fatal(err)
	}
	w, err := build.NewLogWriter(ctx, s, ref, build.WriterConfig{ChunkSize: 2 << 10, MaxObjectSize: 2 << 10, FlushInterval: time.Hour, SpillDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= lines; i++ {
		_ = w.Write(build.Record{Stage: "s", Step: "x", Stream: build.StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for name, body := range artifacts {
		if _, err := build.PutArtifact(ctx, s, ref, name, strings.NewReader(body), int64(len(body)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if final != "" {
		if _, err := build.UpdateStatus(ctx, s, ref, func(st *build.Status) error { st.Status = final; return nil }); err != nil {
			t.Fatal(err)
		}
	}
}
