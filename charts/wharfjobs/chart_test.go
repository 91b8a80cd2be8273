// Package chart holds the wharfjobs Helm chart (charts/wharfjobs); its test
// lints it with the real helm, checks its README's table of values, its
// schema and its Knative and KEDA checks, compares it with manifests/, and
// applies what it renders for the main value combinations to a real
// kube-apiserver as a server-side dry run.
package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// The release the tests render: the namespace manifests/ uses.
const (
	release   = "wharfjobs"
	namespace = "wharfjobs"
)

func helmBin(t *testing.T) string {
	t.Helper()
	p, err := testenv.CachedBinary("helm", "WHARFJOBS_HELM_BIN", "helm")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// helm runs the real helm in this directory (the chart) with its own
// empty configuration, cache and data directories.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// render is helm template of the chart as release wharfjobs in namespace
// wharfjobs, with more arguments (--set, --api-versions).
func render(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return helm(t, append([]string{"template", release, ".", "--namespace", namespace}, args...)...)
}

// objects parses rendered YAML.
func objects(t *testing.T, rendered string) []*unstructured.Unstructured {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(f, []byte(rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, err := testcluster.ReadManifests(f)
	if err != nil {
		t.Fatalf("the rendered chart is not YAML: %v\n%s", err, rendered)
	}
	return objs
}

func mustRender(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return objects(t, out)
}

// find returns the object of that kind (and apiVersion group, when kind
// is "group/Kind") and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	group, k, grouped := strings.Cut(kind, "/")
	if !grouped {
		k, group = group, ""
	}
	for _, o := range objs {
		if o.GetKind() == k && o.GetName() == name && (!grouped || o.GroupVersionKind().Group == group) {
			return o
		}
	}
	return nil
}

func TestLintStrict(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", "."); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Lint with every optional part on too (lint knows no --api-versions,
	// so Knative and KEDA stay off: their rendering is checked below).
	if out, err := helm(t, "lint", "--strict", ".", "--set", "namespace.create=true,aggregator.mode=cronjob,wharfApi.auth=x,imagePullSecrets[0]=pull"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// leaves walks values.yaml into dotted paths and their defaults as JSON:
// a non-empty map is walked into, anything else is a value.
func leaves(prefix string, v any, into map[string]string) error {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if err := leaves(p, sub, into); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	into[prefix] = string(b)
	return nil
}

var valueRow = regexp.MustCompile("^\\| `([^`]+)` \\| `([^`]*)` \\| (.*) \\|$")

// TestEveryValueIsInTheREADME: the README's table and values.yaml list
// the same keys with the same defaults, each with a meaning.
func TestEveryValueIsInTheREADME(t *testing.T) {
	b, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	if err := leaves("", values, want); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(readme), "\n") {
		m := valueRow.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if _, dup := got[m[1]]; dup {
			t.Errorf("README.md lists %s twice", m[1])
		}
		got[m[1]] = m[2]
		if strings.TrimSpace(m[3]) == "" {
			t.Errorf("README.md: %s has no meaning", m[1])
		}
	}
	if len(want) < 50 || len(got) < 50 {
		t.Fatalf("values.yaml has %d values and README.md's table %d: a parser is broken", len(want), len(got))
	}
	for k, def := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("value %s (default %s) is not in README.md's table", k, def)
		case g != def:
			t.Errorf("README.md gives %s the default %s; values.yaml has %s", k, g, def)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("README.md's table lists %s, which values.yaml does not have", k)
		}
	}
}

// TestSchemaRefusesBadValues: values.schema.json refuses unknown keys,
// wrong types and values outside their set, and takes good ones.
func TestSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ set, want string }{
		{"provisioner.replicaCount=x", "/provisioner/replicaCount"},
		{"replicaCount=2", "additional properties 'replicaCount' not allowed"},
		{"minio.enable=false", "additional properties 'enable' not allowed"},
		{"store.type=gcs", "/store/type"},
		{"aggregator.mode=daemon", "/aggregator/mode"},
		{"knative.enabled=yes", "/knative/enabled"},
		{"worker.resources.limits.gpu=1", "additional properties 'gpu' not allowed"},
		{"keda.idleExit=ten minutes", "/keda/idleExit"},
		{"provisioner.extraEnv[0].name=WHARFJOBS_MAX_RUNNING_BUILDS,provisioner.extraEnv[0].value=10", "/provisioner/extraEnv/0/value"},
	} {
		out, err := render(t, "--set-string", "token=t", "--set", c.set)
		if err == nil {
			t.Errorf("--set %s rendered:\n%.300s", c.set, out)
			continue
		}
		if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s: the error does not name %q as a schema error: %v", c.set, c.want, err)
		}
	}
	if _, err := render(t, "--set", "provisioner.replicaCount=3,store.type=s3,aggregator.mode=cronjob,keda.idleExit=1h30m,worker.extraEnv.WHARFJOBS_STEP_TIMEOUT=30m"); err != nil {
		t.Errorf("good values were refused: %v", err)
	}
}

