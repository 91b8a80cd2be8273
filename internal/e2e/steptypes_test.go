package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// appsNamespace is where the helm and kubectl steps install.
const appsNamespace = "e2e-apps"

// stepTypesPipeline has a step of every type that talks to something
// (wharf-cmd's docker, helm-package, helm and kubectl), each with its
// defaults where it can: the docker step pushes to
// ${REG_URL}/${REPO_GROUP}/${REPO_NAME} with the Secret gitlab-registry,
// the helm step installs from ${CHART_REPO}/${REPO_GROUP}, and both kube
// steps use the kubeconfig in the ConfigMap kubectl-config. helm-package
// pushes to the registry as an OCI artifact (helm's own push takes only
// oci:// destinations, and CHART_REPO is the http chart repository here),
// with the registry credentials as a config.json.
const stepTypesPipeline = `build:
  demo:
    docker:
      file: Dockerfile
      tag: v1,latest
  chart:
    helm-package:
      chart-path: chart
      destination: oci://${REG_URL}/charts
      secret: helm-registry
deploy:
  release:
    helm:
      chart: hello
      chartVersion: 0.1.0
      name: hello
      namespace: ` + appsNamespace + `
      set:
        greeting: from-helm
  manifest:
    kubectl:
      file: deploy/configmap.yaml
      namespace: ` + appsNamespace + `
`

var stepTypesRepo = map[string]string{
	".wharf-ci.yml":     stepTypesPipeline,
	"Dockerfile":        "FROM scratch\nCOPY hello.txt /\n",
	"hello.txt":         "hello from a kaniko build\n",
	"chart/Chart.yaml":  "apiVersion: v2\nname: packaged\nversion: 0.2.0\n",
	"chart/values.yaml": "greeting: packaged\n",
	"deploy/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: applied-by-kubectl
data:
  step: kubectl
`,
}

// helloChart is the chart the helm step installs, served from a chart
// repository as wharf-cmd users do.
var helloChart = map[string]string{
	"Chart.yaml":  "apiVersion: v2\nname: hello\nversion: 0.1.0\n",
	"values.yaml": "greeting: default\n",
	"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-greeting
data:
  greeting: {{ .Values.greeting | quote }}
`,
}

