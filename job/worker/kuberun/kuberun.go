// Package kuberun is the StepRunner that runs each step as its own Pod in
// the worker's namespace, owned by the worker's Pod so that deleting the
// build Job removes it. The step Pod gets no service-account token unless
// the step names a ServiceAccount the operator allows, and no store
// credentials: an init container fetches the workspace through a
// pre-signed URL.
package kuberun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/wharfjobs/wharfjobs/backoff"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
	"github.com/wharfjobs/wharfjobs/job/pipeline"
	"github.com/wharfjobs/wharfjobs/job/stepexec"
	"github.com/wharfjobs/wharfjobs/job/worker"
)

// Config configures step Pods. Fields are read from WHARFJOBS_* variables.
type Config struct {
	// Namespace of the step Pods; the worker's own (POD_NAMESPACE).
	Namespace string `envconfig:"POD_NAMESPACE" desc:"namespace of the step pods; also read as POD_NAMESPACE (downward API)"`
	// OwnerName and OwnerUID identify the worker's Pod, the owner of
	// every step Pod (downward API: POD_NAME, POD_UID).
	OwnerName string `envconfig:"POD_NAME" desc:"the worker pod, owner of the step pods; also read as POD_NAME"`
	OwnerUID  string `envconfig:"POD_UID" desc:"UID of the worker pod; also read as POD_UID"`
	// FetchImage runs the init container that fetches the workspace: the
	// wharfjobs image itself.
	FetchImage string `envconfig:"STEP_FETCH_IMAGE" default:"wharfjobs:latest" desc:"image of a step pod's workspace-fetch init container (this image)"`
	// PullPolicy of step images.
	PullPolicy corev1.PullPolicy `envconfig:"STEP_PULL_POLICY" default:"IfNotPresent" desc:"pull policy of step images: Always, IfNotPresent or Never"`
	// CPU and memory requests and limits of the step container.
	CPURequest    string `envconfig:"STEP_CPU_REQUEST" default:"100m" desc:"CPU request of a step container"`
	CPULimit      string `envconfig:"STEP_CPU_LIMIT" default:"2" desc:"CPU limit of a step container"`
	MemoryRequest string `envconfig:"STEP_MEMORY_REQUEST" default:"128Mi" desc:"memory request of a step container"`
	MemoryLimit   string `envconfig:"STEP_MEMORY_LIMIT" default:"2Gi" desc:"memory limit of a step container"`
	// KeepOnFailure leaves a failed step's Pod for inspection (the Job's
	// deletion still removes it).
	KeepOnFailure bool `envconfig:"STEP_KEEP_ON_FAILURE" default:"false" desc:"leave a failed step's pod for inspection"`
	// PollInterval is how often the Pod's phase is checked.
	PollInterval time.Duration `envconfig:"STEP_POLL_INTERVAL" default:"1s" desc:"how often a step pod's phase is checked"`
	// PendingTimeout fails a step whose Pod has had no node for this long:
	// only the time the scheduler says PodScheduled=False counts, not the
	// image pulls or the workspace fetch after it found one.
	PendingTimeout time.Duration `envconfig:"STEP_PENDING_TIMEOUT" default:"10m" desc:"fail a step whose pod has no node (PodScheduled=False) for this long, reason Unschedulable; 0: never"`
	// ImagePullTimeout fails a step whose image pull keeps failing
	// (ErrImagePull, ImagePullBackOff) for this long; until then the step
	// waits, as the registry may come back. 0 fails it at the first pull
	// error.
	ImagePullTimeout time.Duration `envconfig:"STEP_IMAGE_PULL_TIMEOUT" default:"2m" desc:"fail a step whose image pull keeps failing (ErrImagePull, ImagePullBackOff) for this long, reason ErrImagePull or ImagePullBackOff; 0: at the first pull error"`
	// RequestTimeout bounds each Kubernetes API call.
	RequestTimeout time.Duration `envconfig:"STEP_API_TIMEOUT" default:"30s" desc:"bound of each Kubernetes API call of the step runner"`
	// ServiceAccounts lists the ServiceAccounts a pipeline's
	// serviceAccount may name (comma-separated). Empty by default: a
	// pipeline is untrusted, and a token is what lets a pod talk to the
	// Kubernetes API.
	ServiceAccounts []string `envconfig:"STEP_SERVICE_ACCOUNTS" desc:"ServiceAccounts a pipeline's serviceAccount may name (comma-separated)"`
	// RunAsUser is the uid step containers run as (non-root), so step
	// pods pass the Pod Security "restricted" profile.
	RunAsUser int64 `envconfig:"STEP_RUN_AS_USER" default:"65532" desc:"uid of step containers (non-root, Pod Security restricted)"`
	// AllowRoot runs step containers as their image's user instead (root
	// for most images, and for kaniko). Such pods do not pass "restricted":
	// the namespace needs pod-security.kubernetes.io/enforce=baseline.
	AllowRoot bool `envconfig:"STEP_ALLOW_ROOT" default:"false" desc:"run step containers as their image's user (needs the baseline profile)"`
	// RootStepTypes run as their image's user like AllowRoot, for these
	// step types only (comma-separated, e.g. docker: kaniko needs root),
	// so the others keep running as RunAsUser without capabilities.
	RootStepTypes []string `envconfig:"STEP_ROOT_TYPES" desc:"step types that run as their image's user, e.g. docker (comma-separated)"`
	// SharedSecrets are the Secrets outside any project that step types
	// mount by name, as wharf-cmd does: registry credentials (docker's
	// `secret`, REG_SECRET, helm's HELM_REG_SECRET) and the NuGet token.
	// A step may mount these and its own project's Secrets, nothing else.
	SharedSecrets []string `envconfig:"STEP_SHARED_SECRETS" default:"gitlab-registry,wharf-nuget-api-token" desc:"Secrets outside any project that step types mount by name"`
	// SharedConfigMaps are the ConfigMaps step types mount by name: the
	// kubeconfigs of helm's and kubectl's `cluster`, and the CA
	// certificates of a container step's certificatesMountPath.
	SharedConfigMaps []string `envconfig:"STEP_SHARED_CONFIGMAPS" default:"kubectl-config,ca-certificates-config" desc:"ConfigMaps that step types mount by name"`
}

