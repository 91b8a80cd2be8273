package worker_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// brokenStore fails every write, as a store that is down does.
type brokenStore struct{ blob.Store }

var errDown = errors.New("store is down")

func (brokenStore) Put(context.Context, string, io.Reader, int64, blob.PutOptions) (blob.Info, error) {
	return blob.Info{}, errDown
}

// A worker that cannot record its build in the store exits with
// ExitInternal (4), which no build outcome uses: the Job's pod failure
// policy and a script can tell it from a failed build.
func TestStoreFailureIsExitInternal(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.SkipClone, cfg.Workdir = true, pipelineDir(t, "s:\n  x:\n    container:\n      image: alpine\n      cmds: [true]\n")
	code, st := worker.Run(context.Background(), brokenStore{s}, job.Request{BuildRef: "4"}, localrun.Runner{}, cfg)
	if code != worker.ExitInternal {
		t.Fatalf("exit %d (%+v), want %d", code, st, worker.ExitInternal)
	}
}
