package aggregator_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
)

func TestMetrics(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	writeBuild(t, s, "m", 20, build.Completed, nil)
	writeBuild(t, s, "r", 5, "", nil) // still running: its lease stays held
	sink := aggregatortest.NewMemorySink()
	failed := false
	sink.Fail = func(b aggregator.Build, what string) error {
		if b.Ref == "m" && what == "lines" && !failed {
			failed = true
			return errors.New("sink down")
		}
		return nil
	}
	a := aggregator.New(s, sink, nil, aggregator.Config{RetryMin: time.Millisecond, RetryMax: time.Millisecond, Logger: quiet})
	if err := a.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"wharfjobs_relay_lines_total 25\n",
		"wharfjobs_relay_batches_total 2\n",
		"wharfjobs_relay_statuses_total 2\n", // m: Completed; r: Running
		"# TYPE wharfjobs_relay_parked_builds gauge\n",
		"wharfjobs_relay_builds_owned 1\n",
		`wharfjobs_relay_errors_total{kind="sink"} 1` + "\n",
		`wharfjobs_relay_errors_total{kind="relay"} 0` + "\n",
		"# TYPE wharfjobs_relay_lag_seconds histogram\n",
		`wharfjobs_relay_lag_seconds_bucket{le="+Inf"} 2` + "\n",
		"wharfjobs_relay_lag_seconds_count 2\n",
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
	// The lines were written just before: both batches are in the 5 s
	// bucket or below, and the buckets are cumulative.
	if !strings.Contains(body, `wharfjobs_relay_lag_seconds_bucket{le="5"} 2`+"\n") {
		t.Fatalf("lag of lines written a moment ago not within 5 s:\n%s", body)
	}
}