// ErrServiceAccountNotAllowed is returned for a step naming a
// ServiceAccount that is not in Config.ServiceAccounts.
var ErrServiceAccountNotAllowed = errors.New("serviceAccount not allowed")

// ErrMountNotAllowed is returned for a step that would mount a Secret or
// ConfigMap that is neither its project's nor a shared one.
var ErrMountNotAllowed = errors.New("mount not allowed")

// Defaults of the Config fields a Config built in code may leave zero;
// the fields' tags repeat them for the environment (a test keeps the two
// equal).
const (
	// DefaultRunAsUser is the uid of steps, and of the workspace-fetch
	// init container: the wharfjobs image's user.
	DefaultRunAsUser      = 65532
	DefaultPollInterval   = time.Second
	DefaultRequestTimeout = 30 * time.Second
)

// withDefaults fills the fields a Config built in code leaves zero with
// their defaults.
func (c Config) withDefaults() Config {
	if c.RunAsUser <= 0 {
		c.RunAsUser = DefaultRunAsUser
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// Validate refuses negative durations and uid, and an unknown pull
// policy; the error names the variable and what it expects.
func (c Config) Validate() error {
	if err := settings.NonNegative(c); err != nil {
		return err
	}
	switch c.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("WHARFJOBS_STEP_PULL_POLICY=%q: expected Always, IfNotPresent or Never", c.PullPolicy)
	}
	if _, err := kube.Resources("WHARFJOBS_STEP", c.CPURequest, c.CPULimit, c.MemoryRequest, c.MemoryLimit); err != nil {
		return err
	}
	return nil
}

// Workspaces publishes a workspace directory for step Pods and returns a
// URL an unauthenticated GET can fetch it from (a tar.gz archive), and
// gives a step's file plan the pre-signed URLs of its objects.
type Workspaces interface {
	Publish(ctx context.Context, ref, dir string) (string, error)
	PresignPlan(ctx context.Context, p stepexec.Plan) (stepexec.Plan, error)
}

// Runner runs steps as Pods.
type Runner struct {
	Client     kubernetes.Interface
	Config     Config
	Workspaces Workspaces

	mu        sync.Mutex
	published map[string]string // workspace dir -> Secret name holding its URL
}

var (
	_ worker.StepRunner = (*Runner)(nil)
	_ worker.Releaser   = (*Runner)(nil)
)

// Name implements worker.StepRunner.
func (*Runner) Name() string { return "kube" }

// Mount paths inside step Pods.
const (
	WorkspacePath = "/workspace"
	SecretPath    = "/var/run/wharf/secret"
	// ScriptPath holds the step's script (from a Secret of its own): a
	// script can hold substituted password inputs, which must not stand
	// in the Pod spec or the process's argv.
	ScriptPath = "/var/run/wharfjobs/script"
	// HomePath is HOME of a step that runs as RunAsUser, who has no home
	// directory in the image.
	HomePath = "/var/run/wharfjobs/home"
	// ToolsPath holds the wharfjobs binary the init container copies in
	// for a step that declares files: `wharfjobs step-exec` runs the
	// script, then collects and uploads them, so the step's image stays
	// as it is (Tekton's entrypoint pattern).
	ToolsPath = "/var/run/wharfjobs/bin"
	// TmpPath is step-exec's scratch space for archives.
	TmpPath   = "/var/run/wharfjobs/tmp"
	urlKey    = "url"
	scriptKey = "script"
	filesKey  = "files.json"
)

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// podName is a DNS-1123 name unique per build and step.
func podName(ref, stage, step string) string {
	sum := sha256.Sum256([]byte(ref + "\x00" + stage + "\x00" + step))
	base := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower("wharf-"+ref+"-"+stage+"-"+step), "-"), "-")
	if len(base) > 52 {
		base = strings.TrimRight(base[:52], "-")
	}
	return base + "-" + hex.EncodeToString(sum[:])[:10]
}