// TestMissingAPIsFailRendering: knative.enabled and keda.enabled fail
// rendering, with a message saying why, when the cluster (here helm
// template's default capabilities) lacks the API; with the API they render.
func TestMissingAPIsFailRendering(t *testing.T) {
	for _, c := range []struct{ set, api, want string }{
		{"knative.enabled=true", "serving.knative.dev/v1", "knative.enabled is true but the cluster does not serve serving.knative.dev/v1"},
		{"keda.enabled=true", "keda.sh/v1alpha1", "keda.enabled is true but the cluster does not serve keda.sh/v1alpha1"},
	} {
		out, err := render(t, "--set", c.set)
		if err == nil {
			t.Errorf("--set %s rendered without %s:\n%.300s", c.set, c.api, out)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %s without %s: %v; want the message %q", c.set, c.api, err, c.want)
		}
		if _, err := render(t, "--set", c.set, "--api-versions", c.api); err != nil {
			t.Errorf("--set %s --api-versions %s: %v", c.set, c.api, err)
		}
	}
	for _, c := range []struct{ args []string }{
		{[]string{"--set", "keda.enabled=true,aggregator.mode=cronjob", "--api-versions", "keda.sh/v1alpha1"}},
		{[]string{"--set", "minio.enabled=false"}},
	} {
		if out, err := render(t, c.args...); err == nil {
			t.Errorf("%v rendered:\n%.300s", c.args, out)
		}
	}
}

