package aggregator

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/internal/settings"
)

// Config tunes the aggregator. Each setting's default is written twice, in
// its envconfig default tag (what an operator gets) and in the constants
// below (what a Config built in code gets, through withDefaults);
// TestEnvironmentDefaultsAreTheCodeDefaults keeps the two equal. Zero means
// the default unless a field says otherwise.
type Config struct {
	// Holder names this replica in leases (default: a random id).
	Holder string `envconfig:"AGGREGATOR_ID" desc:"name of this replica in build leases (default: a random id)"`
	// LeaseDuration is how long a lease lasts without renewal.
	LeaseDuration time.Duration `envconfig:"LEASE_DURATION" default:"15s" desc:"how long a replica's lease on a build lasts without renewal; another replica takes over after it"`
	// PollInterval is how often the store is polled for new chunks.
	PollInterval time.Duration `envconfig:"POLL_INTERVAL" default:"1s" desc:"how often the store is polled for new log chunks and statuses"`
	// HotPollInterval is how often a build that delivered lines or a
	// status in the last HotPollFor is polled: a build writing output gets
	// each chunk within this long of landing (the writer flushes every
	// second), while idle builds cost one poll per PollInterval. A negative
	// value, or one not below PollInterval, turns it off.
	HotPollInterval time.Duration `envconfig:"HOT_POLL_INTERVAL" default:"250ms" desc:"how often a build that is writing output is polled (negative: off)"`
	// HotPollFor is how long a build stays hot after it last delivered
	// something.
	HotPollFor time.Duration `envconfig:"HOT_POLL_FOR" default:"3s" desc:"how long after its last output a build is still polled every HOT_POLL_INTERVAL"`
	// DiscoverInterval is how often build Jobs are listed anew in full;
	// between listings a watch reports changes.
	DiscoverInterval time.Duration `envconfig:"DISCOVER_INTERVAL" default:"10s" desc:"how often the build Jobs are listed anew in full; a watch reports changes in between"`
	// BatchLines bounds the lines of one delivery to the sink. A batch
	// takes whole chunks (the cursor counts chunks), so it ends at the
	// first chunk boundary past BatchLines or BatchBytes.
	BatchLines int `envconfig:"BATCH_LINES" default:"5000" desc:"log lines per delivery to wharf-api (a batch ends at the first chunk boundary past it)"`
	// BatchBytes bounds the bytes of one delivery, as BatchLines does.
	BatchBytes int `envconfig:"BATCH_BYTES" default:"1048576" desc:"bytes of log per delivery to wharf-api (a batch ends at the first chunk boundary past it)"`
	// Workers is how many builds are relayed in parallel.
	Workers int `envconfig:"RELAY_WORKERS" default:"8" desc:"how many builds are relayed in parallel"`
	// RetryMin is the first delay of the backoff of failed deliveries.
	RetryMin time.Duration `envconfig:"RETRY_MIN" default:"500ms" desc:"first delay before a failed delivery is retried; it doubles up to RETRY_MAX"`
	// RetryMax caps that backoff (and the one of failed discoveries).
	RetryMax time.Duration `envconfig:"RETRY_MAX" default:"30s" desc:"longest delay between retries of a failed delivery"`
	// IdleExit ends Run after this long with no build to relay (0: never),
	// so KEDA can scale the aggregator back to zero.
	IdleExit time.Duration `envconfig:"IDLE_EXIT" default:"0" desc:"exit after this long with no build to relay, so KEDA can scale to zero (0: never)"`
	// DrainTimeout is how long the aggregator command keeps relaying after
	// SIGTERM (Drain): a scale-in (KEDA's cooldown, a rolling update) then
	// does not stop it between a finished build's last lines and its final
	// status, which would wait for the next replica to start. The pod's
	// terminationGracePeriodSeconds must exceed it. Negative: no drain.
	DrainTimeout time.Duration `envconfig:"DRAIN_TIMEOUT" default:"20s" desc:"after SIGTERM, keep relaying the pending builds for at most this long, exiting as soon as none is left (negative: exit at once)"`
	// HeartbeatTimeout fails a Running build whose worker has not
	// refreshed its heartbeat for this long.
	HeartbeatTimeout time.Duration `envconfig:"HEARTBEAT_TIMEOUT" default:"2m" desc:"fail a Running build whose worker has not refreshed its heartbeat for this long"`
	// CleanupJobs deletes a build's Job once its relay is final (the logs
	// stay in the store). Off by default: the Job's TTL removes it anyway,
	// and deleting needs the delete verb on jobs, which the aggregator's
	// Role does not grant.
	CleanupJobs bool `envconfig:"CLEANUP_JOBS" default:"false" desc:"delete a build's Job once its relay is final (needs the delete verb on jobs)"`
	// KeepChunks keeps a finished build's log chunks. By default they are
	// deleted once its relay is final and the compacted log (log.ndjson)
	// holds them all, so the store keeps one copy of each log, not two.
	KeepChunks bool `envconfig:"KEEP_CHUNKS" default:"false" desc:"keep a finished build's log chunks beside its compacted log.ndjson"`
	// CompactWait is how long after a build's final relay the aggregator
	// waits for the worker's compaction (it runs right after the final
	// status) before it compacts the log itself, then deletes the chunks.
	CompactWait time.Duration `envconfig:"COMPACT_WAIT" default:"2m" desc:"how long after a build's final relay to wait for the worker's log compaction before compacting it here"`
	// CompareInterval, when set and the sink can list wharf-api's active
	// builds, is how often they are compared with ours: a build wharf-api
	// has in Scheduling or Running that wharfjobs never received (its
	// trigger failed) is failed after TriggerGrace. Zero turns it off.
	CompareInterval time.Duration `envconfig:"COMPARE_INTERVAL" default:"0" desc:"how often wharf-api's active builds are compared with ours, to fail those whose trigger never arrived (0: never)"`
	// TriggerGrace is how long wharf-api may have a build that wharfjobs
	// never received before Compare fails it: its trigger may be on the
	// way.
	TriggerGrace time.Duration `envconfig:"TRIGGER_GRACE" default:"5m" desc:"how long a build wharf-api started but wharfjobs never received may wait for its trigger before it is failed"`
	// WharfInstance is WHARF_INSTANCE of the wharf-api this aggregator
	// relays to. It relays only that instance's builds (those without an
	// instance when it is empty): another instance's build 42 is not this
	// wharf-api's build 42.
	WharfInstance string `envconfig:"WHARF_INSTANCE" desc:"the wharf-api instance whose builds this aggregator relays (empty: builds without an instance)"`
	// MissingGrace is how long a build's status may be unchanged while its
	// Job is missing before the build is failed: the provisioner writes the
	// status just before it creates the Job.
	MissingGrace time.Duration `envconfig:"MISSING_GRACE" default:"1m" desc:"how long a build without a Job may keep its status unchanged before it is failed"`
	// SilentChangesAfter is how long a change stream (MinIO's bucket
	// notifications) may deliver nothing while this aggregator writes
	// before it warns, once, that the stream does not work.
	SilentChangesAfter time.Duration `envconfig:"SILENT_CHANGES_AFTER" default:"30s" desc:"warn when the store's change notifications delivered nothing for this long while the aggregator was writing"`
	// SafetySweepInterval applies while the change stream works (see
	// ChangesKeepalive): a build is then visited when a notification names
	// it, when a lost-build rule holds by what the aggregator last read of
	// it (so HeartbeatTimeout and MissingGrace are kept without reading
	// anything), and otherwise once per this interval, the builds spread
	// evenly over it: that sweep reads its status and lists its chunks
	// (two requests), to catch a notification the stream lost. Without a
	// working stream every build is polled every PollInterval. A negative
	// value turns the sweep off: every build is polled every PollInterval
	// even with a working stream.
	SafetySweepInterval time.Duration `envconfig:"SAFETY_SWEEP_INTERVAL" default:"30s" desc:"while the store's change notifications work, how often each build is checked anyway (spread evenly), instead of every POLL_INTERVAL (negative: poll every build every POLL_INTERVAL)"`
	// ChangesKeepalive: the change stream counts as broken, so every
	// build is polled every PollInterval again and the stream is
	// subscribed anew, when it delivered nothing for twice this long; to
	// hear from a quiet stream, the aggregator writes a probe object
	// (builds/.relay-probe) every half of this. A stream that closes
	// counts as broken at once.
	ChangesKeepalive time.Duration `envconfig:"CHANGES_KEEPALIVE" default:"5s" desc:"the store's change notifications count as broken, and every build is polled again, after twice this long without one; a probe object is written every half of this while they are quiet"`
	// Logger for the aggregator's own diagnostics.
	Logger *slog.Logger `ignored:"true"`
}