// TestStepTypesRunOnARealNode runs a build whose steps are a docker
// (kaniko) build pushed to a registry with basic auth, a helm-package push
// to the same registry, a helm install from a chart repository and a
// kubectl apply, on a kubelet with containerd, and checks each one's
// effect: the image and the chart in the registry, the release and the
// applied object in the cluster.
func TestStepTypesRunOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()

	c := startNode(ctx, t, dir, kanikoImageOf(t), helmImageOf(t), kubectlImageOf(t))
	importProdImage(ctx, t, c)
	// Services of this machine that pods reach at the bridge address.
	store, storeCfg := startStore(ctx, t, "e2e-steps")
	reg := startRegistry(t, ctx, dir)
	chartDir := filepath.Join(dir, "chart")
	for name, text := range helloChart {
		p := filepath.Join(chartDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	helm := cachedTool(t, "helm", "WHARFJOBS_HELM_BIN", "helm")
	chartRepo := helmRepo(t, ctx, helm, chartDir, dir, "e2e")
	repoURL := serveRepo(t, ctx, dir, stepTypesRepo)

	// Kaniko runs as root (WHARFJOBS_STEP_ROOT_TYPES=docker; the other
	// steps stay non-root without capabilities): the namespace
	// enforces Pod Security "baseline" instead of "restricted", as the
	// docs/operating.md's security model tells an operator to.
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"enforce", "warn", "audit"} {
		ns.Labels["pod-security.kubernetes.io/"+mode] = "baseline"
	}
	if _, err := c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The operator's shared Secret and ConfigMap the step types mount:
	// the registry credentials, and a kubeconfig that reaches the API
	// server from pods with the token of a ServiceAccount that may
	// install into appsNamespace only.
	kubeconfig := deployerKubeconfig(t, ctx, c)
	objs := []func() error{
		func() error {
			_, err := c.Client.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "gitlab-registry", Namespace: namespace},
				Type:       corev1.SecretTypeDockerConfigJson,
				Data:       map[string][]byte{corev1.DockerConfigJsonKey: reg.DockerConfig()},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			// helm and helm-package read a config.json (HELM_REGISTRY_CONFIG).
			_, err := c.Client.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "helm-registry", Namespace: namespace},
				Data:       map[string][]byte{"config.json": reg.DockerConfig()},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "kubectl-config", Namespace: namespace},
				Data:       map[string]string{"config": kubeconfig},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objs {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}

	d := deploy(ctx, t, c, store, storeCfg, map[string]string{
		// The operator's settings for the step types.
		"WHARFJOBS_STEP_ROOT_TYPES":        "docker",
		"WHARFJOBS_STEP_SHARED_SECRETS":    "gitlab-registry,helm-registry",
		"WHARFJOBS_STEP_SHARED_CONFIGMAPS": "kubectl-config",
		"WHARFJOBS_IMAGE_KANIKO":           kanikoImage,
		"WHARFJOBS_IMAGE_HELM":             helmImage,
		"WHARFJOBS_IMAGE_KUBECTL":          kubectlImage,
		// Variables every build gets, as wharf-cmd's operators set them.
		"WHARF_VAR_REG_URL":    reg.Host,
		"WHARF_VAR_CHART_REPO": chartRepo,
	})
	sink, pods := d.sink, d.pods
	ref, trigger := d.trigger(t, "13", repoURL)

	var recs []build.Record
	var statuses []build.Status
	err = testenv.WaitFor(ctx, 8*time.Minute, 100*time.Millisecond, func() error {
		recs, statuses, _ = sink.Received(ref)
		if n := len(statuses); n > 0 && statuses[n-1].Status.Final() {
			return nil
		}
		return fmt.Errorf("%d lines and %d statuses relayed, none final", len(recs), len(statuses))
	})
	if err != nil {
		t.Fatalf("no final status relayed: %v; pods: %v; %s", err, pods.seen(), debugState(c))
	}
	t.Logf("trigger to final status at the sink: %v", time.Since(trigger).Round(time.Millisecond))

	var text strings.Builder
	stepLog := map[string]string{}
	for _, r := range recs {
		fmt.Fprintf(&text, "%6.2fs [%s] %s\n", r.Time.Sub(trigger).Seconds(), r.Source(), r.Text)
		stepLog[r.Stage+"/"+r.Step] += r.Text + "\n"
	}
	t.Logf("build log (seconds after the trigger):\n%s", text.String())
	pods.mu.Lock()
	t.Logf("pods (seconds after the watch began):\n%s", strings.Join(pods.timeline, "\n"))
	pods.mu.Unlock()
	last := statuses[len(statuses)-1]
	for _, s := range last.Steps {
		if s.StartedAt != nil && s.FinishedAt != nil {
			t.Logf("step %s/%s: %s in %v (pod created to exit, image present on the node)", s.Stage, s.Step, s.Status, s.FinishedAt.Sub(*s.StartedAt).Round(time.Millisecond))
		}
	}
	if last.Status != build.Completed {
		t.Fatalf("build ended %s (%s); registry log:\n%s\npods:%s", last.Status, last.Reason, reg.Tail(), debugState(c))
	}
	if len(last.Steps) != 4 {
		t.Errorf("status has steps %+v, want demo, chart, release and manifest", last.Steps)
	}
	for _, s := range last.Steps {
		if s.Status != build.Completed {
			t.Errorf("step %s/%s ended %s (%s)", s.Stage, s.Step, s.Status, s.Reason)
		}
	}

	// Each step's log shows the tool doing its work (the worker does not
	// echo the generated command; wharfjobs check shows it).
	for step, wants := range map[string][]string{
		"build/demo":      {"COPY hello.txt /", "Pushed " + reg.Host + "/e2e/demo@sha256:"},
		"build/chart":     {"Successfully packaged chart", "Pushed: " + reg.Host + "/charts/packaged:0.2.0"},
		"deploy/release":  {`Release "hello" does not exist. Installing it now.`, "NAMESPACE: " + appsNamespace, "STATUS: deployed"},
		"deploy/manifest": {"configmap/applied-by-kubectl created"},
	} {
		for _, want := range wants {
			if !strings.Contains(stepLog[step], want) {
				t.Errorf("log of %s lacks %q:\n%s", step, want, stepLog[step])
			}
		}
	}

	// docker: the image is in the registry under both tags, and its layer
	// holds the file the Dockerfile copied.
	m, digest, err := reg.Manifest(ctx, "e2e/demo", "v1")
	if err != nil {
		t.Fatalf("%v; registry log:\n%s", err, reg.Tail())
	}
	if _, latest, err := reg.Manifest(ctx, "e2e/demo", "latest"); err != nil || latest != digest {
		t.Errorf("e2e/demo:latest is %q (%v), want v1's %s", latest, err, digest)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("manifest of e2e/demo:v1 has %d layers, want 1 (FROM scratch, one COPY): %+v", len(m.Layers), m)
	}
	files, err := reg.LayerFiles(ctx, "e2e/demo", m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if files["hello.txt"] != stepTypesRepo["hello.txt"] {
		t.Errorf("layer of e2e/demo:v1 holds %v, want hello.txt = %q", files, stepTypesRepo["hello.txt"])
	}
	if _, _, code, err := reg.get(ctx, "/v2/e2e/demo/manifests/v1", manifestTypes, false); err != nil || code != http.StatusUnauthorized {
		t.Errorf("manifest without credentials: %d %v, want 401", code, err)
	}

	// helm-package: the chart is an OCI artifact in the registry.
	if cm, _, err := reg.Manifest(ctx, "charts/packaged", "0.2.0"); err != nil {
		t.Errorf("the packaged chart: %v", err)
	} else if cm.Config.MediaType != "application/vnd.cncf.helm.config.v1+json" || len(cm.Layers) != 1 ||
		cm.Layers[0].MediaType != "application/vnd.cncf.helm.chart.content.v1.tar+gzip" {
		t.Errorf("charts/packaged:0.2.0 is not a helm chart: %+v", cm)
	}

	// helm: the release's record and the chart's object, with the step's set.
	if _, err := c.Client.CoreV1().Secrets(appsNamespace).Get(ctx, "sh.helm.release.v1.hello.v1", metav1.GetOptions{}); err != nil {
		t.Errorf("helm release record: %v", err)
	}
	if got, err := c.Client.CoreV1().ConfigMaps(appsNamespace).Get(ctx, "hello-greeting", metav1.GetOptions{}); err != nil {
		t.Errorf("the chart's ConfigMap: %v", err)
	} else if got.Data["greeting"] != "from-helm" {
		t.Errorf("the chart's ConfigMap has greeting %q, want the step's set from-helm", got.Data["greeting"])
	}
	// kubectl: the applied object.
	if got, err := c.Client.CoreV1().ConfigMaps(appsNamespace).Get(ctx, "applied-by-kubectl", metav1.GetOptions{}); err != nil {
		t.Errorf("the kubectl step's ConfigMap: %v", err)
	} else if got.Data["step"] != "kubectl" {
		t.Errorf("the kubectl step's ConfigMap: %v", got.Data)
	}
}

