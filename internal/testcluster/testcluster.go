// Package testcluster starts a real Kubernetes on this machine for tests:
// etcd (Debian's etcd-server package) and kube-apiserver, optionally
// kube-controller-manager, and optionally a node that runs pods
// (kube-scheduler, a kubelet, and Debian's containerd, runc and CNI
// plugins) and routes Services (kube-proxy in iptables mode, CoreDNS). The Kubernetes binaries are built from k8s.io/kubernetes by
// `make kube-bins` into .cache/bin. Tests fail, never skip, when a binary
// is missing, and say how to get it.
//
// Only one cluster with a node runs on a machine at a time: the pod
// bridge, its addresses and the kubepods cgroups are the machine's.
package testcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// Options select what to start.
type Options struct {
	// ControllerManager also starts kube-controller-manager with the job,
	// garbage-collector and TTL-after-finished controllers.
	ControllerManager bool
	// Node also starts the controller manager, kube-scheduler,
	// containerd and a kubelet (needs root), so pods run. Images come
	// from ImportImage; pods reach this machine at PodHostIP.
	Node bool
	// Dir keeps the cluster's data and logs there instead of a temporary
	// directory; Detach leaves the processes running when this process
	// exits (make cluster-up).
	Dir    string
	Detach bool
}

// Cluster is a running control plane.
type Cluster struct {
	// Config reaches the API server as an admin (system:masters).
	Config *rest.Config
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// Tokens maps user names to the bearer tokens the API server accepts.
	Tokens map[string]string

	// CAFile is the CA that signed the API server's serving certificate
	// (also what pods find in their service account's ca.crt).
	CAFile string
	// Host is the API server's URL from this machine; pods reach it at
	// https://PodHostIP:Port when the cluster has a node.
	Host string
	Port int

	dir            string
	procs          []*exec.Cmd
	detach         bool
	node           bool
	nodeLock       *os.File
	containerdSock string
}

// Binary finds a binary the tests use (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet, kubectl), or says how
// to get it.
func Binary(name string) (string, error) { return binary(name) }

func binary(name string) (string, error) {
	if name == "etcd" {
		if p := os.Getenv("WHARFJOBS_ETCD_BIN"); p != "" {
			return p, nil
		}
		if p, err := exec.LookPath("etcd"); err == nil {
			return p, nil
		}
		return "", errors.New("etcd not found: run `make etcd` (installs Debian's etcd-server) or set WHARFJOBS_ETCD_BIN")
	}
	if dir := os.Getenv("WHARFJOBS_KUBE_BIN_DIR"); dir != "" {
		return filepath.Join(dir, name), nil
	}
	return testenv.CachedBinary(name, "WHARFJOBS_KUBE_BIN_DIR", "kube-bins")
}

