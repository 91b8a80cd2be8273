// Package testcluster starts a real Kubernetes control plane on loopback
// for tests: etcd (Debian's etcd-server package) and kube-apiserver, and
// optionally kube-controller-manager, built from k8s.io/kubernetes by
// `make kube-bins` into .cache/bin. Tests fail, never skip, when a binary
// is missing, and say how to get it.
package testcluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
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

	dir    string
	procs  []*exec.Cmd
	detach bool
}

// binary finds a control-plane binary.
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
	dir := os.Getenv("WHARFJOBS_KUBE_BIN_DIR")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found at %s: run `make kube-bins` (or `make test`, which does it) or set WHARFJOBS_KUBE_BIN_DIR", name, p)
	}
	return p, nil
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
	c := &Cluster{dir: dir, Tokens: map[string]string{"admin": testenv.RandomHex(16)}, detach: opts.Detach}
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

	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	var tokens strings.Builder
	fmt.Fprintf(&tokens, "%s,admin,admin,system:masters\n", c.Tokens["admin"])
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		return nil, err
	}
	apiPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := c.start("kube-apiserver", apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--token-auth-file", tokenFile,
		"--authorization-mode", "RBAC",
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
		if err := c.start("kube-controller-manager", cmBin,
			"--kubeconfig", c.Kubeconfig,
			"--controllers", "job,garbage-collector-controller,ttl-after-finished-controller,serviceaccount-token-controller,serviceaccount-controller",
			"--service-account-private-key-file", saKey,
			"--use-service-account-credentials=false",
			"--leader-elect=false",
			"--bind-address", "127.0.0.1", "--secure-port", "0"); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
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
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
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
	return os.RemoveAll(dir)
}

func (c *Cluster) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func waitHTTP(url string, tlsCfg *tls.Config, token string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %s", url, resp.Status)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
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
	_ = os.RemoveAll(c.dir)
}
