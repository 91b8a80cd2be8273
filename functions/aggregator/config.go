package aggregator

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
)

// Config tunes the aggregator.
type Config struct {
	// Holder names this replica in leases (default: a random id).
	Holder string `envconfig:"AGGREGATOR_ID"`
	// LeaseDuration is how long a lease lasts without renewal.
	LeaseDuration time.Duration `envconfig:"LEASE_DURATION" default:"15s"`
	// PollInterval is how often the store is polled for new chunks.
	PollInterval time.Duration `envconfig:"POLL_INTERVAL" default:"1s"`
	// HotPollInterval is how often a build that delivered lines or a
	// status in the last HotPollFor is polled: a build writing output gets
	// each chunk within this long of landing (the writer flushes every
	// second), while idle builds cost one poll per PollInterval. A negative
	// value, or one not below PollInterval, turns it off.
	HotPollInterval time.Duration `envconfig:"HOT_POLL_INTERVAL" default:"250ms"`
	HotPollFor      time.Duration `envconfig:"HOT_POLL_FOR" default:"3s"`
	// DiscoverInterval is how often build Jobs are listed anew in full;
	// between listings a watch reports changes.
	DiscoverInterval time.Duration `envconfig:"DISCOVER_INTERVAL" default:"10s"`
	// BatchLines and BatchBytes bound one delivery to the sink. A batch
	// takes whole chunks (the cursor counts chunks), so it ends at the
	// first chunk boundary past either bound.
	BatchLines int `envconfig:"BATCH_LINES" default:"5000"`
	BatchBytes int `envconfig:"BATCH_BYTES" default:"1048576"`
	// Workers is how many builds are relayed in parallel.
	Workers int `envconfig:"RELAY_WORKERS" default:"8"`
	// Retry is the backoff of failed deliveries.
	RetryMin time.Duration `envconfig:"RETRY_MIN" default:"500ms"`
	RetryMax time.Duration `envconfig:"RETRY_MAX" default:"30s"`
	// IdleExit ends Run after this long with no build to relay (0: never),
	// so KEDA can scale the aggregator back to zero.
	IdleExit time.Duration `envconfig:"IDLE_EXIT" default:"0"`
	// HeartbeatTimeout fails a Running build whose worker has not
	// refreshed its heartbeat for this long.
	HeartbeatTimeout time.Duration `envconfig:"HEARTBEAT_TIMEOUT" default:"2m"`
	// CleanupJobs deletes a build's Job once its relay is final (the logs
	// stay in the store). Off by default: the Job's TTL removes it anyway,
	// and deleting needs the delete verb on jobs, which the aggregator's
	// Role does not grant.
	CleanupJobs bool `envconfig:"CLEANUP_JOBS" default:"false"`
	// KeepChunks keeps a finished build's log chunks. By default they are
	// deleted once its relay is final and the compacted log (log.ndjson)
	// holds them all, so the store keeps one copy of each log, not two.
	KeepChunks bool `envconfig:"KEEP_CHUNKS" default:"false"`
	// CompactWait is how long after a build's final relay the aggregator
	// waits for the worker's compaction (it runs right after the final
	// status) before it compacts the log itself, then deletes the chunks.
	CompactWait time.Duration `envconfig:"COMPACT_WAIT" default:"2m"`
	// CompareInterval, when set and the sink can list wharf-api's active
	// builds, is how often they are compared with ours: a build wharf-api
	// has in Scheduling or Running that wharfjobs never received (its
	// trigger failed) is failed after TriggerGrace.
	CompareInterval time.Duration `envconfig:"COMPARE_INTERVAL" default:"0"`
	TriggerGrace    time.Duration `envconfig:"TRIGGER_GRACE" default:"5m"`
	// WharfInstance is WHARF_INSTANCE of the wharf-api this aggregator
	// relays to. It relays only that instance's builds (those without an
	// instance when it is empty): another instance's build 42 is not this
	// wharf-api's build 42.
	WharfInstance string `envconfig:"WHARF_INSTANCE"`
	// MissingGrace is how long a build's status may be unchanged while its
	// Job is missing before the build is failed: the provisioner writes the
	// status just before it creates the Job.
	MissingGrace time.Duration `envconfig:"MISSING_GRACE" default:"1m"`
	// SilentChangesAfter is how long a change stream (MinIO's bucket
	// notifications) may deliver nothing while this aggregator writes
	// before it warns, once, that the stream does not work.
	SilentChangesAfter time.Duration `envconfig:"SILENT_CHANGES_AFTER" default:"30s"`
	// Logger for the aggregator's own diagnostics.
	Logger *slog.Logger `ignored:"true"`
}

func (c *Config) defaults() {
	if c.Holder == "" {
		c.Holder = fmt.Sprintf("aggregator-%d", time.Now().UnixNano())
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.HotPollInterval == 0 {
		c.HotPollInterval = 250 * time.Millisecond
	}
	if c.HotPollFor <= 0 {
		c.HotPollFor = 3 * time.Second
	}
	if c.DiscoverInterval <= 0 {
		c.DiscoverInterval = 10 * time.Second
	}
	if c.BatchLines <= 0 {
		c.BatchLines = 5000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 2 * time.Minute
	}
	if c.MissingGrace <= 0 {
		c.MissingGrace = time.Minute
	}
	if c.CompactWait <= 0 {
		c.CompactWait = 2 * time.Minute
	}
	if c.SilentChangesAfter <= 0 {
		c.SilentChangesAfter = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// New returns an aggregator.
func New(s blob.Store, sink Sink, jobs Jobs, cfg Config) *Aggregator {
	cfg.defaults()
	return &Aggregator{store: s, sink: sink, jobs: jobs, cfg: cfg, parked: map[string]string{}, busy: map[string]bool{}, dirty: map[string]bool{},
		leases: map[string]heldBuild{}, finals: map[string]bool{}, ids: map[string]requestInfo{}, hot: map[string]time.Time{}, chunked: map[string]chunkWait{},
		discoveryErr: errNoDiscovery}
}
