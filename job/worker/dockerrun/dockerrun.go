// Package dockerrun is the StepRunner that runs each step as a container
// of the step's image through a Docker Engine API socket: Docker's, or
// Podman's compatible one (the same code serves both, with API version
// negotiation). It is the runner for machines without a cluster, and for
// trying a pipeline on a laptop in the images it names.
//
// A step is one container: the step's script run by its shell, as in the
// other runners; the step's own copy of the checkout bind-mounted at
// /workspace (the same workspace model: earlier stages' artifacts restored
// into it, declared files collected from it, on the worker's side); the
// build's variables as its environment and nothing else (no store keys, no
// git token); no network unless the operator gives one; the step resource
// limits of the kube runner; labels that name the build and the step. Its
// stdout and stderr are attached before it starts, so no line is lost.
package dockerrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/localrun"
)

// Paths inside a step container, the kube runner's.
const (
	WorkspacePath = "/workspace"
	ScriptPath    = "/var/run/wharfjobs/script"
	HomePath      = "/var/run/wharfjobs/home"
	// SecretPath is where a step's secretName files are, as in a step pod.
	SecretPath = "/var/run/wharf/secret"
	// SocketPath is where a step finds the engine's socket when the
	// operator mounts it (WHARFJOBS_DOCKER_MOUNT_SOCKET).
	SocketPath = "/var/run/docker.sock"
)

// ErrUnsupported is returned for a step this runner cannot run (a
// Windows step).
var ErrUnsupported = errors.New("not supported by the docker runner")

// ErrMountNotAllowed is returned for a step that would read another
// project's Secret.
var ErrMountNotAllowed = errors.New("mount not allowed")

// Runner runs steps as containers. Create it with New.
type Runner struct {
	Config Config
	cli    *client.Client
	host   string

	mu    sync.Mutex
	swept map[string]bool // build refs whose leftovers were removed

	engineOnce sync.Once
	podman4    bool // the engine is a Podman that does not report OOM kills
}

var _ worker.StepRunner = (*Runner)(nil)

// New connects to the engine at cfg.Host (DefaultHost when empty). It does
// not call the engine yet: Ping does.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host := cfg.Host
	if host == "" {
		host = DefaultHost()
	}
	// The client negotiates the API version on its first call (the
	// module's default): Docker 20.10 and Podman 4 speak 1.41.
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker runner: engine %s: %w", host, err)
	}
	return &Runner{Config: cfg, cli: cli, host: host}, nil
}

// Name implements worker.StepRunner.
func (*Runner) Name() string { return "docker" }

// Host is the engine socket the runner talks to.
func (r *Runner) Host() string { return r.host }

// Close releases the connection to the engine.
func (r *Runner) Close() error { return r.cli.Close() }

// Ping checks that the engine answers and says what it is, e.g. "Docker
// Engine 20.10.24 (API 1.41)" or "Podman Engine 4.3.1 (API 1.41)".
func (r *Runner) Ping(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout)
	defer cancel()
	v, err := r.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", fmt.Errorf("engine %s: %w", r.host, err)
	}
	product := "Docker Engine"
	for _, c := range v.Components {
		if strings.Contains(c.Name, "Podman") {
			product = "Podman Engine"
		}
	}
	return fmt.Sprintf("%s %s (API %s)", product, v.Version, v.APIVersion), nil
}

// toolTypes are the step types that talk to a registry or a cluster and
// get ToolNetwork instead of Network.
var toolTypes = []string{"docker", "helm", "helm-package", "kubectl", "nuget-package"}