func (r *Runner) ownerRefs() []metav1.OwnerReference {
	if r.Config.OwnerUID == "" {
		return nil
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: r.Config.OwnerName, UID: types.UID(r.Config.OwnerUID)}}
}

// workspaceSecret publishes dir once per build and returns the name of the
// Secret that holds the URL, so the URL (a bearer capability) stays out of
// Pod specs.
func (r *Runner) workspaceSecret(ctx context.Context, ref, dir string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name, ok := r.published[dir]; ok {
		return name, nil
	}
	if r.Workspaces == nil {
		return "", errors.New("kube runner: no workspace publisher configured")
	}
	url, err := r.Workspaces.Publish(ctx, ref, dir)
	if err != nil {
		return "", fmt.Errorf("publish workspace: %w", err)
	}
	name := podName(ref, "workspace", "url")
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.Config.Namespace, Labels: kube.StepLabels(ref, "", ""), OwnerReferences: r.ownerRefs()},
		StringData: map[string]string{urlKey: url},
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	if _, err := r.Client.CoreV1().Secrets(r.Config.Namespace).Create(cctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create workspace secret %s: %w", name, err)
	}
	if r.published == nil {
		r.published = map[string]string{}
	}
	r.published[dir] = name
	return name, nil
}

func (r *Runner) timeout() time.Duration {
	return r.Config.withDefaults().RequestTimeout
}

// Script is the shell script of a step: its cmds joined with newlines, as
// wharf-cmd gives them to `sh -c` (pkg/steps/container.go:76 and :84 at
// 421514f), with no `set -e`: a failing command does not end the script,
// the last command's exit code is the step's.
func Script(c pipeline.Container) string { return strings.Join(c.Cmds, "\n") }

