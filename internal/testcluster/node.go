package testcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// The node's pod network: a CNI bridge on this machine. Pods reach
// services on the machine (the API server, a test's MinIO) at the
// bridge's address, PodHostIP.
const (
	bridgeName = "wharfjobs0"
	bridgeMAC  = "02:77:6a:0a:59:01" // locally administered
	podSubnet  = "10.89.0.0/16"
	// PodHostIP is the address of this machine as the test node's pods
	// see it: the pod bridge's gateway. Listen on it (or on all
	// addresses) to be reachable from pods.
	PodHostIP = "10.89.0.1"
	// NodeName is the name the kubelet registers.
	NodeName = "wharfjobs-node"
	// PauseImage is the pod sandbox image the node's containerd uses.
	PauseImage = "wharfjobs-pause:test"
)

// nodeBinaries are the host programs a node needs, with the Debian
// package that has each.
var nodeBinaries = [][2]string{
	{"containerd", "containerd"},
	{"ctr", "containerd"},
	{"runc", "runc"},
	{"/usr/lib/cni/bridge", "containernetworking-plugins"},
	{"/usr/lib/cni/host-local", "containernetworking-plugins"},
	{"/usr/lib/cni/loopback", "containernetworking-plugins"},
	{"ip", "iproute2"},
}

func checkNodeBinaries() error {
	var missing []string
	for _, b := range nodeBinaries {
		if _, err := exec.LookPath(b[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", b[0], b[1]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the test node needs %s: run `make node-deps`", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the test node runs containers and needs root (euid %d)", os.Geteuid())
	}
	return nil
}

// ensureBridge creates the pod bridge with PodHostIP before anything
// listens on that address; the CNI bridge plugin then uses it as is.
func ensureBridge() error {
	if _, err := net.InterfaceByName(bridgeName); err != nil {
		if out, err := exec.Command("ip", "link", "add", bridgeName, "type", "bridge").CombinedOutput(); err != nil {
			return fmt.Errorf("create bridge %s: %v: %s", bridgeName, err, out)
		}
	}
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", bridgeName).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bridge %s: %v: %s", bridgeName, err, out)
	}
	if !strings.Contains(string(out), " "+PodHostIP+"/") {
		if out, err := exec.Command("ip", "addr", "add", PodHostIP+"/16", "dev", bridgeName).CombinedOutput(); err != nil {
			return fmt.Errorf("address %s on %s: %v: %s", PodHostIP, bridgeName, err, out)
		}
	}
	// A bridge without an address of its own takes the lowest MAC of its
	// ports, so it changes as step pods come and go; pods then keep a
	// stale ARP entry for the gateway and their connections to this
	// machine stall for about 30 s (seen as a 28 s pod GET in a worker).
	if out, err := exec.Command("ip", "link", "set", bridgeName, "address", bridgeMAC).CombinedOutput(); err != nil {
		return fmt.Errorf("bridge %s address: %v: %s", bridgeName, err, out)
	}
	if out, err := exec.Command("ip", "link", "set", bridgeName, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("bridge %s up: %v: %s", bridgeName, err, out)
	}
	return nil
}

const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # A negative oom_score_adj is refused in some VMs; runc then fails with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # Pod network namespaces under the cluster's directory, so stopping the
  # cluster finds and removes them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[5]q