// TestSameAsManifests: the chart, with the values that match manifests/
// (release namespace wharfjobs, in-cluster MinIO, namespace.create), has
// the same ServiceAccounts, Roles' and ClusterRoles' rules, RoleBindings
// and ClusterRoleBindings, NetworkPolicies, Pod Security labels, worker
// settings and Secret keys as manifests/. The chart's cluster-scoped RBAC
// objects carry the release namespace in their names (one release per
// namespace), manifests/ the names alone.
func TestSameAsManifests(t *testing.T) {
	chart := mustRender(t, "--set", "namespace.create=true")
	var plain []*unstructured.Unstructured
	files, _ := filepath.Glob("../../manifests/*.yaml")
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		objs, err := testcluster.ReadManifests(f)
		if err != nil {
			t.Fatal(err)
		}
		plain = append(plain, objs...)
	}
	fields := map[string][][]string{
		"ServiceAccount":     {{"automountServiceAccountToken"}, {"metadata", "namespace"}, {"metadata", "labels", "app.kubernetes.io/component"}, {"imagePullSecrets"}},
		"Role":               {{"rules"}, {"metadata", "namespace"}},
		"RoleBinding":        {{"roleRef"}, {"subjects"}, {"metadata", "namespace"}},
		"ClusterRole":        {{"rules"}},
		"ClusterRoleBinding": {{"roleRef", "apiGroup"}, {"roleRef", "kind"}, {"subjects"}}, // roleRef.name: below
		"NetworkPolicy":      {{"spec"}, {"metadata", "namespace"}},
		"ConfigMap":          {{"data"}, {"metadata", "namespace"}},
		"Namespace": {
			{"metadata", "labels", "pod-security.kubernetes.io/enforce"},
			{"metadata", "labels", "pod-security.kubernetes.io/enforce-version"},
			{"metadata", "labels", "pod-security.kubernetes.io/warn"},
			{"metadata", "labels", "pod-security.kubernetes.io/audit"},
		},
		"Secret": {{"metadata", "namespace"}, {"type"}},
	}
	// chartName is the chart's name of the manifests/ object kind name.
	clusterScoped := map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true}
	chartName := func(kind, name string) string {
		if clusterScoped[kind] {
			return name + "-" + namespace
		}
		return name
	}
	compared, clusterRBAC := 0, 0
	for _, p := range plain {
		paths, ok := fields[p.GetKind()]
		if !ok {
			continue
		}
		c := find(chart, p.GetKind(), chartName(p.GetKind(), p.GetName()))
		if c == nil {
			t.Errorf("manifests/ has %s %s; the chart does not have %s", p.GetKind(), p.GetName(), chartName(p.GetKind(), p.GetName()))
			continue
		}
		compared++
		if clusterScoped[p.GetKind()] {
			clusterRBAC++
		}
		if p.GetKind() == "ClusterRoleBinding" {
			pr, _, _ := unstructured.NestedString(p.Object, "roleRef", "name")
			cr, _, _ := unstructured.NestedString(c.Object, "roleRef", "name")
			if want := chartName("ClusterRole", pr); cr != want {
				t.Errorf("ClusterRoleBinding %s: roleRef.name is %s in the chart, want %s (manifests/: %s)", c.GetName(), cr, want, pr)
			}
		}
		for _, path := range paths {
			pv, _, _ := unstructured.NestedFieldNoCopy(p.Object, path...)
			cv, _, _ := unstructured.NestedFieldNoCopy(c.Object, path...)
			if !sameJSON(pv, cv) {
				t.Errorf("%s %s: %s is %s in manifests/ and %s in the chart", p.GetKind(), p.GetName(), strings.Join(path, "."), js(pv), js(cv))
			}
		}
		if p.GetKind() == "Secret" {
			pk, ck := keys(p, "stringData"), keys(c, "stringData")
			if !slices.Equal(pk, ck) {
				t.Errorf("Secret %s holds %v in manifests/ and %v in the chart", p.GetName(), pk, ck)
			}
		}
	}
	for _, c := range chart {
		name := c.GetName()
		if clusterScoped[c.GetKind()] {
			name = strings.TrimSuffix(name, "-"+namespace)
		}
		if _, ok := fields[c.GetKind()]; ok && find(plain, c.GetKind(), name) == nil {
			t.Errorf("the chart has %s %s; manifests/ does not", c.GetKind(), c.GetName())
		}
	}
	if compared < 17 || clusterRBAC < 2 {
		t.Errorf("compared only %d objects, %d of them cluster-scoped RBAC: the comparison is broken", compared, clusterRBAC)
	}
}

func keys(o *unstructured.Unstructured, field string) []string {
	m, _, _ := unstructured.NestedMap(o.Object, field)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// sameJSON compares two values as JSON does (YAML's 53 and "53" differ;
// int64 and float64 of one number do not).
func sameJSON(a, b any) bool {
	var x, y any
	_ = json.Unmarshal([]byte(js(a)), &x)
	_ = json.Unmarshal([]byte(js(b)), &y)
	return reflect.DeepEqual(x, y)
}

// combination is one helm template of the chart and what its objects must
// show.
type combination struct {
	name  string
	args  []string
	check func(t *testing.T, objs []*unstructured.Unstructured)
}

func envOf(t *testing.T, o *unstructured.Unstructured, path ...string) map[string]string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(o.Object, path...)
	if len(containers) == 0 {
		t.Fatalf("%s %s has no containers at %v", o.GetKind(), o.GetName(), path)
	}
	out := map[string]string{}
	env, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "env")
	for _, e := range env {
		e := e.(map[string]any)
		v, _ := e["value"].(string)
		if v == "" && e["valueFrom"] != nil {
			v = "valueFrom:" + js(e["valueFrom"])
		}
		out[e["name"].(string)] = v
	}
	return out
}

// replicas is a workload's spec.replicas, which must be set.
func replicas(t *testing.T, o *unstructured.Unstructured) int {
	t.Helper()
	v, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas")
	var n int
	if !ok || json.Unmarshal([]byte(js(v)), &n) != nil {
		t.Fatalf("%s %s: spec.replicas is %s", o.GetKind(), o.GetName(), js(v))
	}
	return n
}

func must(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		var have []string
		for _, o := range objs {
			have = append(have, o.GetKind()+"/"+o.GetName())
		}
		t.Fatalf("no %s %s among %v", kind, name, have)
	}
	return o
}

