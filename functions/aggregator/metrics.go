package aggregator

import (
	"fmt"
	"net/http"
)

// MetricsHandler serves the counters in the Prometheus text format.
func (a *Aggregator) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		parked := len(a.parked)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, m := range []struct {
			name, help, typ string
			v               uint64
		}{
			{"wharfjobs_relay_lines_total", "Log lines acknowledged by the sink.", "counter", a.LinesRelayed.Load()},
			{"wharfjobs_relay_batches_total", "Line batches acknowledged by the sink.", "counter", a.BatchesRelayed.Load()},
			{"wharfjobs_relay_statuses_total", "Status changes acknowledged by the sink.", "counter", a.StatusRelayed.Load()},
			{"wharfjobs_relay_errors_total", "Failed deliveries, store reads and discoveries.", "counter", a.Errors.Load()},
			{"wharfjobs_relay_parked_builds", "Builds the sink rejected for good.", "gauge", uint64(parked)},
		} {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.typ, m.name, m.v)
		}
	})
}
