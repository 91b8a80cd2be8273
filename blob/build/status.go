package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob"
)

// Phase is a build's (or a step's) state, spelled exactly as wharf-api
// accepts it.
type Phase string

// The phases of docs/architecture.md: Scheduling -> Running -> Completed | Failed.
const (
	Scheduling Phase = "Scheduling"
	Running    Phase = "Running"
	Completed  Phase = "Completed"
	Failed     Phase = "Failed"
)

// Final reports whether the phase is an end state.
func (p Phase) Final() bool { return p == Completed || p == Failed }

// Valid reports whether p is one of the four phases.
func (p Phase) Valid() bool {
	return p == Scheduling || p == Running || p == Completed || p == Failed
}

// Reason is why a build or a step ended as it did: the first word of a
// status document's reason, which callers branch on. Status.Reason and
// StepStatus.Reason stay strings (the JSON is unchanged); With adds the
// detail after the word.
//
// The reasons below are the only ones wharfjobs writes; Kubernetes' own
// waiting reasons of a stuck container (ImagePullBackOff, ...) pass through
// as Kubernetes spells them.
type Reason string

// With is the reason with a detail, "Reason: detail", as status documents
// carry it; an empty detail gives the reason alone.
func (r Reason) With(detail string) string {
	if detail == "" {
		return string(r)
	}
	return string(r) + ": " + detail
}

// Withf is With of a formatted detail.
func (r Reason) Withf(format string, args ...any) string {
	return r.With(fmt.Sprintf(format, args...))
}

// String is the reason alone.
func (r Reason) String() string { return string(r) }

// Of reports whether the status reason s is r, with or without a detail.
func (r Reason) Of(s string) bool {
	return s == string(r) || len(s) > len(r)+1 && s[:len(r)+2] == string(r)+": "
}

// Reasons recorded in status documents that callers branch on.
const (
	ReasonQueued           Reason = "Queued"
	ReasonCancelled        Reason = "Cancelled"
	ReasonDeadlineExceeded Reason = "DeadlineExceeded"
	ReasonWorkerLost       Reason = "WorkerLost"
	// ReasonLaunchFailed: the provisioner stored the build but could not
	// create its Job (or worker process).
	ReasonLaunchFailed Reason = "LaunchFailed"
	// ReasonTriggerLost: wharf-api has the build, wharfjobs never got its
	// trigger.
	ReasonTriggerLost Reason = "TriggerLost"
	// ReasonQueueTimeout: the build waited in the queue (for a slot of
	// WHARFJOBS_MAX_RUNNING_BUILDS, or Kueue's admission) longer than
	// WHARFJOBS_QUEUE_TIMEOUT.
	ReasonQueueTimeout Reason = "QueueTimeout"
	// ReasonOutputsFailed: the files a step declared could not be
	// collected or kept (a limit, a path outside the workspace,
	// ifNoFilesFound: error).
	ReasonOutputsFailed Reason = "OutputsFailed"
	// ReasonCloneFailed, ReasonInvalidPipeline: the build could not start.
	ReasonCloneFailed     Reason = "CloneFailed"
	ReasonInvalidPipeline Reason = "InvalidPipeline"
	// ReasonStepFailed: a step failed ("StepFailed: build/compile exit 2").
	ReasonStepFailed Reason = "StepFailed"
	// Step reasons a runner gives.
	ReasonTimeout              Reason = "Timeout"
	ReasonOOMKilled            Reason = "OOMKilled"
	ReasonEvicted              Reason = "Evicted"
	ReasonUnschedulable        Reason = "Unschedulable"
	ReasonPodDeleted           Reason = "PodDeleted"
	ReasonWorkspaceFetchFailed Reason = "WorkspaceFetchFailed"
	// ReasonRestoreFailed: earlier stages' artifacts could not be put
	// into the step's workspace.
	ReasonRestoreFailed Reason = "RestoreFailed"
	// ReasonImagePullFailed: the docker runner could not get the step's
	// image ("ImagePullFailed: <image>: <engine message>").
	ReasonImagePullFailed Reason = "ImagePullFailed"
)

