package testcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

const (
	// ServiceCIDR is the cluster's Service IP range; kube-proxy routes it
	// from pods and from this machine.
	ServiceCIDR = "10.0.0.0/24"
	// ClusterDomain is the DNS domain of Services and pods.
	ClusterDomain = "cluster.local"
)

// The cluster DNS: CoreDNS serves the kubernetes plugin at PodHostIP:53,
// which the kubelet gives pods as their nameserver. It forwards nothing:
// the machine has no network beyond the cluster.
const corefile = `.:53 {
    bind %s
    errors
    ready 127.0.0.1:%d
    kubernetes %s in-addr.arpa ip6.arpa {
        kubeconfig %s test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`

// startServiceNetwork starts kube-proxy in iptables mode and CoreDNS, so
// that pods reach Services by IP and by name (kubernetes.default,
// minio.wharfjobs.svc) as in a real cluster. It returns once kube-proxy
// has programmed its rules and CoreDNS has synced with the API server.
//
// Nothing of the machine's network changes but the nat and filter rules
// kube-proxy keeps in its own KUBE-* chains, which Stop removes again
// (kube-proxy --cleanup), and a route of ServiceCIDR to the node's bridge.
// The flags keep kube-proxy from setting sysctls: conntrack limits and
// timeouts stay the machine's, and NodePorts are not served on 127.0.0.1
// (route_localnet); --masquerade-all lets a pod reach a Service whose
// endpoint is a pod on the same bridge without br_netfilter.
func (c *Cluster) startServiceNetwork(ctx context.Context) error {
	proxyBin, err := binary("kube-proxy")
	if err != nil {
		return err
	}
	dnsBin, err := testenv.CachedBinary("coredns", "WHARFJOBS_COREDNS_BIN", "coredns")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "ip", "route", "replace", ServiceCIDR, "dev", bridgeName, "src", PodHostIP).CombinedOutput(); err != nil {
		return fmt.Errorf("route %s to %s: %v: %s", ServiceCIDR, bridgeName, err, out)
	}
	healthz, err := testenv.FreePort()
	if err != nil {
		return err
	}
	metrics, err := testenv.FreePort()
	if err != nil {
		return err
	}
	if err := c.start("kube-proxy", proxyBin,
		"--kubeconfig", c.Kubeconfig,
		"--hostname-override", NodeName,
		"--bind-address", PodHostIP,
		"--proxy-mode", "iptables",
		"--cluster-cidr", podSubnet,
		"--masquerade-all",
		"--iptables-localhost-nodeports=false",
		"--conntrack-max-per-core=0", "--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--oom-score-adj=0",
		"--healthz-bind-address", "127.0.0.1:"+strconv.Itoa(healthz),
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(metrics)); err != nil {
		return err
	}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz), nil, "", time.Minute); err != nil {
		return fmt.Errorf("kube-proxy: %w; log: %s", err, c.tail("kube-proxy"))
	}

	ready, err := testenv.FreePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(c.dir, "Corefile")
	if err := os.WriteFile(conf, fmt.Appendf(nil, corefile, PodHostIP, ready, ClusterDomain, c.Kubeconfig), 0o644); err != nil {
		return err
	}
	if err := c.start("coredns", dnsBin, "-conf", conf); err != nil {
		return err
	}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ready", ready), nil, "", time.Minute); err != nil {
		return fmt.Errorf("coredns: %w; log: %s", err, c.tail("coredns"))
	}
	// The kubernetes Service through kube-proxy's rules, as a pod's
	// client-go reaches it: its first sync can come after healthz.
	return waitFor(ctx, 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", "10.0.0.1:443", time.Second)
		if err != nil {
			return fmt.Errorf("the kubernetes Service (10.0.0.1:443) through kube-proxy: %w; log: %s", err, c.tail("kube-proxy"))
		}
		return conn.Close()
	})
}

// cleanupNetwork removes kube-proxy's rules, the kubelet's chains and
// the Service route, also those of a cluster whose process was killed
// before its Stop.
func cleanupNetwork() {
	if bin, err := binary("kube-proxy"); err == nil {
		if _, err := os.Stat(bin); err == nil {
			_ = exec.Command(bin, "--cleanup").Run()
		}
	}
	// The kubelet's own: KUBE-FIREWALL (drops packets to 127.0.0.0/8 from
	// elsewhere) and the KUBE-KUBELET-CANARY chains it watches.
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, args := range [][]string{
			{"-D", "INPUT", "-j", "KUBE-FIREWALL"}, {"-D", "OUTPUT", "-j", "KUBE-FIREWALL"},
			{"-F", "KUBE-FIREWALL"}, {"-X", "KUBE-FIREWALL"},
			{"-t", "nat", "-X", "KUBE-KUBELET-CANARY"}, {"-t", "filter", "-X", "KUBE-KUBELET-CANARY"}, {"-t", "mangle", "-X", "KUBE-KUBELET-CANARY"},
		} {
			_ = exec.Command(ipt, append([]string{"-w", "5"}, args...)...).Run()
		}
	}
	_ = exec.Command("ip", "route", "del", ServiceCIDR, "dev", bridgeName).Run()
}