func mustNot(t *testing.T, objs []*unstructured.Unstructured, kind, name string) {
	t.Helper()
	if find(objs, kind, name) != nil {
		t.Errorf("%s %s rendered, and should not be", kind, name)
	}
}

var deploymentContainers = []string{"spec", "template", "spec", "containers"}

var combinations = []combination{
	{"default", []string{"--set", "token=engine-token,wharfApi.url=http://wharf-api.wharf.svc:8080"}, func(t *testing.T, objs []*unstructured.Unstructured) {
		p := must(t, objs, "apps/Deployment", "wharfjobs-provisioner")
		must(t, objs, "/Service", "wharfjobs-provisioner")
		env := envOf(t, p, deploymentContainers...)
		if env["WHARFJOBS_WORKER_IMAGE"] != "wharfjobs:latest" || env["WHARFJOBS_WORKER_ENV_SECRET"] != "wharfjobs-store" || env["WHARFJOBS_WORKER_MEMORY_LIMIT"] != "256Mi" {
			t.Errorf("provisioner environment: %v", env)
		}
		a := must(t, objs, "apps/Deployment", "wharfjobs-aggregator")
		if r := replicas(t, a); r != 1 {
			t.Errorf("aggregator replicas %d, want 1 without KEDA", r)
		}
		if env := envOf(t, a, deploymentContainers...); env["WHARFJOBS_WHARF_API_URL"] != "http://wharf-api.wharf.svc:8080" || env["WHARFJOBS_IDLE_EXIT"] != "" {
			t.Errorf("aggregator environment: %v", env)
		}
		must(t, objs, "apps/StatefulSet", "wharfjobs-minio")
		must(t, objs, "batch/Job", "wharfjobs-minio-bucket")
		s := must(t, objs, "Secret", "wharfjobs-token")
		if v, _, _ := unstructured.NestedString(s.Object, "stringData", "WHARFJOBS_TOKEN"); v != "engine-token" {
			t.Errorf("token Secret holds %q", v)
		}
		mustNot(t, objs, "Namespace", namespace)
		mustNot(t, objs, "keda.sh/ScaledObject", "wharfjobs-aggregator")
	}},
	{"knative", []string{"--set", "knative.enabled=true", "--api-versions", "serving.knative.dev/v1"}, func(t *testing.T, objs []*unstructured.Unstructured) {
		k := must(t, objs, "serving.knative.dev/Service", "wharfjobs-provisioner")
		if env := envOf(t, k, "spec", "template", "spec", "containers"); !strings.HasPrefix(env["WHARFJOBS_TOKEN"], "valueFrom:") {
			t.Errorf("the Knative Service's provisioner has no token: %v", env)
		}
		mustNot(t, objs, "apps/Deployment", "wharfjobs-provisioner")
		mustNot(t, objs, "/Service", "wharfjobs-provisioner")
		// Without a given token one is made.
		s := must(t, objs, "Secret", "wharfjobs-token")
		if v, _, _ := unstructured.NestedString(s.Object, "stringData", "WHARFJOBS_TOKEN"); len(v) < 32 {
			t.Errorf("generated token %q", v)
		}
	}},
	{"keda", []string{"--set", "keda.enabled=true", "--api-versions", "keda.sh/v1alpha1"}, func(t *testing.T, objs []*unstructured.Unstructured) {
		must(t, objs, "keda.sh/ScaledObject", "wharfjobs-aggregator")
		a := must(t, objs, "apps/Deployment", "wharfjobs-aggregator")
		if r := replicas(t, a); r != 0 {
			t.Errorf("aggregator replicas %d, want 0 with KEDA", r)
		}
		if env := envOf(t, a, deploymentContainers...); env["WHARFJOBS_IDLE_EXIT"] != "10m" {
			t.Errorf("aggregator environment: %v", env)
		}
	}},
	{"external-store", []string{"--set", "minio.enabled=false,store.type=s3,store.endpoint=s3.eu-north-1.amazonaws.com,store.region=eu-north-1,store.tls=true,store.pathStyle=false,store.existingSecret=my-store,existingSecret=my-token"}, func(t *testing.T, objs []*unstructured.Unstructured) {
		for _, o := range objs {
			if o.GetLabels()["app.kubernetes.io/component"] == "minio" || o.GetLabels()["app.kubernetes.io/component"] == "minio-setup" {
				t.Errorf("MinIO's %s %s rendered with minio.enabled=false", o.GetKind(), o.GetName())
			}
		}
		mustNot(t, objs, "Secret", "wharfjobs-store")
		mustNot(t, objs, "Secret", "wharfjobs-token")
		cm := must(t, objs, "ConfigMap", "wharfjobs-worker")
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		want := map[string]string{"WHARFJOBS_STORE": "s3", "WHARFJOBS_STORE_ENDPOINT": "s3.eu-north-1.amazonaws.com", "WHARFJOBS_STORE_REGION": "eu-north-1", "WHARFJOBS_STORE_TLS": "true", "WHARFJOBS_STORE_PATH_STYLE": "false"}
		for k, v := range want {
			if data[k] != v {
				t.Errorf("worker ConfigMap %s=%q, want %q", k, data[k], v)
			}
		}
		p := must(t, objs, "apps/Deployment", "wharfjobs-provisioner")
		env := envOf(t, p, deploymentContainers...)
		if env["WHARFJOBS_WORKER_ENV_SECRET"] != "my-store" || !strings.Contains(env["WHARFJOBS_TOKEN"], "my-token") {
			t.Errorf("provisioner environment: %v", env)
		}
		if !strings.Contains(js(p.Object), `"secretRef":{"name":"my-store"}`) {
			t.Errorf("the provisioner does not read the store Secret my-store")
		}
	}},
	{"cronjob", []string{"--set", "aggregator.mode=cronjob,instanceId=team-a"}, func(t *testing.T, objs []*unstructured.Unstructured) {
		c := must(t, objs, "batch/CronJob", "wharfjobs-aggregator")
		if env := envOf(t, c, "spec", "jobTemplate", "spec", "template", "spec", "containers"); env["WHARFJOBS_WHARF_INSTANCE"] != "team-a" {
			t.Errorf("aggregator environment: %v", env)
		}
		mustNot(t, objs, "apps/Deployment", "wharfjobs-aggregator")
	}},
	{"everything", []string{
		"--api-versions", "serving.knative.dev/v1", "--api-versions", "keda.sh/v1alpha1",
		"--set", "knative.enabled=true,keda.enabled=true,namespace.create=true,image.repository=registry.example.com/wharfjobs,image.tag=v1.2.3,image.pullPolicy=Always",
		"--set", "imagePullSecrets[0]=pull,wharfApi.url=https://wharf.example.com,wharfApi.auth=Bearer x,instanceId=prod",
		"--set", "worker.extraEnv.WHARFJOBS_STEP_TIMEOUT=30m,worker.extraEnv.WHARFJOBS_STEP_KEEP_ON_FAILURE=true,worker.resources.limits.memory=1Gi",
		"--set-string", "provisioner.extraEnv[0].name=WHARFJOBS_MAX_RUNNING_BUILDS,provisioner.extraEnv[0].value=10,aggregator.extraEnv[0].name=WHARFJOBS_COMPARE_INTERVAL,aggregator.extraEnv[0].value=1m",
		"--set", "provisioner.nodeSelector.pool=ci,aggregator.nodeSelector.pool=ci,minio.nodeSelector.pool=storage,minio.storageClass=fast,minio.storageSize=50Gi",
		"--set", "aggregator.tolerations[0].key=ci,aggregator.tolerations[0].operator=Exists,provisioner.tolerations[0].key=ci,provisioner.tolerations[0].operator=Exists,minio.tolerations[0].key=ci,minio.tolerations[0].operator=Exists",
		"--set", "minio.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1,minio.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey=kubernetes.io/hostname",
		"--set", `minio.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels.app\.kubernetes\.io/component=minio`,
		"--set", "networkPolicy.egressCIDR=10.0.0.0/8,networkPolicy.egressPorts={443,6443,9443}",
	}, func(t *testing.T, objs []*unstructured.Unstructured) {
		must(t, objs, "Namespace", namespace)
		must(t, objs, "Secret", "wharfjobs-wharf-api")
		k := must(t, objs, "serving.knative.dev/Service", "wharfjobs-provisioner")
		env := envOf(t, k, "spec", "template", "spec", "containers")
		if env["WHARFJOBS_WORKER_IMAGE"] != "registry.example.com/wharfjobs:v1.2.3" || env["WHARFJOBS_MAX_RUNNING_BUILDS"] != "10" || env["WHARFJOBS_WORKER_MEMORY_LIMIT"] != "1Gi" {
			t.Errorf("provisioner environment: %v", env)
		}
		a := must(t, objs, "apps/Deployment", "wharfjobs-aggregator")
		env = envOf(t, a, deploymentContainers...)
		if env["WHARFJOBS_COMPARE_INTERVAL"] != "1m" || env["WHARFJOBS_WHARF_INSTANCE"] != "prod" || !strings.Contains(env["WHARFJOBS_WHARF_API_AUTH"], "wharfjobs-wharf-api") {
			t.Errorf("aggregator environment: %v", env)
		}
		cm := must(t, objs, "ConfigMap", "wharfjobs-worker")
		if v, _, _ := unstructured.NestedString(cm.Object, "data", "WHARFJOBS_STEP_TIMEOUT"); v != "30m" {
			t.Errorf("worker.extraEnv did not reach the worker ConfigMap: %q", v)
		}
		sa := must(t, objs, "ServiceAccount", "wharfjobs-worker")
		if !strings.Contains(js(sa.Object), `"imagePullSecrets":[{"name":"pull"}]`) {
			t.Errorf("the worker's ServiceAccount has no pull secret: %s", js(sa.Object))
		}
	}},
}

