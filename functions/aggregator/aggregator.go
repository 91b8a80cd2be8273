// Package aggregator relays builds' log lines, status changes and
// artifacts from the blob store to a Sink (wharf-api, or stdout in the
// embedded default). It is stateless: all its progress lives in the store.
//
// # Cursor
//
// Each build has a cursor object (builds/<ref>/relay/cursor): the last log
// chunk relayed, the last status relayed, the artifacts relayed, and
// whether the relay is final. The cursor is advanced with If-Match only
// after the sink acknowledged a batch, so after a crash at most the one
// unacknowledged batch is sent again; a replica that takes a build over
// from an earlier holder first tells a Sink that can check what it has
// (Resumer: wharf-api's sink reads the end of the build's log), which then
// skips the lines of that batch it already took. Within a pass the status document is
// read first and the chunks listed after it: every line the worker wrote
// before that status is relayed before the status. A build whose final
// status has been relayed gets a final cursor and is not visited again;
// its chunks are then deleted once the compacted log holds them (the
// relay, the only reader that needs chunks, is done with them).
//
// # Lease
//
// Several replicas may run; a replica relays a build only while it holds
// the build's lease object (builds/<ref>/relay/lease, holder and expiry).
// It creates the lease create-only (If-None-Match: *) when there is none,
// and takes over an expired one, or renews its own, only with If-Match on
// the ETag it read: of two replicas racing for a lease, exactly one write
// succeeds. A holder renews before each batch and stops relaying a build as
// soon as its lease is within one renewal margin of expiry or a renewal
// fails; a replica that dies simply stops renewing, and after the expiry
// (default 15 s) another one takes over from the cursor. The cursor's own
// If-Match is the second line of defence: a stale holder's cursor write
// fails and it drops the build. Expiry is judged by each replica's clock,
// so clocks must agree to well within the expiry (NTP does).
//
// # Files
//
// One concern per file, all sharing the Aggregator's one mutex:
//
//   - config.go: Config, its defaults and Validate, and New.
//   - run.go: Run, Once and their helpers (hot polling, the change stream).
//   - discover.go: which builds are pending, the Job states, a build's
//     request (its wharf-api id and instance).
//   - relay.go: Relay, one pass over one build, and its cursor.
//   - lease.go: the lease that keeps replicas apart.
//   - lost.go: the rules that fail a build that will never finish, and the
//     comparison with wharf-api's builds.
//   - cleanup.go: deleting a relayed build's Job, chunks and step archives.
//   - sink.go, metrics.go: the Sink interface and the /metrics handler.
//
// Tests name their files after these; a Sink that keeps what it gets, for
// tests here and elsewhere, is aggregatortest.MemorySink.
package aggregator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
)

// Jobs tells which builds have a Job and whether it ended or is stuck.
// kube.Launcher implements it; nil means no cluster (builds are found in
// the store only, and only stale heartbeats reveal a lost worker).
type Jobs interface {
	// States returns the builds with a Job, by build ref.
	States(ctx context.Context) (map[string]job.Build, error)
	// Cancel deletes a build's Job (CleanupJobs).
	Cancel(ctx context.Context, workerID string) (job.Build, error)
}

// Diagnoser is what a Jobs that can see the cluster offers for a lost
// build's post-mortem: its Job, pods, Events and nodes (kube.Launcher).
type Diagnoser interface {
	Diagnose(ctx context.Context, ref, workerID string) build.Diagnosis
}

// RemoteBuild is a build as wharf-api lists it.
type RemoteBuild struct {
	ID          string
	Status      string
	ScheduledOn time.Time
}

// Remote lists wharf-api's active builds (the wharfapi sink does).
type Remote interface {
	ActiveBuilds(ctx context.Context) ([]RemoteBuild, error)
}

// Aggregator relays builds.
type Aggregator struct {
	store blob.Store
	sink  Sink
	jobs  Jobs
	cfg   Config
	// cfgErr is what Validate said of the Config New got; Run and Once
	// return it.
	cfgErr error

	mu     sync.Mutex
	parked map[string]string // ref -> why (permanent sink rejection)
	// busy marks builds a goroutine of this replica is relaying; dirty
	// ones changed meanwhile and get another pass from that goroutine.
	busy, dirty map[string]bool
	// changes, when set, streams keys of new objects (MinIO
	// notifications), so builds are relayed at once, not at the next poll.
	changes func(ctx context.Context) <-chan string
	// leases this replica holds, with the cursor as it last wrote or read
	// it: while the lease is valid nobody else can have moved the cursor,
	// so an idle build costs neither a lease write nor a cursor read.
	leases map[string]heldBuild
	// finals are builds whose relay is final: never read again.
	finals map[string]bool
	// hot holds when builds last delivered something (HotPollInterval).
	hot map[string]time.Time
	// ids caches wharf-api build ids and instances by ref.
	ids    map[string]requestInfo
	states map[string]job.Build
	// waitTold is the last waiting text written to each Scheduling
	// build's log (tellWaiting).
	waitTold map[string]string
	// statesOK is set when states came from a successful listing, so a
	// build missing from it really has no Job; listed is when.
	statesOK bool
	listed   time.Time
	// discoveryErr is the last discovery pass's error, errNoDiscovery
	// before the first (Ready).
	discoveryErr error

	// draining is closed by Drain: Run returns at its first pass with
	// nothing left to relay.
	draining  chan struct{}
	drainOnce sync.Once

	// Counters, for metrics and tests. Errors counts every kind in errs.
	LinesRelayed   atomic.Uint64
	BatchesRelayed atomic.Uint64
	StatusRelayed  atomic.Uint64
	// FilesRelayed counts artifacts and test results the sink took,
	// FilesRefused those it refused for good.
	FilesRelayed, FilesRefused atomic.Uint64
	Errors                     atomic.Uint64
	errs                       [numErrKinds]atomic.Uint64
	lag                        lagHistogram
	// chunked holds finished builds whose chunks wait for the compacted
	// log before they are deleted (KeepChunks). In memory only: after a
	// restart they stay, which costs space, never a line.
	chunked map[string]chunkWait
	// notified counts keys from the change stream (our own cursor writes
	// included), so a stream that never delivers can be told.
	notified atomic.Uint64
	// watch is the change stream's health and what the aggregator last
	// saw of each build, which let it skip polling while the stream
	// works (run.go).
	watch watchState
}

// Ready reports whether Run can do its work: nil once a discovery pass
// (listing Jobs and the store) succeeded and the last one did not fail.
func (a *Aggregator) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.discoveryErr
}

var errNoDiscovery = errors.New("no discovery pass finished yet")

// WatchChanges makes Run relay a build as soon as an object of it is
// created. changes streams created keys, for example minio.Store.Watch.
// While the stream is healthy (run.go) a build is visited when a key of it
// arrives and by the safety sweep (SafetySweepInterval); when the stream
// breaks or stays silent, every build is polled every PollInterval again.
func (a *Aggregator) WatchChanges(changes func(ctx context.Context) <-chan string) {
	a.changes = changes
}