// Pod renders the Pod of a step; secretName is the workspace URL Secret.
// The step's script is in the Secret of the Pod's own name (ScriptSecret).
// A step may reach only its project's Secrets (job.ProjectSecretName) and
// the ServiceAccounts of Config.ServiceAccounts; anything else is refused
// here, before a Pod exists.
func (r *Runner) Pod(step worker.Step, secretName string) (*corev1.Pod, error) {
	res, err := kube.Resources("WHARFJOBS_STEP", r.Config.CPURequest, r.Config.CPULimit, r.Config.MemoryRequest, r.Config.MemoryLimit)
	if err != nil {
		return nil, fmt.Errorf("step resources: %w", err)
	}
	c := step.Container
	if c.ServiceAccount != "" && !slices.Contains(r.Config.ServiceAccounts, c.ServiceAccount) {
		allowed := strings.Join(r.Config.ServiceAccounts, ", ")
		if allowed == "" {
			allowed = "none"
		}
		return nil, fmt.Errorf("step %s/%s: %w: %q is not in WHARFJOBS_STEP_SERVICE_ACCOUNTS (allowed: %s)", step.Stage, step.Name, ErrServiceAccountNotAllowed, c.ServiceAccount, allowed)
	}
	shell := c.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	// The Pod and the Secret holding its script share the name.
	name := podName(step.Ref, step.Stage, step.Name)
	command := []string{shell, ScriptPath + "/" + scriptKey}
	scriptVolume := &corev1.SecretVolumeSource{SecretName: name}
	if c.OS == "windows" && shell == "/bin/sh" {
		// wharf-cmd runs `powershell.exe -C script` (pkg/steps/container.go:73-74
		// at 421514f); from a file, PowerShell wants the .ps1 ending.
		command = []string{"powershell.exe", "-File", ScriptPath + "/" + scriptKey + ".ps1"}
		scriptVolume.Items = []corev1.KeyToPath{{Key: scriptKey, Path: scriptKey + ".ps1"}}
	}
	files := !step.Files.Empty()
	if files && c.OS == "windows" {
		return nil, fmt.Errorf("step %s/%s: artifacts, testResults, cache and earlier stages' artifacts are not supported in windows steps", step.Stage, step.Name)
	}
	fetchArgs := []string{"workspace-fetch", WorkspacePath}
	fetchMounts := []corev1.VolumeMount{{Name: "workspace", MountPath: WorkspacePath}}
	if files {
		fetchArgs = append(fetchArgs, "--files", ScriptPath+"/"+filesKey)
		fetchMounts = append(fetchMounts, corev1.VolumeMount{Name: "script", MountPath: ScriptPath, ReadOnly: true})
	}
	if len(step.Files.Collect) > 0 {
		fetchArgs = append(fetchArgs, "--install", ToolsPath)
		fetchMounts = append(fetchMounts, corev1.VolumeMount{Name: "tools", MountPath: ToolsPath})
		command = append([]string{ToolsPath + "/wharfjobs", "step-exec", "--files", ScriptPath + "/" + filesKey, "--tmp", TmpPath, "--"}, command...)
	}
	var env []corev1.EnvVar
	environ := step.Environ()
	for _, k := range slices.Sorted(maps.Keys(environ)) {
		env = append(env, corev1.EnvVar{Name: k, Value: environ[k]})
	}
	no, yes := false, true
	uid := r.Config.withDefaults().RunAsUser
	mounts := []corev1.VolumeMount{
		{Name: "workspace", MountPath: WorkspacePath},
		{Name: "script", MountPath: ScriptPath, ReadOnly: true},
	}
	volumes := []corev1.Volume{
		{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "script", VolumeSource: corev1.VolumeSource{Secret: scriptVolume}},
	}
	if len(step.Files.Collect) > 0 {
		mounts = append(mounts, corev1.VolumeMount{Name: "tools", MountPath: ToolsPath, ReadOnly: true}, corev1.VolumeMount{Name: "wharfjobs-tmp", MountPath: TmpPath})
		volumes = append(volumes, corev1.Volume{Name: "tools", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			corev1.Volume{Name: "wharfjobs-tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	var envFrom []corev1.EnvFromSource
	if c.SecretName != "" {
		secret, err := job.ProjectSecretName(step.Instance, step.ProjectID, c.SecretName)
		if err != nil {
			return nil, fmt.Errorf("step %s/%s: %w", step.Stage, step.Name, err)
		}
		if len(c.SecretEnv) > 0 {
			// docker's secretArgs: only the named keys, each as its variable
			// (wharf-cmd pkg/steps/docker.go:272-286 at 421514f).
			for _, name := range slices.Sorted(maps.Keys(c.SecretEnv)) {
				env = append(env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: c.SecretEnv[name]}}})
			}
		} else {
			// Its keys as variables, as wharf-cmd injects them
			// (pkg/steps/container.go:118 at 421514f), and as files for the
			// step types that read a file.
			envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}})
			mounts = append(mounts, corev1.VolumeMount{Name: "step-secret", MountPath: SecretPath, ReadOnly: true})
			volumes = append(volumes, corev1.Volume{Name: "step-secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}})
		}
	}
	for i, m := range c.Mounts {
		vol, err := r.mountVolume(step, m)
		if err != nil {
			return nil, fmt.Errorf("step %s/%s: %w", step.Stage, step.Name, err)
		}
		vol.Name = fmt.Sprintf("mount-%d", i)
		volumes = append(volumes, vol)
		mounts = append(mounts, corev1.VolumeMount{Name: vol.Name, MountPath: m.Path, ReadOnly: true})
	}
	// Every container passes the "restricted" Pod Security profile: no
	// privilege escalation, no capabilities, the runtime's seccomp profile,
	// and (unless the operator allows root) a non-root user.
	restricted := func() *corev1.SecurityContext {
		return &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	}
	podSecurity := &corev1.PodSecurityContext{
		FSGroup:        &uid,
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	asRoot := r.Config.AllowRoot || slices.Contains(r.Config.RootStepTypes, step.Type)
	stepSecurity := restricted()
	if asRoot {
		// Root without capabilities cannot even chown (kaniko unpacking a
		// build context): keep the runtime's default set, which Pod
		// Security "baseline" admits; still no privilege escalation.
		stepSecurity.Capabilities = nil
	}
	if !asRoot {
		podSecurity.RunAsNonRoot, podSecurity.RunAsUser, podSecurity.RunAsGroup = &yes, &uid, &uid
		mounts = append(mounts, corev1.VolumeMount{Name: "home", MountPath: HomePath})
		volumes = append(volumes, corev1.Volume{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		if _, set := environ["HOME"]; !set {
			env = append(env, corev1.EnvVar{Name: "HOME", Value: HomePath})
		}
	}
	fetchSecurity := restricted()
	fetchUser := int64(DefaultRunAsUser)
	fetchSecurity.RunAsNonRoot, fetchSecurity.RunAsUser = &yes, &fetchUser
	automount := c.ServiceAccount != ""
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       r.Config.Namespace,
			Labels:          kube.StepLabels(step.Ref, step.Stage, step.Name),
			OwnerReferences: r.ownerRefs(),
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: &automount,
			ServiceAccountName:           c.ServiceAccount,
			EnableServiceLinks:           &no,
			SecurityContext:              podSecurity,
			Volumes:                      volumes,
			InitContainers: []corev1.Container{{
				Name:            "workspace",
				Image:           r.Config.FetchImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            fetchArgs,
				Env: []corev1.EnvVar{{Name: "WHARFJOBS_WORKSPACE_URL", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: urlKey},
				}}},
				VolumeMounts:    fetchMounts,
				SecurityContext: fetchSecurity,
			}},
			Containers: []corev1.Container{{
				Name:            "step",
				Image:           c.Image,
				ImagePullPolicy: r.Config.PullPolicy,
				Command:         command,
				WorkingDir:      WorkspacePath,
				Env:             env,
				EnvFrom:         envFrom,
				Resources:       res,
				VolumeMounts:    mounts,
				SecurityContext: stepSecurity,
			}},
		},
	}
	if c.OS == "windows" {
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"}
	}
	return pod, nil
}

