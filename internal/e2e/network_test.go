package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestServicesRouteOnARealNode checks that the test node routes like a
// real cluster (kube-proxy in iptables mode, CoreDNS as the cluster DNS):
// a pod reaches another pod's Service by its DNS name and the API server
// at kubernetes.default, and this machine reaches the Service's NodePort
// at the node's address, as wharf-api reaches the provisioner.
func TestServicesRouteOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startNode(ctx, t, t.TempDir(), stepImageOf(t))
	cs := c.Client.CoreV1()

	const body = "served through a Service"
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: namespace, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: stepImage, ImagePullPolicy: corev1.PullNever,
			Command:         []string{"/bin/sh", "-c", "mkdir -p /tmp/www && echo '" + body + "' > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"},
			Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
			SecurityContext: restricted(),
		}}},
	}
	if _, err := cs.Pods(namespace).Create(ctx, server, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: namespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	svc, err := cs.Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// From a pod: the Service's name resolved by the cluster DNS, short
	// and full, and its IP answering; the API server's Service IP, which
	// client-go's in-cluster config uses (nc connects, then stdin's end
	// ends it). The image's busybox resolves with nslookup, its own
	// resolver: glibc's in a static binary does not work without its
	// NSS modules. Its wget crashes with -T, hence timeout.
	script := strings.Join([]string{
		"set -e",
		"addr() { nslookup \"$1\" | grep '^Address: ' | tail -n 1 | sed 's/^Address: //'; }",
		"for i in $(seq 1 30); do ip=$(addr web) && [ -n \"$ip\" ] && break; sleep 1; done",
		"echo short name: $ip",
		"echo full name: $(addr web." + namespace + ".svc." + testcluster.ClusterDomain + ")",
		"echo kubernetes.default: $(addr kubernetes.default.svc." + testcluster.ClusterDomain + ")",
		"for i in $(seq 1 30); do timeout 5 wget -q -O /tmp/a http://$ip/ && break; sleep 1; done",
		"echo body: $(cat /tmp/a)",
		"timeout 10 nc 10.0.0.1 443 </dev/null && echo api server: reachable",
	}, "\n")
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: namespace},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "client", Image: stepImage, ImagePullPolicy: corev1.PullNever, Command: []string{"/bin/sh", "-c", script},
			SecurityContext: restricted(),
		}}},
	}
	if _, err := cs.Pods(namespace).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	if err := testenv.WaitFor(ctx, 2*time.Minute, 200*time.Millisecond, func() error {
		p, err := cs.Pods(namespace).Get(ctx, "client", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if phase = p.Status.Phase; phase != corev1.PodSucceeded && phase != corev1.PodFailed {
			return fmt.Errorf("client pod is %s", phase)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v: %s", err, debugState(c))
	}
	logs, err := cs.Pods(namespace).GetLogs("client", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client pod (%s):\n%s", phase, logs)
	if phase != corev1.PodSucceeded {
		t.Fatalf("the client pod failed: %s", debugState(c))
	}
	out := string(logs)
	ip := svc.Spec.ClusterIP
	for _, want := range []string{"short name: " + ip, "full name: " + ip, "kubernetes.default: 10.0.0.1", "body: " + body, "api server: reachable"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the client pod's output lacks %q", want)
		}
	}

	// From this machine: the NodePort at the node's address.
	url := "http://" + testcluster.PodHostIP + ":" + strconv.Itoa(int(svc.Spec.Ports[0].NodePort)) + "/"
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s (NodePort) from this machine: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != body {
		t.Fatalf("GET %s: %s %q, want 200 %q", url, resp.Status, b, body)
	}
}
