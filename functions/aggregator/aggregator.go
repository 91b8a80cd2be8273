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
// unacknowledged batch is sent again. Within a pass the status document is
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
package aggregator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
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

// Jobs tells which builds have a Job and whether it ended or is stuck.
// kube.Launcher implements it; nil means no cluster (builds are found in
// the store only, and only stale heartbeats reveal a lost worker).
type Jobs interface {
	// States returns the builds with a Job, by build ref.
	States(ctx context.Context) (map[string]job.Build, error)
	// Cancel deletes a build's Job (CleanupJobs).
	Cancel(ctx context.Context, workerID string) (job.Build, error)
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

// ReasonTriggerLost is the reason of a build wharf-api started but
// wharfjobs never received.
const ReasonTriggerLost = build.ReasonTriggerLost

// Aggregator relays builds.
type Aggregator struct {
	store blob.Store
	sink  Sink
	jobs  Jobs
	cfg   Config

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
	// statesOK is set when states came from a successful listing, so a
	// build missing from it really has no Job; listed is when.
	statesOK bool
	listed   time.Time
	// discoveryErr is the last discovery pass's error, errNoDiscovery
	// before the first (Ready).
	discoveryErr error

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
}

// New returns an aggregator.
func New(s blob.Store, sink Sink, jobs Jobs, cfg Config) *Aggregator {
	cfg.defaults()
	return &Aggregator{store: s, sink: sink, jobs: jobs, cfg: cfg, parked: map[string]string{}, busy: map[string]bool{}, dirty: map[string]bool{},
		leases: map[string]heldBuild{}, finals: map[string]bool{}, ids: map[string]requestInfo{}, hot: map[string]time.Time{}, chunked: map[string]chunkWait{},
		discoveryErr: errNoDiscovery}
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
// created, with polling (PollInterval) kept as the safety net. changes
// streams created keys, for example minio.Store.Watch.
func (a *Aggregator) WatchChanges(changes func(ctx context.Context) <-chan string) {
	a.changes = changes
}

// relaySoon relays ref in a goroutine once sem has room (it bounds the
// goroutines); false means ctx ended first.
func (a *Aggregator) relaySoon(ctx context.Context, sem chan struct{}, ref string) bool {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	go func() {
		defer func() { <-sem }()
		err := a.relayOnce(ctx, ref)
		if errors.Is(err, errLeaseHeld) || errors.Is(err, ErrOtherInstance) {
			a.setHot(ref, false) // another replica relays it
		} else if err != nil && ctx.Err() == nil {
			a.countError(errRelay)
			a.cfg.Logger.Warn("relay failed", "build", ref, "error", err)
		}
	}()
	return true
}

// relayOnce relays ref unless a goroutine of this replica already is; then
// that goroutine makes one more pass, so a change is never missed and a
// build is never relayed twice at once by one replica.
func (a *Aggregator) relayOnce(ctx context.Context, ref string) error {
	a.mu.Lock()
	if a.busy[ref] {
		a.dirty[ref] = true
		a.mu.Unlock()
		return nil
	}
	a.busy[ref] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.busy, ref)
		a.mu.Unlock()
	}()
	for {
		if err := a.Relay(ctx, ref); err != nil {
			return err
		}
		a.mu.Lock()
		again := a.dirty[ref]
		delete(a.dirty, ref)
		a.mu.Unlock()
		if !again || ctx.Err() != nil {
			return nil
		}
	}
}

// heldBuild is a build whose lease this replica holds.
type heldBuild struct {
	lease heldLease
	cur   cursor
	etag  string
}