// mountVolume is the volume of a step type's mount, when the step may
// have it: a Secret of its own project or of Config.SharedSecrets, a
// ConfigMap of Config.SharedConfigMaps. The volume is optional, so a
// missing registry Secret fails the push with the registry's answer
// instead of leaving the Pod waiting for a volume.
func (r *Runner) mountVolume(step worker.Step, m pipeline.Mount) (corev1.Volume, error) {
	yes := true
	var items []corev1.KeyToPath
	for _, key := range slices.Sorted(maps.Keys(m.Items)) {
		items = append(items, corev1.KeyToPath{Key: key, Path: m.Items[key]})
	}
	switch {
	case m.Secret != "":
		prefix, err := job.ProjectSecretPrefix(step.Instance, step.ProjectID)
		inProject := err == nil && strings.HasPrefix(m.Secret, prefix)
		if !inProject && !slices.Contains(r.Config.SharedSecrets, m.Secret) {
			return corev1.Volume{}, fmt.Errorf("%w: Secret %q is not the project's nor in WHARFJOBS_STEP_SHARED_SECRETS (%s)", ErrMountNotAllowed, m.Secret, strings.Join(r.Config.SharedSecrets, ", "))
		}
		return corev1.Volume{VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: m.Secret, Items: items, Optional: &yes}}}, nil
	case m.ConfigMap != "":
		if !slices.Contains(r.Config.SharedConfigMaps, m.ConfigMap) {
			return corev1.Volume{}, fmt.Errorf("%w: ConfigMap %q is not in WHARFJOBS_STEP_SHARED_CONFIGMAPS (%s)", ErrMountNotAllowed, m.ConfigMap, strings.Join(r.Config.SharedConfigMaps, ", "))
		}
		return corev1.Volume{VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: m.ConfigMap}, Items: items, Optional: &yes}}}, nil
	}
	return corev1.Volume{}, fmt.Errorf("%w: a mount at %s names neither a Secret nor a ConfigMap", ErrMountNotAllowed, m.Path)
}

