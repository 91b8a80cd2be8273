package build_test

import (
	"testing"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

func TestReasonWith(t *testing.T) {
	if got := build.ReasonStepFailed.With("build/compile exit 2"); got != "StepFailed: build/compile exit 2" {
		t.Errorf("With = %q", got)
	}
	if got := build.ReasonTimeout.With(""); got != "Timeout" {
		t.Errorf("With(\"\") = %q", got)
	}
	if got := build.ReasonInvalidPipeline.Withf("%d problem(s)", 2); got != "InvalidPipeline: 2 problem(s)" {
		t.Errorf("Withf = %q", got)
	}
	for s, want := range map[string]bool{"Evicted": true, "Evicted: low memory": true, "EvictedX": false, "Evicted:": false, "": false} {
		if build.ReasonEvicted.Of(s) != want {
			t.Errorf("ReasonEvicted.Of(%q) = %v", s, !want)
		}
	}
}
