// Package kube renders build requests into Kubernetes Jobs and launches,
// lists, cancels and releases them through client-go. Rendering is a pure
// function (Render) so its output can be checked without a cluster.
package kube

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/internal/settings"
	"github.com/wharfjobs/wharfjobs/job"
)

// Config shapes build Jobs. Fields are read from WHARFJOBS_* variables.
type Config struct {
	// Namespace the build Jobs run in.
	Namespace string `envconfig:"NAMESPACE" default:"wharfjobs" desc:"namespace of the build Jobs"`
	// Image of the worker (the wharfjobs image) and its pull policy.
	Image      string            `envconfig:"WORKER_IMAGE" default:"wharfjobs:latest" desc:"image of the worker (this image)"`
	PullPolicy corev1.PullPolicy `envconfig:"WORKER_PULL_POLICY" default:"IfNotPresent" desc:"pull policy of the worker image: Always, IfNotPresent or Never"`
	// ServiceAccount of the worker pod (it creates the step pods).
	ServiceAccount string `envconfig:"WORKER_SERVICE_ACCOUNT" default:"wharfjobs-worker" desc:"ServiceAccount of the worker pod (it creates the step pods)"`
	// ConfigMap and Secret whose keys become the worker's environment
	// (store endpoint, bucket, credentials). Both optional.
	EnvConfigMap string `envconfig:"WORKER_ENV_CONFIGMAP" default:"wharfjobs-worker" desc:"ConfigMap whose keys become the worker's environment (optional)"`
	EnvSecret    string `envconfig:"WORKER_ENV_SECRET" default:"wharfjobs-store" desc:"Secret whose keys become the worker's environment (optional)"`
	// ActiveDeadline bounds a build (activeDeadlineSeconds).
	ActiveDeadline time.Duration `envconfig:"BUILD_ACTIVE_DEADLINE" default:"2h" desc:"bound of a build Job (activeDeadlineSeconds)"`
	// TTLAfterFinished removes a finished Job (and its pods) after this
	// long; the logs stay in the store.
	TTLAfterFinished time.Duration `envconfig:"BUILD_TTL_AFTER_FINISHED" default:"1h" desc:"a finished build Job is removed after this (the logs stay in the store)"`
	// Worker container resources.
	CPURequest    string `envconfig:"WORKER_CPU_REQUEST" default:"50m" desc:"CPU request of the worker container"`
	CPULimit      string `envconfig:"WORKER_CPU_LIMIT" default:"1" desc:"CPU limit of the worker container"`
	MemoryRequest string `envconfig:"WORKER_MEMORY_REQUEST" default:"64Mi" desc:"memory request of the worker container"`
	MemoryLimit   string `envconfig:"WORKER_MEMORY_LIMIT" default:"256Mi" desc:"memory limit of the worker container"`
	// MaxRunning caps the builds running at once; 0 is no cap. Builds over
	// it are created suspended and released oldest first.
	MaxRunning int `envconfig:"MAX_RUNNING_BUILDS" default:"0" desc:"builds running at once, the rest queued; 0: no cap"`
	// KueueQueue, when set, labels Jobs for Kueue's LocalQueue of that name
	// and creates them suspended; Kueue admits them, not MaxRunning.
	KueueQueue string `envconfig:"KUEUE_QUEUE_NAME" desc:"Kueue LocalQueue that admits build Jobs (instead of MAX_RUNNING_BUILDS)"`
	// AdmissionLease is how long a provisioner replica holds the
	// admission Lease at most, should it die while deciding against
	// MaxRunning: the other replicas wait that long for it.
	AdmissionLease time.Duration `envconfig:"ADMISSION_LEASE_DURATION" default:"15s" desc:"with MAX_RUNNING_BUILDS, how long a provisioner replica that died while starting a build keeps the others waiting (the Lease wharfjobs-admission)"`
	// RequestTimeout bounds each Kubernetes API call.
	RequestTimeout time.Duration `envconfig:"KUBE_API_TIMEOUT" default:"10s" desc:"bound of each Kubernetes API call of the build Jobs"`
	// UnschedulableLimit is how long a worker pod may stay unschedulable
	// before the aggregator fails the build.
	UnschedulableLimit time.Duration `envconfig:"UNSCHEDULABLE_LIMIT" default:"10m" desc:"a worker pod unschedulable this long fails its build"`
}

// withDefaults fills the fields a caller left zero with the documented
// defaults, so a Config built in code (tests, wharfjobs dev) renders the
// same Job as one read from the environment.
func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Namespace, DefaultNamespace)
	def(&c.Image, DefaultImage)
	def((*string)(&c.PullPolicy), string(corev1.PullIfNotPresent))
	def(&c.ServiceAccount, DefaultServiceAccount)
	// An empty variable does not switch these off: it gives "", which
	// takes the default here.
	def(&c.EnvConfigMap, DefaultEnvConfigMap)
	def(&c.EnvSecret, DefaultEnvSecret)
	def(&c.CPURequest, DefaultCPURequest)
	def(&c.CPULimit, DefaultCPULimit)
	def(&c.MemoryRequest, DefaultMemoryRequest)
	def(&c.MemoryLimit, DefaultMemoryLimit)
	if c.ActiveDeadline <= 0 {
		c.ActiveDeadline = DefaultActiveDeadline
	}
	if c.TTLAfterFinished <= 0 {
		c.TTLAfterFinished = DefaultTTLAfterFinished
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.AdmissionLease <= 0 {
		c.AdmissionLease = DefaultAdmissionLease
	}
	if c.UnschedulableLimit <= 0 {
		c.UnschedulableLimit = DefaultUnschedulableLimit
	}
	return c
}