// ScriptSecret is the Secret holding a step's script, and its file plan
// with pre-signed URLs (files, nil when the step moves no files), named as
// its Pod and owned like it. The URLs let the step reach its own objects
// only, and go with the Secret when the step ends.
func (r *Runner) ScriptSecret(pod *corev1.Pod, step worker.Step, files []byte) *corev1.Secret {
	data := map[string]string{scriptKey: Script(step.Container)}
	if files != nil {
		data[filesKey] = string(files)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Labels, OwnerReferences: pod.OwnerReferences},
		Type:       corev1.SecretTypeOpaque,
		StringData: data,
	}
}

// Run implements worker.StepRunner.
func (r *Runner) Run(ctx context.Context, step worker.Step, stdout, stderr io.Writer) (worker.Result, error) {
	// The Pod first: a step refused (a Secret or ServiceAccount it may not
	// have) leaves nothing behind, not even a published workspace.
	pod, err := r.Pod(step, podName(step.Ref, "workspace", "url"))
	if err != nil {
		return worker.Result{ExitCode: -1}, err
	}
	if _, err := r.workspaceSecret(ctx, step.Ref, step.Workspace); err != nil {
		return worker.Result{ExitCode: -1}, err
	}
	var files []byte
	if !step.Files.Empty() {
		plan, err := r.Workspaces.PresignPlan(ctx, step.Files)
		if err != nil {
			return worker.Result{ExitCode: -1}, fmt.Errorf("step %s/%s: %w", step.Stage, step.Name, err)
		}
		if files, err = json.Marshal(plan); err != nil {
			return worker.Result{ExitCode: -1}, err
		}
	}
	pods := r.Client.CoreV1().Pods(r.Config.Namespace)
	cctx, cancel := context.WithTimeout(ctx, r.timeout())
	_, err = r.Client.CoreV1().Secrets(r.Config.Namespace).Create(cctx, r.ScriptSecret(pod, step, files), metav1.CreateOptions{})
	cancel()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return worker.Result{ExitCode: -1}, fmt.Errorf("create the script secret of step pod %s: %w", pod.Name, err)
	}
	cctx, cancel = context.WithTimeout(ctx, r.timeout())
	_, err = pods.Create(cctx, pod, metav1.CreateOptions{})
	cancel()
	if err != nil {
		r.deleteSecret(pod.Name)
		return worker.Result{ExitCode: -1}, fmt.Errorf("create step pod %s: %w", pod.Name, err)
	}
	fmt.Fprintf(stderr, "[wharfjobs] step pod %s created (image %s)\n", pod.Name, step.Container.Image)
	res, last, err := r.watch(ctx, pod.Name, len(step.Files.Restore) > 0, stdout, stderr)
	failed := err != nil || res.ExitCode != 0 || res.Reason != ""
	if failed && last != nil && (!build.ReasonCancelled.Of(res.Reason) || errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		res.Diagnosis = r.diagnose(ctx, last, step)
	}
	if !(r.Config.KeepOnFailure && failed) {
		r.deletePod(pod.Name)
		r.deleteSecret(pod.Name)
	}
	return res, err
}

// diagnoseTimeout bounds the look at a failed step's pod.
const diagnoseTimeout = 10 * time.Second

// diagnose is the post-mortem of a failed step's pod, read before the
// pod is deleted: its last state as watch saw it, its Events and its
// node's conditions (best effort, kube.Gatherer). It runs on a context of
// its own, so a step that failed as the build was ending still gets it; a
// cancelled step gets none (Run does not ask), but a step whose context
// ran out does: the worker records it as Timeout.
func (r *Runner) diagnose(ctx context.Context, pod *corev1.Pod, step worker.Step) *build.Diagnosis {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diagnoseTimeout)
	defer cancel()
	g := kube.Gatherer{Client: r.Client, Namespace: r.Config.Namespace, Timeout: min(r.timeout(), diagnoseTimeout)}
	d := g.Pod(dctx, pod, "step")
	for i := range d.Pods {
		d.Pods[i].Stage, d.Pods[i].Step = step.Stage, step.Name
	}
	return &d
}