// deployerKubeconfig creates appsNamespace and a ServiceAccount there
// that may manage ConfigMaps and Secrets in it only, and returns a kubeconfig
// that reaches the API server from pods (at the bridge address, verified
// with the cluster's CA) with a token of that ServiceAccount.
func deployerKubeconfig(t *testing.T, ctx context.Context, c *testcluster.Cluster) string {
	t.Helper()
	cl := c.Client
	if _, err := cl.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appsNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CoreV1().ServiceAccounts(appsNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// What helm (its release records are Secrets) and kubectl apply need
	// for the chart's and the manifest's ConfigMaps. Not the "admin"
	// ClusterRole: it is aggregated by a controller the test cluster does
	// not run, so it grants nothing here.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
	}
	if _, err := cl.RbacV1().Roles(appsNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: appsNamespace}},
	}
	if _, err := cl.RbacV1().RoleBindings(appsNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tok, err := cl.CoreV1().ServiceAccounts(appsNamespace).CreateToken(ctx, "deployer",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://%s:%d
    certificate-authority-data: %s
users:
- name: deployer
  user:
    token: %s
contexts:
- name: deployer
  context: {cluster: test, user: deployer, namespace: %s}
current-context: deployer
`, testcluster.PodHostIP, c.Port, base64.StdEncoding.EncodeToString(ca), tok.Status.Token, appsNamespace)
}
