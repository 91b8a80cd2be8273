package kuberun

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/internal/testcluster"
)

// cluster is the package's control plane, started by the first test that
// needs one.
var cluster testcluster.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

func realCluster(t testing.TB) *testcluster.Cluster {
	t.Helper()
	return cluster.Get(t)
}

// restrictedNamespace is a namespace with the label manifests/ puts on
// wharfjobs' own: Pod Security "restricted", enforced.
func restrictedNamespace(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	ctx := context.Background()
	name, err := c.Namespace(ctx, "steps")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount controller is not running here; a pod without
	// serviceAccountName needs "default" to exist.
	if _, err := c.Client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// Issue #14, HIGH 1: step pods pass the real Pod Security admission of a
// "restricted" namespace, and a step that names a ServiceAccount the
// operator did not allow, or another build's Secret, never gets a Pod.
func TestRestrictedNamespaceAdmitsStepPods(t *testing.T) {
	c := realCluster(t)
	ns := restrictedNamespace(t, c)
	ctx := context.Background()
	r := &Runner{Client: c.Client, Workspaces: &fakeWorkspaces{}, Config: Config{Namespace: ns, FetchImage: "wharfjobs:test", PullPolicy: corev1.PullIfNotPresent}}

	step := testStep("compile")
	step.Instance, step.ProjectID = "prod", "17"
	step.Container.SecretName = "registry"
	pod, err := r.Pod(step, "ws-secret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, r.ScriptSecret(pod, step, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the restricted namespace refused a step pod: %v", err)
	}
	if created.Spec.Volumes[2].Secret.SecretName != "wharf-prod-project-17-secretname-registry" {
		t.Fatalf("step secret %q", created.Spec.Volumes[2].Secret.SecretName)
	}

	// The control: a root step (what STEP_ALLOW_ROOT renders, as kaniko
	// needs) is refused by the same admission, so the check above is real.
	root := &Runner{Client: c.Client, Config: r.Config}
	root.Config.AllowRoot = true
	pod, err = root.Pod(testStep("kaniko"), "ws-secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a root step pod in a restricted namespace: %v", err)
	}

	// Refused by us before anything is created.
	for _, bad := range []func(*Runner, *testing.T){
		func(r *Runner, t *testing.T) {
			s := testStep("steal-token")
			s.Container.ServiceAccount = "wharfjobs-worker"
			if _, err := r.Run(ctx, s, nil, nil); !errors.Is(err, ErrServiceAccountNotAllowed) {
				t.Errorf("serviceAccount wharfjobs-worker: %v", err)
			}
		},
		func(r *Runner, t *testing.T) {
			s := testStep("steal-secret")
			s.Container.SecretName = "wharf-build-41" // no project: nothing to scope it to
			if _, err := r.Run(ctx, s, nil, nil); err == nil || !strings.Contains(err.Error(), "no project") {
				t.Errorf("secretName without a project: %v", err)
			}
		},
	} {
		bad(r, t)
	}
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods after the refused steps: %d %v", len(pods.Items), err)
	}
	secrets, err := c.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=step"})
	if err != nil || len(secrets.Items) != 1 {
		t.Fatalf("script secrets after the refused steps: %d %v", len(secrets.Items), err)
	}
}
