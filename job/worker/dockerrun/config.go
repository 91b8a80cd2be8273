package dockerrun

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/settings"
)

// Config configures the docker runner. Fields with an envconfig tag are
// read from WHARFJOBS_* variables; the step resources, pull policy and
// keep-on-failure are the kube runner's settings (WHARFJOBS_STEP_*), so a
// pipeline gets the same limits wherever it runs, and the caller copies
// them in.
type Config struct {
	// Host is the engine's API socket. Empty: DefaultHost.
	Host string `envconfig:"DOCKER_HOST" desc:"the Docker Engine or Podman API socket; default $DOCKER_HOST, else /var/run/docker.sock, else Podman's rootful then rootless socket, the first that exists"`
	// Network is what container steps are attached to. "none" by
	// default: a pipeline is untrusted code, and on an engine beside other
	// services a network is a way to reach them.
	Network string `envconfig:"DOCKER_NETWORK" default:"none" desc:"network of container steps: none (no network), or an engine network such as bridge or host"`
	// ToolNetwork is the network of the step types that must talk to a
	// registry or a cluster (docker, helm, kubectl, nuget-package).
	ToolNetwork string `envconfig:"DOCKER_TOOL_NETWORK" default:"bridge" desc:"network of docker, helm, helm-package, kubectl and nuget-package steps, which reach a registry or a cluster"`
	// ConfigFile is a docker config.json whose "auths" give the registry
	// credentials of pulls.
	ConfigFile string `envconfig:"DOCKER_CONFIG" desc:"docker config.json, or a directory holding one (as Docker's DOCKER_CONFIG), with the registry credentials of image pulls (its auths entries); empty: anonymous pulls"`
	// SecretsDir stands in for the cluster's Secrets and ConfigMaps: a
	// step's secretName or a step type's mount of object X reads the
	// files of SecretsDir/X. Nothing is mounted when it is empty.
	SecretsDir string `envconfig:"DOCKER_SECRETS_DIR" desc:"directory with one subdirectory of files per Secret or ConfigMap a step may read (secretName, registry credentials, kubeconfigs); empty: none"`
	// User is the user of step containers: empty for this process's own
	// uid:gid (the owner of the workspace, not root unless wharfjobs runs
	// as root), "image" for the image's own user.
	User string `envconfig:"DOCKER_USER" desc:"user of step containers: empty for the worker's own uid:gid, image for the image's user, or uid[:gid]; docker steps (kaniko) always run as the image's user"`
	// StopGrace is how long a stopped step gets between SIGTERM and
	// SIGKILL.
	StopGrace time.Duration `envconfig:"DOCKER_STOP_GRACE" default:"10s" desc:"how long a cancelled step's container gets between SIGTERM and SIGKILL"`
	// RequestTimeout bounds each engine API call but the ones that last
	// as long as the step (attach, wait) or a pull.
	RequestTimeout time.Duration `envconfig:"DOCKER_API_TIMEOUT" default:"30s" desc:"bound of each engine API call of the docker runner"`
	// PullTimeout bounds one image pull.
	PullTimeout time.Duration `envconfig:"DOCKER_PULL_TIMEOUT" default:"10m" desc:"bound of one image pull"`
	// Privileged runs step containers privileged. Off: a privileged
	// container is root on the engine's machine.
	Privileged bool `envconfig:"DOCKER_PRIVILEGED" default:"false" desc:"run step containers privileged (root on the engine's machine: trusted pipelines only)"`
	// MountSocket gives steps the engine's socket at /var/run/docker.sock.
	// Off: whoever holds the socket controls the engine.
	MountSocket bool `envconfig:"DOCKER_MOUNT_SOCKET" default:"false" desc:"mount the engine's socket into steps at /var/run/docker.sock (control of the engine: trusted pipelines only)"`

	// CPULimit and MemoryLimit are WHARFJOBS_STEP_CPU_LIMIT and
	// WHARFJOBS_STEP_MEMORY_LIMIT, in Kubernetes quantities.
	CPULimit    string `ignored:"true"`
	MemoryLimit string `ignored:"true"`
	// PullPolicy is WHARFJOBS_STEP_PULL_POLICY: Always, IfNotPresent or
	// Never.
	PullPolicy string `ignored:"true"`
	// KeepOnFailure is WHARFJOBS_STEP_KEEP_ON_FAILURE.
	KeepOnFailure bool `ignored:"true"`
}

// Defaults of the Config fields a Config built in code may leave zero;
// the tags repeat them (a test keeps the two equal).
const (
	DefaultNetwork        = "none"
	DefaultToolNetwork    = "bridge"
	DefaultStopGrace      = 10 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultPullTimeout    = 10 * time.Minute
	DefaultPullPolicy     = "IfNotPresent"
)

// withDefaults fills the fields a Config built in code leaves zero.
func (c Config) withDefaults() Config {
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	if c.ToolNetwork == "" {
		c.ToolNetwork = DefaultToolNetwork
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.PullTimeout <= 0 {
		c.PullTimeout = DefaultPullTimeout
	}
	if c.PullPolicy == "" {
		c.PullPolicy = DefaultPullPolicy
	}
	return c
}

// Validate refuses negative durations, an unknown pull policy and a
// malformed user; the error names the variable.
func (c Config) Validate() error {
	if err := settings.NonNegative(c); err != nil {
		return err
	}
	switch c.PullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("WHARFJOBS_STEP_PULL_POLICY=%q: expected Always, IfNotPresent or Never", c.PullPolicy)
	}
	if c.Host != "" && !strings.Contains(c.Host, "://") {
		return fmt.Errorf("WHARFJOBS_DOCKER_HOST=%q: expected a URL such as unix:///var/run/docker.sock or tcp://host:2376", c.Host)
	}
	if c.User != "" && c.User != "image" && !validUser(c.User) {
		return fmt.Errorf("WHARFJOBS_DOCKER_USER=%q: expected empty, image, or uid[:gid] in numbers", c.User)
	}
	return nil
}

func validUser(u string) bool {
	for part := range strings.SplitSeq(u, ":") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return strings.Count(u, ":") <= 1
}

// Podman's API sockets, rootful and rootless: where `podman system
// service` and podman.socket listen by default.
const (
	dockerSocket        = "/var/run/docker.sock"
	podmanRootfulSocket = "/run/podman/podman.sock"
)

// DefaultHost is the engine socket used when WHARFJOBS_DOCKER_HOST is
// empty: $DOCKER_HOST, else Docker's socket, else Podman's rootful, then
// the user's rootless socket, the first that exists; Docker's when none
// does (the error then names it).
func DefaultHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	candidates := []string{dockerSocket, podmanRootfulSocket}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		candidates = append(candidates, dir+"/podman/podman.sock")
	} else {
		candidates = append(candidates, fmt.Sprintf("/run/user/%d/podman/podman.sock", os.Getuid()))
	}
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return "unix://" + p
		}
	}
	return "unix://" + dockerSocket
}