// Status is the document at builds/<ref>/status.json.
type Status struct {
	Ref    string `json:"ref"`
	Status Phase  `json:"status"`
	// Reason says why the build is in its phase, e.g. "Queued",
	// "StepFailed: build/compile exit 2", "DeadlineExceeded".
	Reason string `json:"reason,omitempty"`
	// Commit is the exact SHA the worker checked out.
	Commit     string     `json:"commit,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	// Heartbeat is refreshed by a running worker; the aggregator fails a
	// build whose heartbeat is too old.
	Heartbeat *time.Time   `json:"heartbeat,omitempty"`
	Steps     []StepStatus `json:"steps,omitempty"`
	// Log is set once the log has been compacted into log.ndjson.
	Log *LogState `json:"log,omitempty"`
}

// LogState records what log.ndjson holds: exactly the chunks 1 through
// CompactedThrough, concatenated; CompactedSize bytes of NDJSON, the
// offset in the log that follows them. The object itself is ObjectSize
// bytes: fewer when it is zstd.
type LogState struct {
	CompactedThrough uint64 `json:"compactedThrough"`
	CompactedSize    int64  `json:"compactedSize"`
	// ObjectSize is the size of the log.ndjson object; 0 in a status
	// written before logs were compressed, when it was CompactedSize.
	ObjectSize int64 `json:"compactedObjectSize,omitempty"`
}

// objectSize is the size log.ndjson has when it is what s describes.
func (s LogState) objectSize() int64 {
	if s.ObjectSize > 0 {
		return s.ObjectSize
	}
	return s.CompactedSize
}

// StepStatus is one step's state within a status document.
type StepStatus struct {
	Stage      string     `json:"stage"`
	Step       string     `json:"step"`
	Status     Phase      `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	ExitCode   *int       `json:"exitCode,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Artifacts and ArtifactBytes count the files the step kept, stored
	// under ArtifactPrefix(ref) + StepFilesPath(stage, step).
	Artifacts     int   `json:"artifacts,omitempty"`
	ArtifactBytes int64 `json:"artifactBytes,omitempty"`
	// Tests sums the step's test results (TestResultPrefix).
	Tests *TestCounts `json:"tests,omitempty"`
}

// TestCounts are the outcomes of a step's tests.
type TestCounts struct {
	Total   int `json:"total"`
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

// Add adds o to c.
func (c *TestCounts) Add(o TestCounts) {
	c.Total, c.Passed, c.Failed, c.Skipped = c.Total+o.Total, c.Passed+o.Passed, c.Failed+o.Failed, c.Skipped+o.Skipped
}

// maxStatusSize bounds how much of a status document is read.
const maxStatusSize = 4 << 20

// ReadStatus returns the build's status and its ETag for a later
// WriteStatus. A missing document is blob.ErrNotFound.
func ReadStatus(ctx context.Context, s blob.Store, ref string) (Status, string, error) {
	b, info, err := blob.ReadAll(ctx, s, StatusKey(ref), maxStatusSize)
	if err != nil {
		return Status{}, "", fmt.Errorf("read status of build %s: %w", ref, err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return Status{}, "", fmt.Errorf("read status of build %s: %w", ref, err)
	}
	return st, info.ETag, nil
}

// WriteStatus stores st. With etag "" it creates the document and fails
// with blob.ErrPreconditionFailed if one exists; otherwise it replaces the
// document only if its ETag is still etag, so two writers never overwrite
// each other silently. It returns the new ETag.
func WriteStatus(ctx context.Context, s blob.Store, ref string, st Status, etag string) (string, error) {
	if !st.Status.Valid() {
		return "", fmt.Errorf("write status of build %s: status %q is not one of Scheduling, Running, Completed, Failed", ref, st.Status)
	}
	st.Ref = ref
	st.UpdatedAt = time.Now().UTC()
	if st.CreatedAt.IsZero() {
		st.CreatedAt = st.UpdatedAt
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", fmt.Errorf("write status of build %s: %w", ref, err)
	}
	b = append(b, '\n')
	opts := blob.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatch: etag == ""}
	info, err := s.Put(ctx, StatusKey(ref), bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		return "", fmt.Errorf("write status of build %s: %w", ref, err)
	}
	return info.ETag, nil
}

// ErrNoChange, returned by an UpdateStatus callback, leaves the document
// as it is.
var ErrNoChange = errors.New("no change")

// UpdateStatus reads the status (a zero Status for a missing one), lets fn
// change it, and writes it back conditionally. When another writer got in
// between, it reads again and calls fn again, backing off with jitter,
// until ctx ends. It returns the status as stored.
func UpdateStatus(ctx context.Context, s blob.Store, ref string, fn func(*Status) error) (Status, error) {
	// Conflicts clear as soon as the other writer is done: retry quickly.
	policy := backoff.Policy{Min: 10 * time.Millisecond, Max: time.Second}
	for attempt := 0; ; attempt++ {
		st, etag, err := ReadStatus(ctx, s, ref)
		if err != nil && !errors.Is(err, blob.ErrNotFound) {
			return Status{}, err
		}
		if err := fn(&st); err != nil {
			if errors.Is(err, ErrNoChange) {
				return st, nil
			}
			return Status{}, err
		}
		_, err = WriteStatus(ctx, s, ref, st, etag)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, blob.ErrPreconditionFailed) {
			return Status{}, err
		}
		if err := policy.Sleep(ctx, attempt); err != nil {
			return Status{}, fmt.Errorf("update status of build %s: %w", ref, err)
		}
	}
}