// Run implements worker.StepRunner.
func (r *Runner) Run(ctx context.Context, step worker.Step, stdout, stderr io.Writer) (worker.Result, error) {
	failed := worker.Result{ExitCode: -1}
	c := step.Container
	if c.OS == "windows" {
		return failed, fmt.Errorf("step %s/%s: windows steps are %w (Linux containers only)", step.Stage, step.Name, ErrUnsupported)
	}
	if c.ServiceAccount != "" {
		fmt.Fprintf(stderr, "[wharfjobs] docker runner: serviceAccount %s is a cluster object; the step gets no token\n", c.ServiceAccount)
	}
	if !step.Files.Empty() && step.Transport == nil {
		return failed, errors.New("step files: no transport to the store")
	}
	r.sweep(ctx, step.Ref, stderr)
	if reason := r.ensureImage(ctx, c.Image, stderr); reason != "" {
		return worker.Result{ExitCode: -1, Reason: reason}, nil
	}
	dir, err := os.MkdirTemp("", "wharfjobs-step-*")
	if err != nil {
		return failed, fmt.Errorf("step script: %w", err)
	}
	defer os.RemoveAll(dir)
	// Readable by the container's user, whoever the image makes it; the
	// directory around it keeps it from this machine's other users.
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(strings.Join(c.Cmds, "\n")+"\n"), 0o644); err != nil {
		return failed, fmt.Errorf("step script: %w", err)
	}
	work := filepath.Join(dir, "workspace")
	if err := localrun.CopyWorkspace(ctx, step.Workspace, work); err != nil {
		return failed, fmt.Errorf("step workspace: %w", err)
	}
	if err := stepexec.Before(ctx, step.Files, step.Transport, work, stderr); err != nil {
		return worker.Result{ExitCode: -1, Reason: build.ReasonRestoreFailed.With(err.Error())}, nil
	}
	spec, err := r.spec(step, dir, work, stderr)
	if err != nil {
		return failed, err
	}
	res, id, err := r.runContainer(ctx, step, spec, stdout, stderr)
	if id != "" && !(r.Config.KeepOnFailure && (err != nil || res.ExitCode != 0 || res.Reason != "")) {
		r.remove(id)
	} else if id != "" {
		fmt.Fprintf(stderr, "[wharfjobs] container %s kept (WHARFJOBS_STEP_KEEP_ON_FAILURE)\n", spec.name)
	}
	if err != nil {
		return failed, err
	}
	if res.ExitCode != 0 && ctx.Err() != nil {
		res.Reason = build.ReasonCancelled.String()
		return res, nil
	}
	// Test results are wanted most from a step that failed, OOMKilled
	// included: the declared files are collected whatever the ending; a
	// reason the step already has stays the step's reason.
	err = stepexec.After(ctx, step.Files, step.Transport, work, res.ExitCode == 0 && res.Reason == "", dir, stderr)
	if err != nil && res.Reason == "" {
		res.Reason = build.ReasonOutputsFailed.With(err.Error())
	}
	return res, nil
}

// containerSpec is what Run creates.
type containerSpec struct {
	name   string
	config *container.Config
	host   *container.HostConfig
}

