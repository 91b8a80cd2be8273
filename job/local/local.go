// Package local is the Launcher of the embedded default (wharfjobs dev):
// each build's worker runs as a child process (the same worker code, with
// the local step runner) instead of a Kubernetes Job.
package local

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// Launcher starts worker processes.
type Launcher struct {
	// Command returns the command that runs `wharfjobs worker --ref ref`.
	Command func(ref string) *exec.Cmd
	// StateDir holds each build's workspace, secrets and worker log.
	StateDir string
	// Env is added to every worker's environment (the store settings).
	Env []string
	// StopGrace is how long a cancelled worker gets to record Cancelled
	// and flush its log before it is killed.
	StopGrace time.Duration
	// StepRunner is the workers' WHARFJOBS_STEP_RUNNER: local (the
	// default) or docker.
	StepRunner string

	mu      sync.Mutex
	workers map[string]*worker
	// exits receive the ref of each worker that exits (WatchRefs).
	exits []chan string
}

type worker struct {
	build job.Build
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
}

func (l *Launcher) grace() time.Duration {
	if l.StopGrace > 0 {
		return l.StopGrace
	}
	return 30 * time.Second
}

// Launch starts the build's worker, or returns the running one.
func (l *Launcher) Launch(ctx context.Context, req job.Request) (job.Build, bool, error) {
	id := kube.JobName(req.Instance, req.BuildRef)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.workers == nil {
		l.workers = map[string]*worker{}
	}
	if w, ok := l.workers[id]; ok {
		return l.view(w), false, nil
	}
	ref := req.Ref()
	secrets := filepath.Join(l.StateDir, "secrets", ref)
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return job.Build{}, false, err
	}
	if req.GitToken != "" {
		if err := os.WriteFile(filepath.Join(secrets, kube.GitTokenKey), []byte(req.GitToken), 0o600); err != nil {
			return job.Build{}, false, err
		}
	}
	if len(req.Vars) > 0 {
		b, err := json.Marshal(req.Vars)
		if err != nil {
			return job.Build{}, false, err
		}
		if err := os.WriteFile(filepath.Join(secrets, kube.VarsKey), b, 0o600); err != nil {
			return job.Build{}, false, err
		}
	}
	work := filepath.Join(l.StateDir, "work", ref)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return job.Build{}, false, err
	}
	// The worker's temporary files (step scripts and workspaces, log
	// spill) under the state directory, removed when it exits: a worker
	// that is killed cannot remove them itself.
	tmp := filepath.Join(l.StateDir, "tmp", ref)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return job.Build{}, false, err
	}
	logPath := filepath.Join(l.StateDir, "workers", ref+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return job.Build{}, false, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return job.Build{}, false, err
	}
	cmd := l.Command(ref)
	cmd.Env = append(append(os.Environ(), l.Env...),
		"WHARFJOBS_BUILD_REF="+ref,
		"WHARFJOBS_STEP_RUNNER="+cmp.Or(l.StepRunner, "local"),
		"WHARFJOBS_WORKDIR="+work,
		"WHARFJOBS_SECRETS_DIR="+secrets,
		"WHARFJOBS_LOG_FORMAT=text",
		"WHARFJOBS_LOG_FLUSH_INTERVAL=200ms",
		"TMPDIR="+tmp,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal goes to dev, which
	// then stops each worker in order, not to all of them at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return job.Build{}, false, fmt.Errorf("start worker of build %s: %w", ref, err)
	}
	w := &worker{
		build: job.Build{WorkerID: id, BuildRef: req.BuildRef, Ref: ref, Instance: req.Instance, CreatedAt: time.Now().UTC(), Phase: "Running"},
		cmd:   cmd,
		done:  make(chan struct{}),
	}
	go func() {
		w.err = cmd.Wait()
		logf.Close()
		_ = os.RemoveAll(tmp)
		close(w.done)
		l.exited(ref)
	}()
	l.workers[id] = w
	return l.view(w), true, nil
}

// view is the build as the process shows it.
func (l *Launcher) view(w *worker) job.Build {
	b := w.build
	select {
	case <-w.done:
		b.Phase = "Completed"
		if w.err != nil {
			b.Phase, b.Reason = "Failed", w.err.Error()
		}
	default:
	}
	return b
}

// States returns every worker this launcher started, by build ref: what
// the aggregator needs to tell a build whose worker died (SIGKILL, a
// crash) from one still running, as it does with Jobs in a cluster.
func (l *Launcher) States(context.Context) (map[string]job.Build, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]job.Build, len(l.workers))
	for _, w := range l.workers {
		out[w.build.Ref] = l.view(w)
	}
	return out, nil
}

// WatchRefs sends the ref of each worker that exits, until ctx ends: the
// aggregator then looks at that build at once instead of at its next
// poll.
func (l *Launcher) WatchRefs(ctx context.Context) <-chan string {
	in := make(chan string, 16)
	out := make(chan string)
	l.mu.Lock()
	l.exits = append(l.exits, in)
	l.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			l.mu.Lock()
			for i, c := range l.exits {
				if c == in {
					l.exits = append(l.exits[:i], l.exits[i+1:]...)
					break
				}
			}
			l.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case ref := <-in:
				select {
				case out <- ref:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (l *Launcher) exited(ref string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.exits {
		select {
		case c <- ref:
		default: // a watcher that is behind re-lists the states anyway
		}
	}
}

// List implements the provisioner's Launcher.
func (l *Launcher) List(_ context.Context, instance string) ([]job.Build, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []job.Build
	for _, w := range l.workers {
		if instance == "" || w.build.Instance == instance {
			out = append(out, l.view(w))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Get implements the provisioner's Launcher.
func (l *Launcher) Get(_ context.Context, id string) (job.Build, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.workers[id]
	if !ok {
		return job.Build{}, fmt.Errorf("worker %s: %w", id, job.ErrNotFound)
	}
	return l.view(w), nil
}

// Cancel stops the worker with SIGTERM (it records Cancelled and flushes
// its log), and kills it after StopGrace.
func (l *Launcher) Cancel(ctx context.Context, id string) (job.Build, error) {
	l.mu.Lock()
	w, ok := l.workers[id]
	l.mu.Unlock()
	if !ok {
		return job.Build{}, fmt.Errorf("worker %s: %w", id, job.ErrNotFound)
	}
	l.stop(ctx, w)
	return l.view(w), nil
}

func (l *Launcher) stop(ctx context.Context, w *worker) {
	select {
	case <-w.done:
		return
	default:
	}
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(l.grace()):
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	case <-ctx.Done():
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
	}
}

// StopAll cancels every running worker and waits for them.
func (l *Launcher) StopAll(ctx context.Context) {
	l.mu.Lock()
	ws := make([]*worker, 0, len(l.workers))
	for _, w := range l.workers {
		ws = append(ws, w)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); l.stop(ctx, w) }()
	}
	wg.Wait()
}

// Wait blocks until the worker of id has exited.
func (l *Launcher) Wait(ctx context.Context, id string) error {
	l.mu.Lock()
	w, ok := l.workers[id]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("worker %s: %w", id, job.ErrNotFound)
	}
	select {
	case <-w.done:
		var exit *exec.ExitError
		if errors.As(w.err, &exit) {
			return nil // the build failed; the worker did its job
		}
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready implements the provisioner's Launcher: processes can always start.
func (l *Launcher) Ready(context.Context) error { return nil }