`

const cniConfig = `{
  "cniVersion": "0.4.0",
  "name": "wharfjobs",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
`

const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDirectory: %s
# The API server streams logs through the kubelet anonymously: a throwaway
# loopback node.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
resolvConf: ""
clusterDNS: [%s]
clusterDomain: %s
`

const kubeletKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: kubelet
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: kubelet}
current-context: test
`

// startNode starts containerd, imports the pause image, and starts
// kube-scheduler and a kubelet, then kube-proxy and CoreDNS; it returns
// when the node is Ready and Services route.
func (c *Cluster) startNode(ctx context.Context, host, caFile string) error {
	schedBin, err := binary("kube-scheduler")
	if err != nil {
		return err
	}
	kubeletBin, err := binary("kubelet")
	if err != nil {
		return err
	}
	if err := c.start("kube-scheduler", schedBin,
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0"); err != nil {
		return err
	}

	cdDir := filepath.Join(c.dir, "containerd")
	cniDir := filepath.Join(c.dir, "cni")
	for _, d := range []string{cdDir, cniDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	c.containerdSock = filepath.Join(c.dir, "containerd.sock")
	cfg := fmt.Sprintf(containerdConfig, filepath.Join(cdDir, "root"), filepath.Join(cdDir, "state"),
		c.containerdSock, "docker.io/library/"+PauseImage, cniDir)
	if err := os.WriteFile(filepath.Join(c.dir, "containerd.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	cni := fmt.Sprintf(cniConfig, bridgeName, filepath.Join(c.dir, "ipam"), podSubnet, PodHostIP)
	if err := os.WriteFile(filepath.Join(cniDir, "10-wharfjobs.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	cdBin, _ := exec.LookPath("containerd")
	if err := c.start("containerd", cdBin, "--config", filepath.Join(c.dir, "containerd.toml")); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, func() error {
		return exec.CommandContext(ctx, "ctr", "--address", c.containerdSock, "version").Run()
	}); err != nil {
		return fmt.Errorf("containerd: %w; log: %s", err, c.tail("containerd"))
	}
	pause, err := c.pauseImage(ctx)
	if err != nil {
		return err
	}
	if err := c.ImportImage(ctx, pause); err != nil {
		return err
	}

	kubeletPort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	healthzPort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	kdir := filepath.Join(c.dir, "kubelet")
	if err := os.MkdirAll(filepath.Join(kdir, "pod-logs"), 0o755); err != nil {
		return err
	}
	kcfg := fmt.Sprintf(kubeletConfig, PodHostIP, kubeletPort, healthzPort, c.containerdSock, filepath.Join(kdir, "pod-logs"), PodHostIP, ClusterDomain)
	if err := os.WriteFile(filepath.Join(c.dir, "kubelet.yaml"), []byte(kcfg), 0o644); err != nil {
		return err
	}
	kc := fmt.Sprintf(kubeletKubeconfig, host, caFile, c.Tokens["kubelet"])
	if err := os.WriteFile(filepath.Join(c.dir, "kubelet.kubeconfig"), []byte(kc), 0o600); err != nil {
		return err
	}
	if err := c.start("kubelet", kubeletBin,
		"--config", filepath.Join(c.dir, "kubelet.yaml"),
		"--kubeconfig", filepath.Join(c.dir, "kubelet.kubeconfig"),
		"--root-dir", kdir, "--cert-dir", filepath.Join(kdir, "pki"),
		// Not 127.0.0.1: the kubelet refuses a loopback node IP ("nodeIP
		// can't be loopback address") and the node then has no address
		// the API server could stream logs from.
		"--node-ip", PodHostIP, "--hostname-override", NodeName); err != nil {
		return err
	}
	if err := waitFor(ctx, 90*time.Second, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not ready: %s", NodeName, cond.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", NodeName)
	}); err != nil {
		return fmt.Errorf("kubelet: %w; log: %s", err, c.tail("kubelet"))
	}
	return c.startServiceNetwork(ctx)
}

// pauseImage builds the sandbox image (a static Go program) into the
// cluster directory and returns the archive's path.
func (c *Cluster) pauseImage(ctx context.Context) (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(c.dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./internal/testcluster/pause")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the pause program: %v: %s", err, out)
	}
	archive := filepath.Join(c.dir, "pause.tar")
	img := image.Image{Name: PauseImage, Files: []image.File{{Path: "/pause", Source: bin, Mode: 0o755}}, Entrypoint: []string{"/pause"}, User: "65535"}
	return archive, img.WriteFile(archive)
}

// Ctr runs containerd's ctr against the node's containerd in the
// Kubernetes namespace (k8s.io), for a test that acts on the node itself:
// tagging an image, killing a container's task.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	if c.containerdSock == "" {
		return "", errors.New("ctr: the cluster has no node (Options.Node)")
	}
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.containerdSock, "-n", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ImportImage imports a docker-archive tarball into the node's containerd,
// where pods with imagePullPolicy IfNotPresent find it.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	if c.containerdSock == "" {
		return fmt.Errorf("import %s: the cluster has no node (Options.Node)", archive)
	}
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.containerdSock, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("import %s: %v: %s", archive, err, out)
	}
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	return testenv.WaitFor(ctx, timeout, 200*time.Millisecond, check)
}

// drainNode deletes every pod and waits (a while) for the kubelet to stop
// them, so their containers, network namespaces and addresses go the
// orderly way before the processes are killed.
func (c *Cluster) drainNode() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	grace := int64(1)
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		_ = c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	_ = waitFor(ctx, 25*time.Second, func() error {
		l, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(l.Items) > 0 {
			return fmt.Errorf("%d pods left", len(l.Items))
		}
		return nil
	})
}

// cleanupNode kills what a node leaves behind once its processes are gone
// (container processes in the kubepods cgroups, containerd shims of this
// cluster's socket) and unmounts what the kubelet and containerd mounted
// under dir, so that dir can be removed.
func cleanupNode(dir string) {
	cleanupNetwork()
	for _, root := range []string{"/sys/fs/cgroup/pids/kubepods", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/memory/kubepods"} {
		killCgroup(root)
	}
	sock := filepath.Join(dir, "containerd.sock")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(sock)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(200 * time.Millisecond)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	// Deepest first.
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func killCgroup(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}
