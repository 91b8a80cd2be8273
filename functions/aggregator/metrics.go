package aggregator

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// errKind is the kind label of wharfjobs_relay_errors_total.
type errKind int

const (
	errSink      errKind = iota // a delivery the sink failed, retried
	errRelay                    // a relay pass failed (store, lease, cursor)
	errDiscovery                // listing Jobs or builds failed
	errCompare                  // comparing with wharf-api's builds failed
	errCleanup                  // deleting a relayed build's Job failed
	numErrKinds
)

var errKindNames = [numErrKinds]string{"sink", "relay", "discovery", "compare", "cleanup"}

func (a *Aggregator) countError(k errKind) {
	a.errs[k].Add(1)
	a.Errors.Add(1)
}

// lagBuckets are the upper bounds (seconds) of the relay lag histogram:
// from the hot path (a quarter second) to a sink that was down for minutes.
var lagBuckets = [...]float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300}

// lagHistogram is how old the oldest line of each acknowledged batch was
// when the sink acknowledged it: the relay's lag behind the builds.
type lagHistogram struct {
	mu     sync.Mutex
	counts [len(lagBuckets) + 1]uint64 // per bucket of lagBuckets, then +Inf
	sum    float64
	n      uint64
}

func (h *lagHistogram) observe(d time.Duration) {
	v := d.Seconds()
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for i < len(lagBuckets) && v > lagBuckets[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

// MetricsHandler serves the aggregator's metrics in the Prometheus text
// format.
func (a *Aggregator) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		parked, owned := len(a.parked), len(a.leases)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, m := range []struct {
			name, help, typ string
			v               uint64
		}{
			{"wharfjobs_relay_lines_total", "Log lines acknowledged by the sink.", "counter", a.LinesRelayed.Load()},
			{"wharfjobs_relay_batches_total", "Line batches acknowledged by the sink.", "counter", a.BatchesRelayed.Load()},
			{"wharfjobs_relay_statuses_total", "Status changes acknowledged by the sink.", "counter", a.StatusRelayed.Load()},
			{"wharfjobs_relay_files_total", "Artifacts and test results acknowledged by the sink.", "counter", a.FilesRelayed.Load()},
			{"wharfjobs_relay_files_refused_total", "Artifacts and test results the sink refused for good (logged, not sent again).", "counter", a.FilesRefused.Load()},
			{"wharfjobs_relay_parked_builds", "Builds the sink rejected for good.", "gauge", uint64(parked)},
			{"wharfjobs_relay_builds_owned", "Builds whose lease this replica holds.", "gauge", uint64(owned)},
			{"wharfjobs_relay_notifications_total", "Object keys from the store's change stream (MinIO bucket notifications); flat while lines grow means polling only.", "counter", a.notified.Load()},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.typ, m.name, m.v)
		}
		fmt.Fprint(w, "# HELP wharfjobs_relay_errors_total Failures by kind: sink (a delivery, retried), relay (a pass: store, lease, cursor), discovery, compare, cleanup.\n# TYPE wharfjobs_relay_errors_total counter\n")
		for k, name := range errKindNames {
			fmt.Fprintf(w, "wharfjobs_relay_errors_total{kind=%q} %d\n", name, a.errs[k].Load())
		}
		h := &a.lag
		h.mu.Lock()
		defer h.mu.Unlock()
		fmt.Fprint(w, "# HELP wharfjobs_relay_lag_seconds Age of each acknowledged batch's oldest line when the sink acknowledged it.\n# TYPE wharfjobs_relay_lag_seconds histogram\n")
		var cum uint64
		for i, le := range lagBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "wharfjobs_relay_lag_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "wharfjobs_relay_lag_seconds_bucket{le=\"+Inf\"} %d\n", h.n)
		fmt.Fprintf(w, "wharfjobs_relay_lag_seconds_sum %s\nwharfjobs_relay_lag_seconds_count %d\n", strconv.FormatFloat(h.sum, 'g', -1, 64), h.n)
	})
}