// Defaults of Config, which its fields' tags repeat for the environment
// (a test keeps the two equal).
const (
	DefaultNamespace          = "wharfjobs"
	DefaultImage              = "wharfjobs:latest"
	DefaultServiceAccount     = "wharfjobs-worker"
	DefaultEnvConfigMap       = "wharfjobs-worker"
	DefaultEnvSecret          = "wharfjobs-store"
	DefaultCPURequest         = "50m"
	DefaultCPULimit           = "1"
	DefaultMemoryRequest      = "64Mi"
	DefaultMemoryLimit        = "256Mi"
	DefaultActiveDeadline     = 2 * time.Hour
	DefaultTTLAfterFinished   = time.Hour
	DefaultRequestTimeout     = 10 * time.Second
	DefaultAdmissionLease     = 15 * time.Second
	DefaultUnschedulableLimit = 10 * time.Minute
)

// Validate refuses negative durations and limits, an unknown pull policy
// and resources that are not quantities; the error names the variable and
// what it expects.
func (c Config) Validate() error {
	// MaxRunning's 0 means no cap, which its message says.
	if err := settings.NonNegative(c, "MaxRunning"); err != nil {
		return err
	}
	if c.MaxRunning < 0 {
		return fmt.Errorf("WHARFJOBS_MAX_RUNNING_BUILDS=%d: expected 0 (no cap) or more", c.MaxRunning)
	}
	switch c.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("WHARFJOBS_WORKER_PULL_POLICY=%q: expected Always, IfNotPresent or Never", c.PullPolicy)
	}
	d := c.withDefaults()
	if _, err := Resources("WHARFJOBS_WORKER", d.CPURequest, d.CPULimit, d.MemoryRequest, d.MemoryLimit); err != nil {
		return err
	}
	return nil
}

// Annotations and label values of build objects.
const (
	AnnotationSafeToEvict = "cluster-autoscaler.kubernetes.io/safe-to-evict"
	AnnotationBuildRef    = "wharfjobs.io/build-ref"
	LabelKueueQueue       = "kueue.x-k8s.io/queue-name"
	ComponentBuild        = "build"
	ComponentWorker       = "worker"
	// WorkerContainer is the name of the worker container.
	WorkerContainer = "worker"
	// SecretsPath is where the build's Secret is mounted in the worker.
	SecretsPath = "/var/run/wharfjobs/secrets"
)

// MaxNameLen is the longest Job name: wharf-api stores the workerId (the
// Job name) in a 40-character column.
const MaxNameLen = job.MaxWorkerIDLen