// Release implements worker.Releaser: it deletes the build's workspace
// URL Secrets once its steps are done. The URL is a bearer capability to
// the workspace in the store; the worker pod owns the Secrets, but the pod
// stays until its Job's TTL.
func (r *Runner) Release(ctx context.Context) error {
	r.mu.Lock()
	names := make([]string, 0, len(r.published))
	for _, n := range r.published {
		names = append(names, n)
	}
	r.published = nil
	r.mu.Unlock()
	var errs []error
	for _, n := range names {
		cctx, cancel := context.WithTimeout(ctx, r.timeout())
		err := r.Client.CoreV1().Secrets(r.Config.Namespace).Delete(cctx, n, metav1.DeleteOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete workspace secret %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) deleteSecret(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	_ = r.Client.CoreV1().Secrets(r.Config.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
}

func (r *Runner) deletePod(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout())
	defer cancel()
	bg := metav1.DeletePropagationBackground
	_ = r.Client.CoreV1().Pods(r.Config.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

// watch polls the Pod until its step container ended and returns how,
// with the Pod as last read (nil when it never was). While the step
// container has not started, it writes why the Pod waits to stderr each
// time that is new (Waiting).
func (r *Runner) watch(ctx context.Context, name string, restores bool, stdout, stderr io.Writer) (worker.Result, *corev1.Pod, error) {
	pods := r.Client.CoreV1().Pods(r.Config.Namespace)
	interval := r.Config.withDefaults().PollInterval
	events := kube.Gatherer{Client: r.Client, Namespace: r.Config.Namespace, Timeout: r.timeout()}
	eventsAllowed := true
	var w waits
	var last *corev1.Pod
	var logsDone chan struct{}
	defer func() {
		if logsDone != nil {
			select {
			case <-logsDone:
			case <-time.After(10 * time.Second):
			}
		}
	}()
	cancelled := worker.Result{ExitCode: -1, Reason: build.ReasonCancelled.String()}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changed := r.podChanges(watchCtx, name)
	for {
		select {
		case <-ctx.Done():
			return cancelled, last, nil
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, r.timeout())
		pod, err := pods.Get(cctx, name, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			return worker.Result{ExitCode: -1, Reason: build.ReasonPodDeleted.With("the step pod disappeared")}, last, nil
		case err != nil && ctx.Err() != nil:
			return cancelled, last, nil
		case err != nil:
			fmt.Fprintf(stderr, "[wharfjobs] reading step pod %s: %v (retrying)\n", name, err)
		default:
			last = pod
			// Start following the log before judging the phase, so a step
			// that ended between two polls still has its output read.
			if logsDone == nil && stepStarted(pod) {
				logsDone = make(chan struct{})
				go func() {
					defer close(logsDone)
					if restores {
						r.restoreLines(ctx, name, stderr)
					}
					r.streamLogs(ctx, name, stdout, stderr)
				}()
			}
			text, known := kube.WaitingStatus(pod)
			if !known && eventsAllowed {
				// One more call per poll, only while the pod waits on its
				// node for something its status does not name (a pull).
				evs, err := events.Events(ctx, map[string]bool{name: true})
				if apierrors.IsForbidden(err) {
					eventsAllowed = false // the Role lacks list on events
				}
				text = kube.Pulling(evs)
			}
			if line := w.line(name, text); line != "" {
				_, _ = io.WriteString(stderr, line)
			}
			w.observe(pod, time.Now())
			if res, done := r.inspect(pod, &w, time.Now()); done {
				return res, last, nil
			}
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(interval):
		}
	}
}

// podChanges signals each change of the named Pod, from a watch that is
// set up again (with backoff) whenever the API server ends it, until ctx
// ends. The first watch is set up before it returns, so no change after
// the caller's next read is missed; a watch set up again signals once, for
// what changed in between. The watch only wakes watch's loop early: the
// loop still reads the Pod every PollInterval, so a watch that cannot be
// had (no watch verb, an API server that drops it) costs only the poll's
// delay.
func (r *Runner) podChanges(ctx context.Context, name string) <-chan struct{} {
	out := make(chan struct{}, 1)
	wake := func() {
		select {
		case out <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	pods := r.Client.CoreV1().Pods(r.Config.Namespace)
	start := func() watch.Interface {
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
		if err != nil {
			return nil
		}
		return w
	}
	w := start()
	go func() {
		policy := backoff.Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}
		for attempt := 0; ctx.Err() == nil; {
			if w == nil {
				if policy.Sleep(ctx, attempt) != nil {
					return
				}
				attempt++
				if w = start(); w == nil {
					continue
				}
				wake()
			}
			attempt = 0
			for open := true; open; {
				select {
				case <-ctx.Done():
					open = false
				case _, ok := <-w.ResultChan():
					open = ok
					wake()
				}
			}
			w.Stop()
			w = nil
		}
		if w != nil {
			w.Stop()
		}
	}()
	return out
}

func stepStarted(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "step" && (cs.State.Running != nil || cs.State.Terminated != nil) {
			return true
		}
	}
	return false
}

// inspect decides from a Pod's status, and how long it has waited (w,
// observed up to now), whether the step ended.
func (r *Runner) inspect(pod *corev1.Pod, w *waits, now time.Time) (worker.Result, bool) {
	if pod.Status.Reason == string(build.ReasonEvicted) {
		return worker.Result{ExitCode: -1, Reason: build.ReasonEvicted.With(pod.Status.Message)}, true
	}
	for _, cs := range kube.ContainerStatuses(pod) {
		if wt := cs.State.Waiting; wt != nil && kube.StuckReasons[wt.Reason] {
			// A failing pull may yet succeed: it ends the step only after
			// ImagePullTimeout. The other stuck reasons will not clear.
			if kube.PullReasons[wt.Reason] && r.Config.ImagePullTimeout > 0 && !w.pullFailingSince.IsZero() &&
				now.Sub(w.pullFailingSince) < r.Config.ImagePullTimeout {
				continue
			}
			return worker.Result{ExitCode: -1, Reason: kube.WithMessage(wt.Reason+": "+kube.ImageOf(pod, cs), wt.Message)}, true
		}
		if t := cs.State.Terminated; t != nil && cs.Name == "workspace" && t.ExitCode != 0 {
			if stepExecReason(t.Message) {
				return worker.Result{ExitCode: -1, Reason: strings.TrimSpace(t.Message)}, true
			}
			return worker.Result{ExitCode: -1, Reason: build.ReasonWorkspaceFetchFailed.Withf("exit %d %s", t.ExitCode, t.Message)}, true
		}
		if t := cs.State.Terminated; t != nil && cs.Name == "step" {
			res := worker.Result{ExitCode: int(t.ExitCode)}
			if stepExecReason(t.Message) {
				res.Reason = strings.TrimSpace(t.Message)
			}
			if t.Reason == string(build.ReasonOOMKilled) {
				res.Reason = build.ReasonOOMKilled.String()
				if limit := memoryLimit(pod, "step"); limit != "" {
					res.Reason = build.ReasonOOMKilled.With("memory limit " + limit)
				}
				if res.ExitCode == 0 {
					res.ExitCode = 137
				}
			}
			return res, true
		}
	}
	if pod.Status.Phase == corev1.PodFailed {
		return worker.Result{ExitCode: -1, Reason: strings.TrimSpace(pod.Status.Reason + ": " + pod.Status.Message)}, true
	}
	if pod.Status.Phase == corev1.PodPending && r.Config.PendingTimeout > 0 && !w.unscheduledSince.IsZero() &&
		now.Sub(w.unscheduledSince) > r.Config.PendingTimeout {
		msg, _ := kube.Unschedulable(pod)
		return worker.Result{ExitCode: -1, Reason: build.ReasonUnschedulable.With(msg)}, true
	}
	return worker.Result{}, false
}

// stepExecReason reports whether a termination message is one that
// workspace-fetch or step-exec wrote about the step's files; anything
// else there was written by the step's own program.
func stepExecReason(msg string) bool {
	return build.ReasonRestoreFailed.Of(msg) || build.ReasonOutputsFailed.Of(msg)
}

// restoreLines copies the init container's "[wharfjobs] restored ..."
// lines into the step's log: the build log follows the step container
// only, and what a step started from belongs there.
func (r *Runner) restoreLines(ctx context.Context, name string, stderr io.Writer) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	b, err := r.Client.CoreV1().Pods(r.Config.Namespace).GetLogs(name, &corev1.PodLogOptions{Container: "workspace"}).DoRaw(cctx)
	if err != nil {
		return
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, "[wharfjobs] ") {
			_, _ = io.WriteString(stderr, line)
		}
	}
}

// streamLogs follows the step container's log into stdout. Kubernetes
// merges the container's stdout and stderr into one stream.
func (r *Runner) streamLogs(ctx context.Context, name string, stdout, stderr io.Writer) {
	req := r.Client.CoreV1().Pods(r.Config.Namespace).GetLogs(name, &corev1.PodLogOptions{Container: "step", Follow: true})
	rc, err := req.Stream(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "[wharfjobs] cannot follow the log of step pod %s: %v\n", name, err)
		return
	}
	defer rc.Close()
	_, _ = io.Copy(stdout, rc)
}