var nonName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// containerName is readable in `docker ps` (build, stage, step) and unique:
// a container kept from an earlier run of the same step must not block
// this one.
func containerName(ref, stage, step string) string {
	base := strings.Trim(nonName.ReplaceAllString("wharf-"+ref+"-"+stage+"-"+step, "-"), "-.")
	if len(base) > 52 {
		base = strings.TrimRight(base[:52], "-.")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return base + "-" + hex.EncodeToString(b)
}

// spec renders the container of a step whose script is dir/script and
// whose workspace is work. The variables of its Secret go into dir/env,
// which the shell reads before the script: in the container's config they
// would be shown to everyone who may inspect containers.
func (r *Runner) spec(step worker.Step, dir, work string, stderr io.Writer) (containerSpec, error) {
	c := step.Container
	shell := c.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	environ := step.Environ()
	binds := []string{work + ":" + WorkspacePath, filepath.Join(dir, "script") + ":" + ScriptPath + "/script:ro"}
	host := &container.HostConfig{
		NetworkMode: container.NetworkMode(r.Config.Network),
		Privileged:  r.Config.Privileged,
		// No process in the step gains privileges it did not start with
		// (setuid binaries), as allowPrivilegeEscalation: false in a pod.
		SecurityOpt: []string{"no-new-privileges"},
		Tmpfs:       map[string]string{},
	}
	if slices.Contains(toolTypes, step.Type) {
		host.NetworkMode = container.NetworkMode(r.Config.ToolNetwork)
	}
	user := r.Config.User
	if step.Type == "docker" {
		user = "image" // kaniko unpacks images as root
	}
	switch user {
	case "image":
		user = ""
	case "":
		user = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	}
	if user != "" && !r.Config.Privileged {
		// Not the image's user: no capabilities either, as a step pod
		// under the "restricted" profile; HOME somewhere writable.
		host.CapDrop = []string{"ALL"}
		if _, set := environ["HOME"]; !set {
			environ["HOME"] = HomePath
			host.Tmpfs[HomePath] = "mode=1777"
		}
	}
	if err := resources(host, r.Config.CPULimit, r.Config.MemoryLimit); err != nil {
		return containerSpec{}, err
	}
	entrypoint := []string{shell, ScriptPath + "/script"}
	if c.SecretName != "" {
		secretVars := map[string]string{}
		if err := r.secretEnv(step, secretVars, &binds); err != nil {
			return containerSpec{}, err
		}
		if err := writeEnvFile(filepath.Join(dir, "env"), secretVars, stderr); err != nil {
			return containerSpec{}, fmt.Errorf("step %s/%s: secretName %s: %w", step.Stage, step.Name, c.SecretName, err)
		}
		binds = append(binds, filepath.Join(dir, "env")+":"+ScriptPath+"/env:ro")
		entrypoint = []string{shell, "-c", ". " + ScriptPath + "/env && exec " + shell + " " + ScriptPath + "/script"}
	}
	for _, m := range c.Mounts {
		b, err := r.mountBinds(step, m, stderr)
		if err != nil {
			return containerSpec{}, fmt.Errorf("step %s/%s: %w", step.Stage, step.Name, err)
		}
		binds = append(binds, b...)
	}
	if r.Config.MountSocket {
		if path, ok := strings.CutPrefix(r.host, "unix://"); ok {
			binds = append(binds, path+":"+SocketPath)
			environ["DOCKER_HOST"] = "unix://" + SocketPath
		}
	}
	host.Binds = binds
	env := make([]string, 0, len(environ))
	for _, k := range slices.Sorted(maps.Keys(environ)) {
		env = append(env, k+"="+environ[k])
	}
	grace := graceSeconds(r.Config.StopGrace)
	return containerSpec{
		name: containerName(step.Ref, step.Stage, step.Name),
		config: &container.Config{
			Image:        c.Image,
			Entrypoint:   entrypoint,
			Cmd:          []string{},
			Env:          env,
			WorkingDir:   WorkspacePath,
			User:         user,
			Labels:       kube.StepLabels(step.Ref, step.Stage, step.Name),
			AttachStdout: true,
			AttachStderr: true,
			StopTimeout:  &grace,
		},
		host: host,
	}, nil
}

// resources sets the kube runner's limits, given as Kubernetes
// quantities, on the container. Swap is the memory limit, none more: a
// step over its limit is OOMKilled as in a pod, not slowed down.
func resources(host *container.HostConfig, cpu, memory string) error {
	if cpu != "" {
		q, err := resource.ParseQuantity(cpu)
		if err != nil {
			return fmt.Errorf("WHARFJOBS_STEP_CPU_LIMIT=%q: %w", cpu, err)
		}
		host.NanoCPUs = q.MilliValue() * 1_000_000
	}
	if memory != "" {
		q, err := resource.ParseQuantity(memory)
		if err != nil {
			return fmt.Errorf("WHARFJOBS_STEP_MEMORY_LIMIT=%q: %w", memory, err)
		}
		host.Memory, host.MemorySwap = q.Value(), q.Value()
	}
	return nil
}

// runContainer creates the container, attaches to its output, starts it
// and waits for it to end; id is the container's, "" when none was made.
func (r *Runner) runContainer(ctx context.Context, step worker.Step, spec containerSpec, stdout, stderr io.Writer) (worker.Result, string, error) {
	if ctx.Err() != nil {
		return worker.Result{ExitCode: -1, Reason: build.ReasonCancelled.String()}, "", nil
	}
	// Setting the container up is not cut short by a cancel: a start
	// abandoned halfway can leave a running container and an error for a
	// step that was merely cancelled. Once it runs, a cancel stops it.
	setup := context.WithoutCancel(ctx)
	cctx, cancel := context.WithTimeout(setup, r.Config.RequestTimeout)
	created, err := r.cli.ContainerCreate(cctx, client.ContainerCreateOptions{Name: spec.name, Config: spec.config, HostConfig: spec.host})
	cancel()
	if err != nil {
		return worker.Result{}, "", fmt.Errorf("create container of step %s/%s: %w", step.Stage, step.Name, err)
	}
	id := created.ID
	fmt.Fprintf(stderr, "[wharfjobs] container %s created (image %s, network %s)\n", spec.name, spec.config.Image, spec.host.NetworkMode)
	// Attached before it starts: the first line and the last are read
	// from the same stream, whether the step runs an hour or exits at once.
	cctx, cancel = context.WithTimeout(setup, r.Config.RequestTimeout)
	att, err := r.cli.ContainerAttach(cctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	cancel()
	if err != nil {
		return worker.Result{}, id, fmt.Errorf("attach to container %s: %w", spec.name, err)
	}
	defer att.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		copied <- err
	}()
	// The wait outlives ctx: a cancelled step is stopped, then waited for.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	wait := r.cli.ContainerWait(waitCtx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	cctx, cancel = context.WithTimeout(setup, r.Config.RequestTimeout)
	_, err = r.cli.ContainerStart(cctx, id, client.ContainerStartOptions{})
	cancel()
	if err != nil {
		return worker.Result{}, id, fmt.Errorf("start container %s: %w", spec.name, err)
	}
	var code int64
	stopped := false
	select {
	case w := <-wait.Result:
		code = w.StatusCode
	case err := <-wait.Error:
		return worker.Result{}, id, fmt.Errorf("wait for container %s: %w", spec.name, err)
	case <-ctx.Done():
		stopped = true
		r.stop(id, spec.name, stderr)
		select {
		case w := <-wait.Result:
			code = w.StatusCode
		case err := <-wait.Error:
			return worker.Result{}, id, fmt.Errorf("wait for container %s: %w", spec.name, err)
		case <-time.After(r.Config.StopGrace + r.Config.RequestTimeout):
			return worker.Result{ExitCode: -1}, id, fmt.Errorf("container %s did not stop within %s", spec.name, r.Config.StopGrace)
		}
	}
	// The engine closes the attached stream once the output is drained;
	// a stream that stays open past the bound loses nothing already read.
	select {
	case <-copied:
	case <-time.After(r.Config.RequestTimeout):
		fmt.Fprintf(stderr, "[wharfjobs] the output of container %s did not end within %s after it exited\n", spec.name, r.Config.RequestTimeout)
		// Closed, the stream ends: nothing writes after Run returns.
		att.Close()
		<-copied
	}
	res := worker.Result{ExitCode: int(code)}
	cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), r.Config.RequestTimeout)
	info, err := r.cli.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
	cancel()
	switch {
	case err == nil && info.Container.State != nil && info.Container.State.OOMKilled:
		res.Reason = build.ReasonOOMKilled.String()
		if res.ExitCode == 0 {
			res.ExitCode = 137
		}
	case code == 137 && !stopped && spec.host.Memory > 0 && r.oomUnreported(ctx):
		res.Reason = build.ReasonOOMKilled.Withf("inferred: SIGKILL under the %s memory limit, which Podman before 5.0 does not report as an OOM kill", r.Config.MemoryLimit)
	}
	return res, id, nil
}

