package job

import (
	"errors"
	"time"
)

// ErrNotFound means no build has that worker id.
var ErrNotFound = errors.New("build not found")

// Build is a launched build as its launcher (a Kubernetes Job, or a local
// worker process) shows it.
type Build struct {
	// WorkerID names the build to its launcher (the Job's name): what
	// wharf-api stores as workerId, at most 40 characters.
	WorkerID  string
	BuildRef  string
	Ref       string
	Instance  string
	CreatedAt time.Time
	// Phase as the launcher sees it: Scheduling (created, queued or not
	// running yet), Running, Completed or Failed.
	Phase  string
	Reason string
	// Queued is set for a build waiting for a slot.
	Queued bool
	// Stuck names why the worker cannot start, e.g. "ImagePullBackOff:
	// wharfjobs:1.2", when its pod waits for something that will not come.
	Stuck string
	// Waiting says why the worker's pod has not started while it is
	// pending ("waiting for a node: ...", "pulling image ..."), as
	// kube.Waiting tells it; "" when it says nothing.
	Waiting string
}

// Queue is the launcher's queue of builds waiting for a slot.
type Queue struct {
	// Queued are the builds waiting, oldest first: the order they are
	// released in.
	Queued []Build
	// Running counts the builds that hold a slot; Max is the number of
	// slots (WHARFJOBS_MAX_RUNNING_BUILDS), 0 when there is no cap.
	Running, Max int
	// Kueue names the Kueue queue that admits the builds instead, when
	// one is configured: then Queued wait for its admission.
	Kueue string
}