// Start starts etcd and kube-apiserver (and the controller manager when
// asked) and waits until the API server is ready.
func Start(opts Options) (*Cluster, error) {
	etcdBin, err := binary("etcd")
	if err != nil {
		return nil, err
	}
	apiBin, err := binary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "wharfjobs-cluster-*"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Absolute, to find the node's mounts under it when stopping.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, Tokens: map[string]string{"admin": testenv.RandomHex(16), "kubelet": testenv.RandomHex(16)}, detach: opts.Detach}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()

	clientPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	if err := c.start("etcd", etcdBin,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--quota-backend-bytes", strconv.Itoa(1<<30)); err != nil {
		return nil, err
	}
	if err := waitHTTP(etcdURL+"/health", nil, "", 30*time.Second); err != nil {
		return nil, fmt.Errorf("etcd: %w; log: %s", err, c.tail("etcd"))
	}

	if opts.Node {
		opts.ControllerManager = true
		if err := checkNodeBinaries(); err != nil {
			return nil, err
		}
		if c.nodeLock, err = lockNode(); err != nil {
			return nil, err
		}
		c.node = true
		if err := ensureBridge(); err != nil {
			return nil, err
		}
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	var tokens strings.Builder
	fmt.Fprintf(&tokens, "%s,admin,admin,system:masters\n", c.Tokens["admin"])
	fmt.Fprintf(&tokens, "%s,system:node:%s,kubelet,system:nodes\n", c.Tokens["kubelet"], NodeName)
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		return nil, err
	}
	apiPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Host, c.Port = host, apiPort
	c.CAFile = filepath.Join(dir, "ca.crt")
	certFile, keyFile := filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")
	if err := writeServingCert(c.CAFile, certFile, keyFile); err != nil {
		return nil, err
	}
	bind, advertise := "127.0.0.1", "127.0.0.1"
	if opts.Node {
		// Pods come from the bridge; the kubernetes Service's endpoint
		// may not be a loopback address.
		bind, advertise = "0.0.0.0", PodHostIP
	}
	if err := c.start("kube-apiserver", apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address", bind, "--advertise-address", advertise,
		"--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--token-auth-file", tokenFile,
		"--authorization-mode", "Node,RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--kubelet-preferred-address-types", "InternalIP",
		"--enable-priority-and-fairness=false",
		"--profiling=false"); err != nil {
		return nil, err
	}
	if err := waitHTTP(host+"/readyz", insecureTLS(), c.Tokens["admin"], 90*time.Second); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w; log: %s", err, c.tail("kube-apiserver"))
	}
	c.Config = &rest.Config{Host: host, BearerToken: c.Tokens["admin"], TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: 500, Burst: 1000, Timeout: 30 * time.Second}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(fmt.Sprintf(kubeconfigTmpl, host, c.Tokens["admin"])), 0o600); err != nil {
		return nil, err
	}
	if opts.ControllerManager {
		cmBin, err := binary("kube-controller-manager")
		if err != nil {
			return nil, err
		}
		controllers := "job,garbage-collector-controller,ttl-after-finished-controller,serviceaccount-token-controller,serviceaccount-controller,root-ca-certificate-publisher-controller"
		if opts.Node {
			// It lifts the not-ready taint a kubelet registers with; the
			// EndpointSlices are what kube-proxy routes Services to; the
			// rest run what a Helm chart installs (Deployments, a
			// StatefulSet with a PVC bound to a static PV).
			controllers += ",node-lifecycle-controller,endpointslice-controller,endpoints-controller" +
				",deployment-controller,replicaset-controller,statefulset-controller" +
				",persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,persistentvolume-protection-controller"
		}
		if err := c.start("kube-controller-manager", cmBin,
			"--kubeconfig", c.Kubeconfig,
			"--controllers", controllers,
			"--service-account-private-key-file", saKey,
			"--root-ca-file", c.CAFile,
			"--use-service-account-credentials=false",
			"--leader-elect=false",
			"--bind-address", "127.0.0.1", "--secure-port", "0"); err != nil {
			return nil, err
		}
	}
	if opts.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := c.startNode(ctx, host, c.CAFile); err != nil {
			return nil, err
		}
	}
	// A process that refused its flags (a controller name of another
	// Kubernetes version, say) exits at once, and the cluster then looks
	// ready while nothing reconciles.
	if err := c.checkRunning(); err != nil {
		return nil, err
	}
	if opts.Node && opts.Detach {
		if err := os.WriteFile(detachedMarker, []byte(dir), 0o644); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// ContainerdSocket is the node's containerd socket ("" without a node).
func (c *Cluster) ContainerdSocket() string { return c.containerdSock }

// detachedMarker names the directory of a detached cluster with a node,
// which holds the machine's node until `make cluster-down`.
const detachedMarker = "/run/lock/wharfjobs-testnode.detached"

// lockNode takes the machine-wide lock of the test node, failing at once
// when another cluster with a node runs here.
func lockNode() (*os.File, error) {
	const path = "/run/lock/wharfjobs-testnode.lock"
	_ = os.MkdirAll(filepath.Dir(path), 0o755)
	if b, err := os.ReadFile(detachedMarker); err == nil {
		if _, err := os.Stat(filepath.Join(string(b), "pids")); err == nil {
			return nil, fmt.Errorf("a cluster with a node started by `make cluster-up` runs in %s: `make cluster-down` first", b)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("test node lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another test cluster with a node runs on this machine (lock %s held; `make cluster-down` ends a detached one): %w", path, err)
	}
	return f, nil
}

// writeServingCert writes a CA and the API server's certificate signed by
// it, valid for loopback, the pod bridge address and the kubernetes
// Service's names, so pods can verify the API server with their ca.crt.
func writeServingCert(caFile, certFile, keyFile string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wharfjobs-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(PodHostIP), net.ParseIP("10.0.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{caFile, "CERTIFICATE", caDER}, {certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}

const kubeconfigTmpl = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // a throwaway loopback cluster

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return os.WriteFile(path, b, 0o600)
}

func (c *Cluster) start(name, bin string, args ...string) error {
	return c.startEnv(name, nil, bin, args...)
}

// startEnv starts bin as the cluster's process name, logging to
// name.log, with env added to this process's environment.
func (c *Cluster) startEnv(name string, env []string, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	if c.detach {
		f, err := os.OpenFile(filepath.Join(c.dir, "pids"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintln(f, cmd.Process.Pid)
	}
	return nil
}

// checkRunning returns an error naming the first of the cluster's
// processes that has exited, with the end of its log.
func (c *Cluster) checkRunning() error {
	for _, p := range c.procs {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(p.Process.Pid, &ws, syscall.WNOHANG, nil); err == nil && pid == p.Process.Pid {
			name := filepath.Base(p.Path)
			return fmt.Errorf("%s exited (%v); log: %s", name, ws, c.tail(name))
		}
	}
	return nil
}

// StopDetached stops the processes a detached cluster in dir recorded.
func StopDetached(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		return fmt.Errorf("no running cluster in %s: %w", dir, err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err == nil {
			_ = syscall.Kill(-pid, syscall.SIGTERM)
		}
	}
	time.Sleep(2 * time.Second)
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if _, err := os.Stat(filepath.Join(dir, "containerd.toml")); err == nil {
		cleanupNode(dir)
		_ = os.Remove(detachedMarker)
	}
	return os.RemoveAll(dir)
}

// RSS returns each component's resident memory in bytes (0 when it
// cannot be read), from /proc.
func (c *Cluster) RSS() map[string]int64 {
	out := map[string]int64{}
	for _, p := range c.procs {
		out[filepath.Base(p.Path)], _ = testenv.RSS(p.Process.Pid)
	}
	return out
}

// Tail returns the end of a component's log (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet).
func (c *Cluster) Tail(name string) string { return c.tail(name) }

func (c *Cluster) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func waitHTTP(url string, tlsCfg *tls.Config, token string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	return testenv.WaitHTTP(context.Background(), client, url, token, timeout)
}

// Namespace creates a namespace with a random suffix and returns its name.
func (c *Cluster) Namespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + testenv.RandomHex(4)}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	return ns.Name, nil
}

// Stop kills the processes and removes the data (a detached cluster is
// left running: StopDetached ends it).
func (c *Cluster) Stop() {
	if c.detach {
		return
	}
	if c.node && c.Client != nil {
		c.drainNode()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	c.procs = nil
	if c.node {
		cleanupNode(c.dir)
	}
	if c.nodeLock != nil {
		c.nodeLock.Close()
	}
	if os.Getenv("WHARFJOBS_TESTCLUSTER_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "testcluster: logs kept in %s (WHARFJOBS_TESTCLUSTER_KEEP)\n", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}
