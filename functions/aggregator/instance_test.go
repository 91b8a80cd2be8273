package aggregator_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/job"
)

// Issue #14, MEDIUM 4: an aggregator with WHARF_INSTANCE=team-a relayed
// team-b-42's lines and status to team-a's wharf-api as its build 42.
func TestRelaysOnlyItsOwnInstance(t *testing.T) {
	ctx := context.Background()
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{} // ref -> instance
	for _, inst := range []string{"team-a", "team-b", "", "Team_A", "team-a-1"} {
		req := job.Request{Instance: inst, BuildRef: "42", GitFullURL: "https://g/x.git"}
		ref := req.Ref()
		refs[ref] = inst
		body, err := req.MarshalPublic()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, build.RequestKey(ref), bytes.NewReader(body), int64(len(body)), blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		writeBuild(t, s, ref, 3, build.Completed, nil)
	}
	for _, inst := range []string{"team-a", "", "Team_A"} {
		sink := aggregatortest.NewMemorySink()
		a := aggregator.New(s, sink, nil, aggregator.Config{WharfInstance: inst, Logger: quiet})
		pending, err := a.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		own := job.Request{Instance: inst, BuildRef: "42"}.Ref()
		if len(pending) != 1 || pending[0] != own {
			t.Errorf("aggregator of %q finds %v, want only %s", inst, pending, own)
		}
		if err := a.Once(ctx); err != nil {
			t.Fatal(err)
		}
		for ref, owner := range refs {
			lines, statuses, _ := sink.Received(ref)
			if owner == inst && (len(lines) != 3 || len(statuses) == 0) {
				t.Errorf("aggregator of %q did not relay its build %s: %d lines", inst, ref, len(lines))
			}
			if owner != inst && (len(lines) != 0 || len(statuses) != 0) {
				t.Errorf("aggregator of %q relayed %s (instance %q): %d lines, %d statuses", inst, ref, owner, len(lines), len(statuses))
			}
			// A change notification for another instance's build is refused
			// too, not only discovery.
			if err := a.Relay(ctx, ref); owner != inst && !errors.Is(err, aggregator.ErrOtherInstance) {
				t.Errorf("Relay(%s) by the aggregator of %q: %v, want ErrOtherInstance", ref, inst, err)
			}
		}
	}
}