// oomUnreported reports whether the engine never sets State.OOMKilled:
// Podman before 5.0 (containers/podman#13102, fixed by #21523). There, a
// step killed by SIGKILL under a memory limit that the runner did not
// stop was killed by the kernel's OOM killer, or by a SIGKILL of its own.
func (r *Runner) oomUnreported(ctx context.Context) bool {
	r.engineOnce.Do(func() {
		what, err := r.Ping(context.WithoutCancel(ctx))
		r.podman4 = err == nil && (strings.HasPrefix(what, "Podman Engine 4.") || strings.HasPrefix(what, "Podman Engine 3."))
	})
	return r.podman4
}

// graceSeconds is the grace in the engine's unit, whole seconds, rounded
// up: 500ms must not become an immediate SIGKILL.
func graceSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// stop stops a container: SIGTERM, then SIGKILL after the grace period.
func (r *Runner) stop(id, name string, stderr io.Writer) {
	grace := graceSeconds(r.Config.StopGrace)
	ctx, cancel := context.WithTimeout(context.Background(), r.Config.StopGrace+r.Config.RequestTimeout)
	defer cancel()
	if _, err := r.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &grace}); err != nil && !cerrdefs.IsNotFound(err) {
		fmt.Fprintf(stderr, "[wharfjobs] stopping container %s: %v\n", name, err)
	}
}

func (r *Runner) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Config.StopGrace+r.Config.RequestTimeout)
	defer cancel()
	_, _ = r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
}

// sweep removes, once per build, the containers of the build that a dead
// worker left (found by label): a step that outlived its worker would
// otherwise run on, and hold the names and resources of the rerun.
func (r *Runner) sweep(ctx context.Context, ref string, stderr io.Writer) {
	r.mu.Lock()
	if r.swept == nil {
		r.swept = map[string]bool{}
	}
	done := r.swept[ref]
	r.swept[ref] = true
	r.mu.Unlock()
	if done {
		return
	}
	ids, err := r.Containers(ctx, ref)
	if err != nil {
		fmt.Fprintf(stderr, "[wharfjobs] looking for containers left by an earlier worker: %v\n", err)
		return
	}
	for _, id := range ids {
		r.remove(id)
	}
	if len(ids) > 0 {
		fmt.Fprintf(stderr, "[wharfjobs] removed %d container(s) an earlier worker of build %s left\n", len(ids), ref)
	}
}

// Containers lists the IDs of the build's step containers, in any state.
func (r *Runner) Containers(ctx context.Context, ref string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout)
	defer cancel()
	f := client.Filters{}.Add("label", job.LabelManagedBy+"=wharfjobs", job.LabelBuildRef+"="+kube.LabelValue(ref))
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of build %s: %w", ref, err)
	}
	ids := make([]string, 0, len(list.Items))
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids, nil
}