// JobName is the deterministic name of a build's Job (job.Request.WorkerID).
func JobName(instance, buildRef string) string {
	return job.Request{Instance: instance, BuildRef: buildRef}.WorkerID()
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// StepLabels are the labels of what runs one step of build ref, a step
// pod or a step container, whichever runner made it; how a runner finds
// its leftovers. Without a stage (an object of the whole build, such as
// the workspace URL Secret) the stage and step labels are left out.
func StepLabels(ref, stage, step string) map[string]string {
	l := map[string]string{
		job.LabelName:      "wharfjobs",
		job.LabelManagedBy: "wharfjobs",
		job.LabelComponent: "step",
		job.LabelBuildRef:  LabelValue(ref),
	}
	if stage != "" {
		l[job.LabelStage] = LabelValue(stage)
		l[job.LabelStep] = LabelValue(step)
	}
	return l
}

// LabelValue makes s a valid label value: other characters become '-',
// it is cut to 63 characters and trimmed of separators at the ends.
func LabelValue(s string) string {
	v := labelUnsafe.ReplaceAllString(s, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-._")
}

// Labels are the labels of a build's Job (and, with component worker, its
// pod).
func Labels(req job.Request, component string) map[string]string {
	l := map[string]string{
		job.LabelName:      "wharfjobs",
		job.LabelManagedBy: "wharfjobs",
		job.LabelComponent: component,
		job.LabelBuildRef:  LabelValue(req.Ref()),
	}
	if v := LabelValue(req.Instance); v != "" {
		l[job.LabelInstance] = v
	}
	if v := LabelValue(req.ProjectID); v != "" {
		l[job.LabelProjectID] = v
	}
	return l
}

// Keys of the build Secret, also the file names the worker reads.
const (
	GitTokenKey = "git-token"
	// VarsKey holds the build inputs (VARS) as JSON: all of them, since
	// which are passwords only the pipeline file says.
	VarsKey = "vars.json"
)

// Render turns a request into the build's Job and the Secret holding its
// git token and password inputs. The Secret is created after the Job, with
// the Job as its owner, so it goes when the Job goes. suspend creates the
// Job queued.
func Render(req job.Request, cfg Config, suspend bool) (*batchv1.Job, *corev1.Secret, error) {
	cfg = cfg.withDefaults()
	name := JobName(req.Instance, req.BuildRef)
	res, err := Resources("WHARFJOBS_WORKER", cfg.CPURequest, cfg.CPULimit, cfg.MemoryRequest, cfg.MemoryLimit)
	if err != nil {
		return nil, nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: Labels(req, ComponentBuild)},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{},
	}
	items := []corev1.KeyToPath{}
	if req.GitToken != "" {
		secret.Data[GitTokenKey] = []byte(req.GitToken)
		items = append(items, corev1.KeyToPath{Key: GitTokenKey, Path: GitTokenKey})
	}
	if len(req.Vars) > 0 {
		b, err := json.Marshal(req.Vars)
		if err != nil {
			return nil, nil, fmt.Errorf("encode VARS of build %s: %w", req.BuildRef, err)
		}
		secret.Data[VarsKey] = b
		items = append(items, corev1.KeyToPath{Key: VarsKey, Path: VarsKey})
	}

	deadline := int64(cfg.ActiveDeadline / time.Second)
	ttl := int32(cfg.TTLAfterFinished / time.Second)
	zero := int32(0)
	yes, no := true, false
	uid := int64(65532)
	labels := Labels(req, ComponentBuild)
	if cfg.KueueQueue != "" {
		labels[LabelKueueQueue] = cfg.KueueQueue
		suspend = true // Kueue admits by unsuspending
	}
	podLabels := Labels(req, ComponentWorker)
	env := []corev1.EnvVar{
		{Name: "WHARFJOBS_BUILD_REF", Value: req.Ref()},
		{Name: "WHARFJOBS_SECRETS_DIR", Value: SecretsPath},
		{Name: "WHARFJOBS_STEP_RUNNER", Value: "kube"},
		{Name: "WHARFJOBS_WORKDIR", Value: "/workspace"},
		{Name: "WHARFJOBS_LOG_SPILL_DIR", Value: "/tmp"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
	}
	if lim, ok := res.Limits[corev1.ResourceMemory]; ok {
		// The Go runtime's soft limit at 80% of the container's, so the
		// worker collects garbage before the kernel OOM-kills it.
		env = append(env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: fmt.Sprint(lim.Value() * 8 / 10)})
	}
	var envFrom []corev1.EnvFromSource
	if cfg.EnvConfigMap != "" {
		envFrom = append(envFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cfg.EnvConfigMap}, Optional: &yes}})
	}
	if cfg.EnvSecret != "" {
		envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cfg.EnvSecret}, Optional: &yes}})
	}
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cfg.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationBuildRef: req.BuildRef},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            &zero,
			Suspend:                 &suspend,
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			// A worker that exits with a build failure must not be retried:
			// the build failed, the worker did not.
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: strPtr(WorkerContainer),
					Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
					Values:        []int32{2, 3, 4},
				},
			}}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{AnnotationSafeToEvict: "false"}},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           cfg.ServiceAccount,
					AutomountServiceAccountToken: &yes, // it creates the step pods
					EnableServiceLinks:           &no,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            WorkerContainer,
						Image:           cfg.Image,
						ImagePullPolicy: cfg.PullPolicy,
						Args:            []string{"worker"},
						Env:             env,
						EnvFrom:         envFrom,
						Resources:       res,
						VolumeMounts: []corev1.VolumeMount{
							{Name: "secrets", MountPath: SecretsPath, ReadOnly: true},
							{Name: "workspace", MountPath: "/workspace"},
							{Name: "tmp", MountPath: "/tmp"},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "secrets", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name, Items: items}}},
						{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	if len(items) == 0 {
		j.Spec.Template.Spec.Volumes[0].Secret.Items = nil
	}
	return j, secret, nil
}

func strPtr(s string) *string { return &s }

// Resources parses the CPU and memory requests and limits of a container
// (empty values are left out). envPrefix names the settings in errors:
// WHARFJOBS_WORKER gives WHARFJOBS_WORKER_CPU_LIMIT and so on.
func Resources(envPrefix, cpuReq, cpuLim, memReq, memLim string) (corev1.ResourceRequirements, error) {
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		env  string
		val  string
	}{
		{res.Requests, corev1.ResourceCPU, "CPU_REQUEST", cpuReq},
		{res.Limits, corev1.ResourceCPU, "CPU_LIMIT", cpuLim},
		{res.Requests, corev1.ResourceMemory, "MEMORY_REQUEST", memReq},
		{res.Limits, corev1.ResourceMemory, "MEMORY_LIMIT", memLim},
	} {
		if q.val == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return res, fmt.Errorf("%s_%s: %s %q is not a Kubernetes quantity; expected one such as 500m or 256Mi", envPrefix, q.env, q.name, q.val)
		}
		q.list[q.name] = v
	}
	return res, nil
}