// The defaults of a Config built in code; the envconfig default tags say
// the same.
const (
	defaultLeaseDuration      = 15 * time.Second
	defaultPollInterval       = time.Second
	defaultHotPollInterval    = 250 * time.Millisecond
	defaultHotPollFor         = 3 * time.Second
	defaultDiscoverInterval   = 10 * time.Second
	defaultBatchLines         = 5000
	defaultBatchBytes         = 1 << 20
	defaultWorkers            = 8
	defaultRetryMin           = 500 * time.Millisecond
	defaultRetryMax           = 30 * time.Second
	defaultHeartbeatTimeout   = 2 * time.Minute
	defaultCompactWait        = 2 * time.Minute
	defaultTriggerGrace       = 5 * time.Minute
	defaultMissingGrace       = time.Minute
	defaultSilentChangesAfter = 30 * time.Second
	defaultSafetySweep        = 30 * time.Second
	defaultChangesKeepalive   = 5 * time.Second
	defaultDrainTimeout       = 20 * time.Second
)

// withDefaults returns c with every zero setting replaced by its default.
// IdleExit and CompareInterval have none: their zero means off.
func (c Config) withDefaults() Config {
	if c.Holder == "" {
		c.Holder = fmt.Sprintf("aggregator-%d", time.Now().UnixNano())
	}
	orDefault(&c.LeaseDuration, defaultLeaseDuration)
	orDefault(&c.PollInterval, defaultPollInterval)
	if c.HotPollInterval == 0 { // negative turns it off
		c.HotPollInterval = defaultHotPollInterval
	}
	orDefault(&c.HotPollFor, defaultHotPollFor)
	orDefault(&c.DiscoverInterval, defaultDiscoverInterval)
	orDefault(&c.BatchLines, defaultBatchLines)
	orDefault(&c.BatchBytes, defaultBatchBytes)
	orDefault(&c.Workers, defaultWorkers)
	orDefault(&c.RetryMin, defaultRetryMin)
	orDefault(&c.RetryMax, defaultRetryMax)
	orDefault(&c.HeartbeatTimeout, defaultHeartbeatTimeout)
	orDefault(&c.MissingGrace, defaultMissingGrace)
	orDefault(&c.CompactWait, defaultCompactWait)
	orDefault(&c.TriggerGrace, defaultTriggerGrace)
	orDefault(&c.SilentChangesAfter, defaultSilentChangesAfter)
	if c.SafetySweepInterval == 0 { // negative turns it off
		c.SafetySweepInterval = defaultSafetySweep
	}
	orDefault(&c.ChangesKeepalive, defaultChangesKeepalive)
	if c.DrainTimeout == 0 { // negative turns it off
		c.DrainTimeout = defaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// orDefault sets *v to def unless it is positive.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Validate refuses settings that can only be mistakes: a negative count,
// size, interval or duration (HotPollInterval and SafetySweepInterval
// excepted: negative turns them off). Zero is always valid. Each error names the environment variable,
// as the operator wrote it.
func (c Config) Validate() error {
	return settings.NonNegative(c, "HotPollInterval", "SafetySweepInterval", "DrainTimeout")
}

// New returns an aggregator. A Config that Validate refuses makes Run and
// Once return its error without doing anything: New itself cannot fail.
func New(s blob.Store, sink Sink, jobs Jobs, cfg Config) *Aggregator {
	cfgErr := cfg.Validate()
	cfg = cfg.withDefaults()
	return &Aggregator{store: s, sink: sink, jobs: jobs, cfg: cfg, cfgErr: cfgErr, parked: map[string]string{}, busy: map[string]bool{}, dirty: map[string]bool{},
		leases: map[string]heldBuild{}, finals: map[string]bool{}, ids: map[string]requestInfo{}, hot: map[string]time.Time{}, chunked: map[string]chunkWait{},
		discoveryErr: errNoDiscovery, watch: newWatchState(), draining: make(chan struct{})}
}
