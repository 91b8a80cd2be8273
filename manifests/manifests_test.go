// Package manifests holds the Kubernetes manifests operators apply
// (kubectl apply -k manifests/); its test applies them, and the deploy/
// files, to a real kube-apiserver.
package manifests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/wharfjobs/wharfjobs/internal/testcluster"
)

func readDocs(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testcluster.ReadManifests(path)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kustomizationResources(t *testing.T) []string {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k.Resources
}

func TestManifestsAndDeployOnARealAPIServer(t *testing.T) {
	c, err := testcluster.Start(testcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := c.Applier()
	if err != nil {
		t.Fatal(err)
	}

	// kubectl apply -k manifests/, with the API server validating every
	// field strictly.
	kubectl, err := testcluster.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "apply", "-k", ".", "--validate=strict").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k manifests/: %v\n%s", err, out)
	}
	// The namespace enforces Pod Security "restricted" (build steps are
	// untrusted code) and warns at apply time: no pod template of ours
	// may draw a warning.
	if strings.Contains(string(out), "would violate PodSecurity") {
		t.Errorf("a manifest's pods do not pass the namespace's Pod Security profile:\n%s", out)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, "wharfjobs", metav1.GetOptions{})
	if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace wharfjobs enforces %q, want restricted (%v)", ns.Labels["pod-security.kubernetes.io/enforce"], err)
	}
	for _, file := range kustomizationResources(t) {
		for _, obj := range readDocs(t, file) {
			if !strings.Contains(string(out), strings.ToLower(obj.GetKind())+"/"+obj.GetName()+" created") &&
				!strings.Contains(string(out), "/"+obj.GetName()+" created") {
				t.Errorf("kubectl apply -k did not create %s %s:\n%s", obj.GetKind(), obj.GetName(), out)
			}
		}
	}

	t.Run("RBAC", func(t *testing.T) { checkRBAC(ctx, t, c) })

	// deploy/: the Knative Service and the KEDA ScaledObject are checked
	// against the projects' own CRDs.
	if err := a.InstallKnativeAndKEDA(ctx); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../deploy/*.yaml")
	if len(files) < 3 {
		t.Fatalf("deploy/ has %d files", len(files))
	}
	for _, file := range files {
		for _, obj := range readDocs(t, file) {
			if err := a.Create(ctx, obj, true); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		}
	}
}

// checkRBAC asks the real authorizer what each ServiceAccount may do.
func checkRBAC(ctx context.Context, t *testing.T, c *testcluster.Cluster) {
	type check struct {
		sa, verb, group, resource, sub, ns string
		allowed                            bool
	}
	const ns = "wharfjobs"
	checks := []check{
		{"wharfjobs-provisioner", "create", "batch", "jobs", "", ns, true},
		{"wharfjobs-provisioner", "list", "batch", "jobs", "", ns, true},
		{"wharfjobs-provisioner", "watch", "batch", "jobs", "", ns, true},
		{"wharfjobs-provisioner", "delete", "batch", "jobs", "", ns, true},
		{"wharfjobs-provisioner", "patch", "batch", "jobs", "", ns, true},
		{"wharfjobs-provisioner", "create", "", "secrets", "", ns, true},
		{"wharfjobs-provisioner", "delete", "", "secrets", "", ns, true},
		{"wharfjobs-provisioner", "get", "", "secrets", "", ns, false},
		{"wharfjobs-provisioner", "list", "", "secrets", "", ns, false},
		{"wharfjobs-provisioner", "create", "", "pods", "", ns, false},
		{"wharfjobs-provisioner", "get", "coordination.k8s.io", "leases", "", ns, true},
		{"wharfjobs-provisioner", "update", "coordination.k8s.io", "leases", "", ns, true},
		{"wharfjobs-provisioner", "delete", "coordination.k8s.io", "leases", "", ns, false},
		{"wharfjobs-aggregator", "update", "coordination.k8s.io", "leases", "", ns, false},
		{"wharfjobs-provisioner", "create", "batch", "jobs", "", "default", false},
		{"wharfjobs-aggregator", "list", "batch", "jobs", "", ns, true},
		{"wharfjobs-aggregator", "watch", "batch", "jobs", "", ns, true},
		{"wharfjobs-aggregator", "get", "", "pods", "", ns, true},
		{"wharfjobs-aggregator", "list", "", "pods", "", ns, true},
		{"wharfjobs-aggregator", "delete", "batch", "jobs", "", ns, false},
		{"wharfjobs-aggregator", "create", "batch", "jobs", "", ns, false},
		{"wharfjobs-aggregator", "get", "", "secrets", "", ns, false},
		{"wharfjobs-aggregator", "get", "", "pods", "log", ns, false},
		{"wharfjobs-worker", "create", "", "pods", "", ns, true},
		{"wharfjobs-worker", "get", "", "pods", "", ns, true},
		{"wharfjobs-worker", "list", "", "pods", "", ns, true},
		{"wharfjobs-worker", "watch", "", "pods", "", ns, true},
		{"wharfjobs-worker", "delete", "", "pods", "", ns, true},
		{"wharfjobs-worker", "get", "", "pods", "log", ns, true},
		{"wharfjobs-worker", "create", "", "secrets", "", ns, true},
		{"wharfjobs-worker", "delete", "", "secrets", "", ns, true},
		{"wharfjobs-worker", "get", "", "secrets", "", ns, false},
		{"wharfjobs-worker", "create", "batch", "jobs", "", ns, false},
		{"wharfjobs-worker", "delete", "batch", "jobs", "", ns, false},
		{"wharfjobs-worker", "create", "", "pods", "", "default", false},
		{"wharfjobs-step", "get", "", "pods", "", ns, false},
		{"wharfjobs-step", "list", "", "secrets", "", ns, false},
		{"wharfjobs-step", "create", "", "pods", "", ns, false},
		// Events for the waiting lines and diagnosis.json: list only, in
		// the namespace only.
		{"wharfjobs-worker", "list", "", "events", "", ns, true},
		{"wharfjobs-worker", "watch", "", "events", "", ns, false},
		{"wharfjobs-worker", "get", "", "events", "", ns, false},
		{"wharfjobs-worker", "create", "", "events", "", ns, false},
		{"wharfjobs-worker", "list", "", "events", "", "default", false},
		{"wharfjobs-aggregator", "list", "", "events", "", ns, true},
		{"wharfjobs-aggregator", "watch", "", "events", "", ns, false},
		{"wharfjobs-aggregator", "delete", "", "events", "", ns, false},
		{"wharfjobs-provisioner", "list", "", "events", "", ns, false},
		{"wharfjobs-step", "list", "", "events", "", ns, false},
		// Nodes, cluster-scoped (ns ""): get for the node conditions of a
		// diagnosis, nothing more.
		{"wharfjobs-worker", "get", "", "nodes", "", "", true},
		{"wharfjobs-aggregator", "get", "", "nodes", "", "", true},
		{"wharfjobs-worker", "list", "", "nodes", "", "", false},
		{"wharfjobs-aggregator", "watch", "", "nodes", "", "", false},
		{"wharfjobs-worker", "patch", "", "nodes", "", "", false},
		{"wharfjobs-provisioner", "get", "", "nodes", "", "", false},
		{"wharfjobs-step", "get", "", "nodes", "", "", false},
	}
	kubectl, err := testcluster.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range checks {
		// kubectl auth can-i, as an operator would ask; it exits 0 for
		// yes and 1 for no.
		resource := ch.resource
		if ch.group != "" {
			resource += "." + ch.group
		}
		args := []string{"--kubeconfig", c.Kubeconfig, "auth", "can-i", ch.verb, resource, "-n", ch.ns,
			"--as", "system:serviceaccount:wharfjobs:" + ch.sa}
		if ch.ns == "" {
			// A cluster-scoped resource: with a namespace kubectl adds a
			// warning to the answer.
			args = []string{"--kubeconfig", c.Kubeconfig, "auth", "can-i", ch.verb, resource, "--all-namespaces",
				"--as", "system:serviceaccount:wharfjobs:" + ch.sa}
		}
		if ch.sub != "" {
			args = append(args, "--subresource", ch.sub)
		}
		out, err := exec.CommandContext(ctx, kubectl, args...).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("kubectl auth can-i: %v", err)
		}
		allowed := err == nil && strings.TrimSpace(string(out)) == "yes"
		what := fmt.Sprintf("kubectl auth can-i %s %s (subresource %q) -n %s --as %s", ch.verb, resource, ch.sub, ch.ns, ch.sa)
		if allowed != ch.allowed {
			t.Errorf("%s: %s, want allowed=%v", what, strings.TrimSpace(string(out)), ch.allowed)
		}
	}
}