// cursor is the document at builds/<ref>/relay/cursor.
type cursor struct {
	Seq       uint64      `json:"seq"`
	Status    build.Phase `json:"status,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Artifacts []string    `json:"artifacts,omitempty"`
	// TestResults are the test result files relayed (or refused).
	TestResults []string `json:"testResults,omitempty"`
	Final       bool     `json:"final,omitempty"`
}

// fileKind is artifacts or test results, which the relay treats alike.
type fileKind int

const (
	artifactFiles fileKind = iota
	testResultFiles
)

func (k fileKind) prefix(ref string) string {
	if k == testResultFiles {
		return build.TestResultPrefix(ref)
	}
	return build.ArtifactPrefix(ref)
}

func (k fileKind) relayed(c *cursor) *[]string {
	if k == testResultFiles {
		return &c.TestResults
	}
	return &c.Artifacts
}

func (k fileKind) send(s Sink) func(context.Context, Build, string, io.Reader) error {
	if k == testResultFiles {
		return s.TestResult
	}
	return s.Artifact
}

func readCursor(ctx context.Context, s blob.Store, ref string) (cursor, string, error) {
	b, info, err := blob.ReadAll(ctx, s, build.CursorKey(ref), 1<<20)
	if errors.Is(err, blob.ErrNotFound) {
		return cursor{}, "", nil
	}
	if err != nil {
		return cursor{}, "", err
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return cursor{}, "", fmt.Errorf("cursor of build %s: %w", ref, err)
	}
	return c, info.ETag, nil
}

func writeCursor(ctx context.Context, s blob.Store, ref string, c cursor, etag string) (string, error) {
	b, _ := json.Marshal(c)
	info, err := s.Put(ctx, build.CursorKey(ref), bytes.NewReader(b), int64(len(b)),
		blob.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatch: etag == ""})
	if err != nil {
		return "", fmt.Errorf("advance cursor of build %s: %w", ref, err)
	}
	return info.ETag, nil
}

// Pending lists the builds whose relay is not final: those with a Job,
// plus those in the store whose cursor is not final (so logs written after
// a Job disappeared are still relayed).
func (a *Aggregator) Pending(ctx context.Context) ([]string, error) {
	refs := map[string]bool{}
	if a.jobs != nil {
		states, err := a.jobStates(ctx, false)
		if err != nil {
			return nil, err
		}
		for ref := range states {
			refs[ref] = true
		}
	}
	err := blob.ListAll(ctx, a.store, blob.ListOptions{Prefix: build.Root, Delimited: true}, func(info blob.Info) error {
		if ref, ok := build.RefOfKey(info.Key); ok && info.IsPrefix {
			refs[ref] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover builds: %w", err)
	}
	var out []string
	for ref := range refs {
		a.mu.Lock()
		final := a.finals[ref]
		_, held := a.leases[ref]
		a.mu.Unlock()
		if final {
			continue
		}
		if !held {
			c, _, err := readCursor(ctx, a.store, ref)
			if err != nil {
				return nil, err
			}
			if c.Final {
				a.mu.Lock()
				a.finals[ref] = true
				a.mu.Unlock()
				continue
			}
		}
		if ours, err := a.ours(ctx, ref); err != nil {
			return nil, err
		} else if !ours {
			continue // another wharf-api's build: its own aggregator relays it
		}
		out = append(out, ref)
	}
	sort.Strings(out)
	return out, nil
}

// jobStates returns the build Jobs, listing them anew when the last full
// listing is older than DiscoverInterval (or fresh is set: a watch event
// said something changed).
func (a *Aggregator) jobStates(ctx context.Context, fresh bool) (map[string]job.Build, error) {
	a.mu.Lock()
	states, ok := a.states, a.statesOK && time.Since(a.listed) < a.cfg.DiscoverInterval
	a.mu.Unlock()
	if ok && !fresh {
		return states, nil
	}
	states, err := a.jobs.States(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.statesOK = false
		return nil, fmt.Errorf("list build jobs: %w", err)
	}
	a.states, a.statesOK, a.listed = states, true, time.Now()
	return states, nil
}

// refWatcher is a Jobs that can watch (kube.Launcher).
type refWatcher interface {
	WatchRefs(ctx context.Context) <-chan string
}

// watchJobs relays a build as soon as its Job changes (it ended, failed,
// vanished), with the Job states read anew first.
func (a *Aggregator) watchJobs(ctx context.Context, w refWatcher) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	for ref := range w.WatchRefs(ctx) {
		if build.ValidateRef(ref) != nil {
			continue
		}
		if _, err := a.jobStates(ctx, true); err != nil {
			a.countError(errDiscovery)
			a.cfg.Logger.Warn("list build jobs", "error", err)
			continue
		}
		if !a.relaySoon(ctx, sem, ref) {
			return
		}
	}
}

// Once relays everything pending and returns when no build has anything
// left to relay now (the CronJob or PingSource mode). Builds still running
// are relayed as far as they got.
func (a *Aggregator) Once(ctx context.Context) error {
	refs, err := a.Pending(ctx)
	if err != nil {
		return err
	}
	return a.relayAll(ctx, refs)
}

func (a *Aggregator) relayAll(ctx context.Context, refs []string) error {
	work := make(chan string)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ref := range work {
				if err := a.relayOnce(ctx, ref); err != nil && !errors.Is(err, errLeaseHeld) {
					a.countError(errRelay)
					a.cfg.Logger.Warn("relay failed", "build", ref, "error", err)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	for _, ref := range refs {
		select {
		case work <- ref:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// Run relays continuously until ctx ends, or until IdleExit passed with no
// pending build.
func (a *Aggregator) Run(ctx context.Context) error {
	// Run returns only once its helpers and the relays they started have
	// stopped, so an exiting function leaves no write half done.
	ctx, stop := context.WithCancel(ctx)
	var helpers sync.WaitGroup
	defer func() {
		stop()
		helpers.Wait()
	}()
	if a.changes != nil {
		helpers.Go(func() { a.react(ctx) })
	}
	if w, ok := a.jobs.(refWatcher); ok {
		helpers.Go(func() { a.watchJobs(ctx, w) })
	}
	if a.cfg.HotPollInterval > 0 && a.cfg.HotPollInterval < a.cfg.PollInterval {
		helpers.Go(func() { a.pollHot(ctx) })
	}
	lastCompare := time.Time{}
	idleSince := time.Now()
	started, warnedSilent := time.Now(), false
	// Failed discoveries back off from PollInterval, with jitter, so
	// replicas do not hammer a store that is coming back; the cap (RetryMax,
	// at most ten polls) bounds how late a recovery is noticed.
	failures := 0
	retry := backoff.Policy{Min: a.cfg.PollInterval, Max: max(min(a.cfg.RetryMax, 10*a.cfg.PollInterval), a.cfg.PollInterval)}
	for {
		if remote, ok := a.sink.(Remote); ok && a.cfg.CompareInterval > 0 && time.Since(lastCompare) >= a.cfg.CompareInterval {
			lastCompare = time.Now()
			if err := a.Compare(ctx, remote); err != nil {
				a.countError(errCompare)
				a.cfg.Logger.Warn("compare with wharf-api", "error", err)
			}
		}
		if !warnedSilent && a.silentChanges(started) {
			warnedSilent = true
			a.cfg.Logger.Warn("the store's change notifications delivered nothing, not even for this aggregator's own writes; relaying at polling speed",
				"writes", a.BatchesRelayed.Load()+a.StatusRelayed.Load(), "since", time.Since(started).Round(time.Second),
				"hint", "MinIO built from master after 2025-10-24 (commit 52eee5a2f) does not flush its listen stream; releases up to RELEASE.2025-10-15T17-29-55Z do")
		}
		a.dropWaitingChunks(ctx)
		refs, err := a.Pending(ctx)
		a.mu.Lock()
		a.discoveryErr = err
		a.mu.Unlock()
		if err != nil {
			a.countError(errDiscovery)
			a.cfg.Logger.Warn("discovery failed", "error", err)
		}
		switch {
		case len(refs) > 0:
			idleSince = time.Now()
			_ = a.relayAll(ctx, refs)
		case err != nil, failures > 0, a.chunksWaiting():
			// Not idle: with the store unreachable, builds may be waiting;
			// idleness counts from the first pass that sees nothing. Chunks
			// waiting for deletion are known to this process only.
			idleSince = time.Now()
		case a.cfg.IdleExit > 0 && time.Since(idleSince) > a.cfg.IdleExit:
			a.cfg.Logger.Info("idle, exiting", "idle", a.cfg.IdleExit)
			return nil
		}
		wait := a.cfg.PollInterval
		if err != nil {
			wait = retry.Delay(failures)
			failures++
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// silentChanges is true when a change stream is set up but has delivered
// nothing, although this aggregator wrote cursors for at least ten
// deliveries and ran for SilentChangesAfter: every cursor write is an object
// created, so a working stream would have reported some.
func (a *Aggregator) silentChanges(started time.Time) bool {
	return a.changes != nil && a.notified.Load() == 0 &&
		a.BatchesRelayed.Load()+a.StatusRelayed.Load() >= 10 && time.Since(started) >= a.cfg.SilentChangesAfter
}

// pollHot relays the builds that are writing output every
// HotPollInterval. Without bucket notifications a chunk would otherwise
// wait up to a whole PollInterval after it landed.
func (a *Aggregator) pollHot(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	t := time.NewTicker(a.cfg.HotPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		refs := make([]string, 0, len(a.hot))
		for ref, last := range a.hot {
			switch {
			case time.Since(last) > a.cfg.HotPollFor:
				delete(a.hot, ref)
			case !a.busy[ref]:
				refs = append(refs, ref)
			}
		}
		a.mu.Unlock()
		for _, ref := range refs {
			if !a.relaySoon(ctx, sem, ref) {
				return
			}
		}
	}
}

// drain waits for the relays holding slots of sem to finish.
func drain(sem chan struct{}) {
	for range cap(sem) {
		sem <- struct{}{}
	}
}

// setHot records that ref delivered something now (hot), or that it is
// done with or not ours to poll (not hot).
func (a *Aggregator) setHot(ref string, hot bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if hot {
		a.hot[ref] = time.Now()
	} else {
		delete(a.hot, ref)
	}
}

// react relays builds as their objects appear. Workers bounds the
// goroutines; a build already being relayed gets one more pass instead.
func (a *Aggregator) react(ctx context.Context) {
	sem := make(chan struct{}, a.cfg.Workers)
	defer drain(sem)
	for key := range a.changes(ctx) {
		a.notified.Add(1)
		ref, ok := build.RefOfKey(key)
		if !ok || strings.HasPrefix(key, build.Dir(ref)+"relay/") {
			continue // the aggregator's own writes
		}
		if !a.relaySoon(ctx, sem, ref) {
			return
		}
	}
}

// ErrOtherInstance is returned by Relay for a build of another wharf-api
// instance than the aggregator's (Config.WharfInstance).
var ErrOtherInstance = errors.New("build of another wharf instance")

// Relay takes the build's lease and relays what is new. It returns
// errLeaseHeld when another replica holds the build, and ErrOtherInstance
// for a build this aggregator must not relay.
func (a *Aggregator) Relay(ctx context.Context, ref string) error {
	if ours, err := a.ours(ctx, ref); err != nil {
		return err
	} else if !ours {
		return fmt.Errorf("relay %s: %w than %q", ref, ErrOtherInstance, a.cfg.WharfInstance)
	}
	a.mu.Lock()
	_, parked := a.parked[ref]
	a.mu.Unlock()
	if parked {
		a.setHot(ref, false)
		return nil // logged once when it was parked
	}
	a.mu.Lock()
	h, held := a.leases[ref]
	a.mu.Unlock()
	r := &relay{a: a, ref: ref, lease: h.lease}
	// A lease past two thirds of its life is renewed (which reads it); a
	// renewed or new lease means the cursor must be read again too.
	if held && time.Until(h.lease.expires) > a.cfg.LeaseDuration/3 {
		r.cached = &h
	} else {
		var err error
		if r.lease, err = acquire(ctx, a.store, ref, a.cfg.Holder, a.cfg.LeaseDuration, time.Now()); err != nil {
			return err
		}
	}
	err := r.run(ctx)
	a.mu.Lock()
	switch {
	case err == nil && r.final:
		a.finals[ref] = true
		delete(a.leases, ref)
	case err == nil:
		a.leases[ref] = heldBuild{lease: r.lease, cur: r.cur, etag: r.etag}
	default:
		delete(a.leases, ref) // read it all again next time
	}
	a.mu.Unlock()
	if errors.Is(err, ErrPermanent) {
		a.mu.Lock()
		a.parked[ref] = err.Error()
		a.mu.Unlock()
		a.cfg.Logger.Error("sink rejected the build for good; parked", "build", ref, "error", err)
		return nil
	}
	if r.final {
		release(context.WithoutCancel(ctx), a.store, r.lease, a.cfg.Holder)
		a.cleanup(ctx, ref)
		a.dropChunks(ctx, ref, chunkWait{since: time.Now()})
	}
	return err
}

// cleanup deletes the Job of a build whose relay is final, when asked to.
func (a *Aggregator) cleanup(ctx context.Context, ref string) {
	if !a.cfg.CleanupJobs || a.jobs == nil {
		return
	}
	a.mu.Lock()
	b, ok := a.states[ref]
	a.mu.Unlock()
	if !ok {
		return
	}
	if _, err := a.jobs.Cancel(ctx, b.WorkerID); err != nil && !errors.Is(err, job.ErrNotFound) {
		a.countError(errCleanup)
		a.cfg.Logger.Warn("clean up the job of a relayed build", "build", ref, "error", err)
	}
}

// chunkWait is a finished build whose chunks are not deleted yet.
type chunkWait struct {
	since    time.Time // when its relay went final
	failures int
}

// dropChunks deletes the log chunks of ref, whose relay is final, once
// log.ndjson holds every one of them; until CompactWait has passed it
// leaves the compaction to the worker and tries again at a later pass.
func (a *Aggregator) dropChunks(ctx context.Context, ref string, w chunkWait) {
	// A worker that was lost never removed its steps' archives.
	if err := build.DeleteStaging(ctx, a.store, ref); err != nil {
		a.cfg.Logger.Warn("cannot delete the steps' archives of a relayed build", "build", ref, "error", err)
	}
	if a.cfg.KeepChunks {
		return
	}
	err := build.DeleteAllChunks(ctx, a.store, ref)
	if errors.Is(err, build.ErrNotCompacted) {
		if time.Since(w.since) < a.cfg.CompactWait {
			err = errNotYet
		} else if _, err = build.Compact(ctx, a.store, ref); err == nil {
			err = build.DeleteAllChunks(ctx, a.store, ref)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil || ctx.Err() != nil:
		delete(a.chunked, ref)
	case errors.Is(err, errNotYet):
		a.chunked[ref] = w
	case w.failures < 2:
		w.failures++
		a.chunked[ref] = w
		a.countError(errCleanup)
	default:
		delete(a.chunked, ref)
		a.countError(errCleanup)
		a.cfg.Logger.Warn("cannot delete the log chunks of a relayed build; they stay beside the compacted log", "build", ref, "error", err)
	}
}

var errNotYet = errors.New("not compacted yet")

func (a *Aggregator) chunksWaiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.chunked) > 0
}

// dropWaitingChunks retries dropChunks for the builds waiting for it.
func (a *Aggregator) dropWaitingChunks(ctx context.Context) {
	a.mu.Lock()
	waiting := make(map[string]chunkWait, len(a.chunked))
	maps.Copy(waiting, a.chunked)
	a.mu.Unlock()
	for ref, w := range waiting {
		if ctx.Err() != nil {
			return
		}
		a.dropChunks(ctx, ref, w)
	}
}

// relay is one pass over one build by the lease holder.
type relay struct {
	a     *Aggregator
	ref   string
	lease heldLease
	final bool
	// cached is this replica's last view of the cursor, usable while its
	// lease has been valid throughout; cur and etag are the cursor after
	// the pass.
	cached *heldBuild
	cur    cursor
	etag   string
}

// keep renews the lease when it is past a third of its life and reports an
// error when it cannot be held.
func (r *relay) keep(ctx context.Context) error {
	d := r.a.cfg.LeaseDuration
	if time.Until(r.lease.expires) > 2*d/3 {
		return nil
	}
	l, err := acquire(ctx, r.a.store, r.ref, r.a.cfg.Holder, d, time.Now())
	if err != nil {
		return err
	}
	r.lease = l
	return nil
}

// deliver calls fn with retries (backoff with jitter) while the lease is
// held; a permanent error ends it at once.
func (r *relay) deliver(ctx context.Context, fn func() error) error {
	policy := backoff.Policy{Min: r.a.cfg.RetryMin, Max: r.a.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
		if err := r.keep(ctx); err != nil {
			return err
		}
		err := fn()
		if err == nil || errors.Is(err, ErrPermanent) || errors.Is(err, ErrRefused) {
			return err
		}
		r.a.countError(errSink)
		if attempt == 0 {
			r.a.cfg.Logger.Warn("sink delivery failed, retrying", "build", r.ref, "error", err)
		}
		if err := policy.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

func (r *relay) run(ctx context.Context) error {
	s := r.a.store
	var cur cursor
	var etag string
	var err error
	if r.cached != nil {
		cur, etag = r.cached.cur, r.cached.etag
	} else if cur, etag, err = readCursor(ctx, s, r.ref); err != nil {
		return err
	}
	// Whatever happens below, remember the cursor as last written.
	defer func() { r.cur, r.etag = cur, etag }()
	delivered := false
	defer func() {
		if cur.Final {
			r.a.setHot(r.ref, false)
		} else if delivered {
			r.a.setHot(r.ref, true)
		}
	}()
	if cur.Final {
		r.final = true
		return nil
	}
	b := Build{Ref: r.ref, ID: r.a.buildID(ctx, r.ref)}
	// Status first: the chunks listed after it hold every line written
	// before it.
	st, _, err := build.ReadStatus(ctx, s, r.ref)
	statusKnown := err == nil
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if statusKnown {
		if st, err = r.a.failIfLost(ctx, r.ref, st); err != nil {
			return err
		}
	}
	chunks, err := build.AllChunks(ctx, s, r.ref, cur.Seq)
	if err != nil {
		return err
	}
	// Relay the chunks in batches bounded by lines and bytes.
	for len(chunks) > 0 {
		var recs []build.Record
		var last uint64
		size := 0
		for len(chunks) > 0 && (len(recs) == 0 || len(recs) < r.a.cfg.BatchLines && size < r.a.cfg.BatchBytes) {
			c := chunks[0]
			data, err := build.ReadChunk(ctx, s, r.ref, c.Seq)
			if err != nil {
				return err
			}
			if err := build.ScanRecords(bytes.NewReader(data), func(rec build.Record) error { recs = append(recs, rec); return nil }); err != nil {
				return fmt.Errorf("chunk %d of build %s: %w", c.Seq, r.ref, err)
			}
			size += len(data)
			last = c.Seq
			chunks = chunks[1:]
		}
		if err := r.deliver(ctx, func() error { return r.a.sink.Lines(ctx, b, recs) }); err != nil {
			return err
		}
		if oldest := oldestLine(recs); !oldest.IsZero() {
			r.a.lag.observe(time.Since(oldest))
		}
		next := cur
		next.Seq = last
		if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
			return err
		}
		cur = next
		delivered = true
		r.a.LinesRelayed.Add(uint64(len(recs)))
		r.a.BatchesRelayed.Add(1)
	}
	if !statusKnown {
		return nil
	}
	if st.Status == cur.Status && st.Reason == cur.Reason {
		return nil // artifacts are relayed with a status change
	}
	// Artifacts and test results go before the status, so wharf-api has
	// them when it shows the build as done.
	for _, kind := range []fileKind{artifactFiles, testResultFiles} {
		files, err := build.ListFiles(ctx, s, kind.prefix(r.ref))
		if err != nil {
			return err
		}
		for _, f := range files {
			if slices.Contains(*kind.relayed(&cur), f.Name) {
				continue
			}
			err := r.deliver(ctx, func() error {
				rc, _, err := s.Get(ctx, kind.prefix(r.ref)+f.Name)
				if err != nil {
					return err
				}
				defer rc.Close()
				return kind.send(r.a.sink)(ctx, b, f.Name, rc)
			})
			if errors.Is(err, ErrRefused) {
				r.a.FilesRefused.Add(1)
				r.a.cfg.Logger.Warn("file refused by the sink; not sent again", "build", r.ref, "file", f.Name, "error", err)
			} else if err != nil {
				return err
			} else {
				r.a.FilesRelayed.Add(1)
			}
			next := cur
			list := kind.relayed(&next)
			*list = append(append([]string(nil), *list...), f.Name)
			if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
				return err
			}
			cur = next
		}
	}
	if st.Status != cur.Status || st.Reason != cur.Reason {
		if err := r.deliver(ctx, func() error { return r.a.sink.Status(ctx, b, st) }); err != nil {
			return err
		}
		next := cur
		next.Status, next.Reason = st.Status, st.Reason
		next.Final = st.Status.Final()
		if etag, err = writeCursor(ctx, s, r.ref, next, etag); err != nil {
			return err
		}
		cur = next
		delivered = true
		r.a.StatusRelayed.Add(1)
	}
	r.final = cur.Final
	return nil
}

// oldestLine is the earliest timestamp of recs (zero when none has one).
func oldestLine(recs []build.Record) time.Time {
	var t time.Time
	for _, r := range recs {
		if !r.Time.IsZero() && (t.IsZero() || r.Time.Before(t)) {
			t = r.Time
		}
	}
	return t
}

// lostReason says why a build whose status is not final will never finish,
// or "" when it may still.
func (a *Aggregator) lostReason(st build.Status, now time.Time) string {
	if st.Status.Final() || st.Status == "" {
		return ""
	}
	a.mu.Lock()
	b, hasJob := a.states[st.Ref]
	known := a.statesOK && a.jobs != nil
	a.mu.Unlock()
	switch {
	case known && !hasJob && now.Sub(st.UpdatedAt) > a.cfg.MissingGrace:
		return build.ReasonWorkerLost + ": the build's Job is gone"
	case hasJob && b.Phase == "Failed":
		if b.Reason == "DeadlineExceeded" {
			return build.ReasonDeadlineExceeded
		}
		return build.ReasonWorkerLost + ": the worker failed (" + b.Reason + ")"
	case hasJob && b.Phase == "Completed":
		return build.ReasonWorkerLost + ": the worker exited without recording a final status"
	case hasJob && b.Stuck != "":
		return b.Stuck
	case st.Status == build.Running && st.Heartbeat != nil && now.Sub(*st.Heartbeat) > a.cfg.HeartbeatTimeout:
		return fmt.Sprintf("%s: no heartbeat since %s", build.ReasonWorkerLost, st.Heartbeat.UTC().Format(time.RFC3339))
	}
	return ""
}

// requestInfo is what the aggregator needs of a build's request.json.
type requestInfo struct {
	id, instance string
}

// buildID is wharf-api's id of a build, from its request.json; the ref
// when there is none.
func (a *Aggregator) buildID(ctx context.Context, ref string) string {
	info, _ := a.request(ctx, ref)
	return info.id
}

// ours reports whether ref is a build of this aggregator's instance, by the
// instance in its request.json (a build without one has no instance).
func (a *Aggregator) ours(ctx context.Context, ref string) (bool, error) {
	info, err := a.request(ctx, ref)
	if err != nil {
		return false, err
	}
	return info.instance == a.cfg.WharfInstance, nil
}

// request reads the build's request.json once (it never changes) and
// caches what the relay needs of it.
func (a *Aggregator) request(ctx context.Context, ref string) (requestInfo, error) {
	a.mu.Lock()
	info, ok := a.ids[ref]
	a.mu.Unlock()
	if ok {
		return info, nil
	}
	info = requestInfo{id: ref}
	raw, _, err := blob.ReadAll(ctx, a.store, build.RequestKey(ref), 1<<20)
	switch {
	case err == nil:
		var req job.Request
		if err := json.Unmarshal(raw, &req); err != nil {
			return info, fmt.Errorf("decode request of build %s: %w", ref, err)
		}
		if req.BuildRef != "" {
			info.id = req.BuildRef
		}
		info.instance = req.Instance
	case !errors.Is(err, blob.ErrNotFound):
		return info, fmt.Errorf("read request of build %s: %w", ref, err)
	}
	a.mu.Lock()
	a.ids[ref] = info
	a.mu.Unlock()
	return info, nil
}

// failIfLost marks a lost build Failed, with a last log line saying why,
// so the status reaches the sink like any other. It returns the status as
// it is afterwards.
func (a *Aggregator) failIfLost(ctx context.Context, ref string, st build.Status) (build.Status, error) {
	reason := a.lostReason(st, time.Now())
	if reason == "" {
		return st, nil
	}
	if err := build.WriteSystemLine(ctx, a.store, ref, "build failed: "+reason, a.cfg.Logger); err != nil {
		return st, err
	}
	now := time.Now().UTC()
	st, err := build.UpdateStatus(ctx, a.store, ref, func(st *build.Status) error {
		if st.Status.Final() {
			return build.ErrNoChange // the worker finished after all
		}
		st.Status, st.Reason, st.FinishedAt = build.Failed, reason, &now
		// Its steps that were running ended with it: none stays Running
		// in a build that is over.
		for i := range st.Steps {
			if !st.Steps[i].Status.Final() {
				st.Steps[i].Status, st.Steps[i].Reason, st.Steps[i].FinishedAt = build.Failed, reason, &now
			}
		}
		return nil
	})
	if err == nil {
		a.cfg.Logger.Warn("build lost, marked Failed", "build", ref, "reason", reason)
	}
	return st, err
}

// Compare fails the builds wharf-api has in Scheduling or Running, for
// longer than TriggerGrace, that wharfjobs has never heard of: it records
// them in the store (request, a log line, status Failed with reason
// TriggerLost), and the relay sends that status to wharf-api like any
// other.
func (a *Aggregator) Compare(ctx context.Context, remote Remote) error {
	builds, err := remote.ActiveBuilds(ctx)
	if err != nil {
		return err
	}
	for _, rb := range builds {
		if time.Since(rb.ScheduledOn) < a.cfg.TriggerGrace {
			continue
		}
		req := job.Request{BuildRef: rb.ID, Instance: a.cfg.WharfInstance}
		ref := req.Ref()
		if build.ValidateRef(ref) != nil {
			continue
		}
		if _, err := a.store.Stat(ctx, build.StatusKey(ref)); err == nil || !errors.Is(err, blob.ErrNotFound) {
			continue // known, or the store cannot tell now
		}
		body, err := req.MarshalPublic()
		if err != nil {
			return err
		}
		if _, err := a.store.Put(ctx, build.RequestKey(ref), bytes.NewReader(body), int64(len(body)), blob.PutOptions{ContentType: "application/json", IfNoneMatch: true}); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
			return err
		}
		reason := fmt.Sprintf("%s: wharf-api has had this build in %s since %s, but its trigger never reached wharfjobs", ReasonTriggerLost, rb.Status, rb.ScheduledOn.UTC().Format(time.RFC3339))
		if err := build.WriteSystemLine(ctx, a.store, ref, "build failed: "+reason, a.cfg.Logger); err != nil {
			return err
		}
		now := time.Now().UTC()
		if _, err := build.WriteStatus(ctx, a.store, ref, build.Status{Status: build.Failed, Reason: reason, FinishedAt: &now}, ""); err != nil && !errors.Is(err, blob.ErrPreconditionFailed) {
			return err
		}
		a.cfg.Logger.Warn("build unknown to wharfjobs, marked Failed", "build", ref, "reason", reason)
	}
	return nil
}
