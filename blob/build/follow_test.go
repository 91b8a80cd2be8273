package build

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/fs"
)

// A follower that has read some chunks when the build ends, is compacted
// and its chunks are deleted (the aggregator does that after the final
// relay) must read the rest from the compacted log. It used to list the
// chunks after the last one it read, find none, and stop: the end of the
// log was lost to `wharfjobs logs --follow` and to dev --demo (seen as a
// flaky TestDevDemo).
func TestFollowReadsTheRestAfterTheChunksAreDeleted(t *testing.T) {
	ctx := context.Background()
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const ref = "77"
	if _, err := WriteStatus(ctx, s, ref, Status{Status: Running}, ""); err != nil {
		t.Fatal(err)
	}
	write := func(from, to int) {
		t.Helper()
		w, err := NewLogWriter(ctx, s, ref, WriterConfig{FlushInterval: time.Hour, SpillDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i <= to; i++ {
			if err := w.Write(Record{Stage: "s", Step: "x", Stream: StreamStdout, Line: uint64(i), Time: time.Now(), Text: fmt.Sprintf("line %d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 3) // chunk 1
	var got []string
	ended := false
	st, err := Follow(ctx, s, ref, time.Millisecond, func(r Record) error {
		got = append(got, r.Text)
		if !ended && r.Text == "line 3" {
			// While the follower waits between two polls: the rest of the
			// log, the final status, compaction, the chunks deleted.
			ended = true
			write(4, 6)
			write(7, 9)
			if _, err := UpdateStatus(ctx, s, ref, func(st *Status) error { st.Status = Completed; return nil }); err != nil {
				return err
			}
			if _, err := Compact(ctx, s, ref); err != nil {
				return err
			}
			if err := DeleteAllChunks(ctx, s, ref); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || st.Status != Completed {
		t.Fatalf("Follow: %+v %v", st, err)
	}
	if len(got) != 9 || got[8] != "line 9" {
		t.Fatalf("followed %d lines: %q", len(got), got)
	}
}