// TestRenderedOnARealAPIServer applies each combination's objects to a
// real kube-apiserver (Knative Serving's and KEDA's CRDs installed) as a
// server-side dry run with strict field validation, in a namespace that
// enforces and warns on Pod Security "restricted": no error and no Pod
// Security warning.
func TestRenderedOnARealAPIServer(t *testing.T) {
	// Render first: a chart error is reported without a cluster.
	rendered := map[string][]*unstructured.Unstructured{}
	for _, c := range combinations {
		out, err := render(t, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		rendered[c.name] = objects(t, out)
		t.Run("Render/"+c.name, func(t *testing.T) { c.check(t, rendered[c.name]) })
	}

	start := time.Now()
	c, err := testcluster.Start(testcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	t.Logf("etcd and kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The namespace, for real, as the README tells operators to label it.
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1Namespace, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace %s: %v", ns.Name, ns.Labels)
	w := &warnings{}
	a, err := c.ApplierWithWarnings(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InstallKnativeAndKEDA(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("CRDs served %s after the start", time.Since(start).Round(time.Millisecond))
	// helm install --dry-run=server against the cluster: the Knative and
	// KEDA APIs are found in it (no --api-versions), and the notes tell
	// the operator wharf-api's engine settings.
	t.Run("InstallDryRun", func(t *testing.T) {
		out, err := helm(t, "install", release, ".", "--namespace", namespace, "--kubeconfig", c.Kubeconfig,
			"--dry-run=server", "--set", "token=engine-token,knative.enabled=true,keda.enabled=true")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"kind: ScaledObject", "apiVersion: serving.knative.dev/v1", "api: wharf-cmd.v1",
			"url: http://wharfjobs-provisioner.wharfjobs.svc/api/worker", "get secret wharfjobs-token"} {
			if !strings.Contains(out, want) {
				t.Errorf("helm install --dry-run=server does not show %q:\n%s", want, out)
			}
		}
	})
	for _, comb := range combinations {
		t.Run("DryRun/"+comb.name, func(t *testing.T) {
			objs := rendered[comb.name]
			if len(objs) < 10 {
				t.Fatalf("only %d objects rendered", len(objs))
			}
			for _, obj := range objs {
				w.take()
				// The namespace (namespace.create) exists already: the
				// test made it. Any other object must be new.
				if err := a.CreateNew(ctx, obj, true); err != nil && !(apierrors.IsAlreadyExists(err) && obj.GetKind() == "Namespace") {
					t.Errorf("%v", err)
				}
				for _, w := range w.take() {
					t.Errorf("%s %s: the API server warns: %s", obj.GetKind(), obj.GetName(), w)
				}
			}
		})
	}
}

var corev1Namespace = func() corev1.Namespace {
	var n corev1.Namespace
	n.Name = namespace
	n.Labels = map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "restricted",
		"pod-security.kubernetes.io/audit":           "restricted",
	}
	return n
}()

// warnings collects the API server's warnings (Pod Security's among them).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}
