package e2e

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/miniotest"
	"github.com/wharfjobs/wharfjobs/functions/aggregator"
	"github.com/wharfjobs/wharfjobs/functions/aggregator/aggregatortest"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// startNode starts a control plane with a node for the test, imports the
// images into its containerd, and applies the namespace, ServiceAccounts
// and RBAC of manifests/ as an operator would. It stops with the test.
func startNode(ctx context.Context, t *testing.T, dir string, images ...image.Image) *testcluster.Cluster {
	t.Helper()
	t0 := time.Now()
	c, err := testcluster.Start(testcluster.Options{Node: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	t.Logf("control plane and node ready in %v", time.Since(t0).Round(time.Millisecond))

	t1 := time.Now()
	for _, img := range images {
		archive := filepath.Join(dir, strings.ReplaceAll(img.Name, ":", "_")+".tar")
		if err := img.WriteFile(archive); err != nil {
			t.Fatal(err)
		}
		if err := c.ImportImage(ctx, archive); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(archive)
	}
	t.Logf("images built and imported in %v", time.Since(t1).Round(time.Millisecond))

	a, err := c.Applier()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ApplyFiles(ctx, "../../manifests/namespace.yaml", "../../manifests/serviceaccounts.yaml", "../../manifests/rbac.yaml"); err != nil {
		t.Fatal(err)
	}
	return c
}

// startStore starts a MinIO on the bridge address, which pods reach, and
// opens bucket on it. It stops with the test.
func startStore(ctx context.Context, t *testing.T, bucket string) (blob.Store, blob.Config) {
	t.Helper()
	minio, err := miniotest.StartOn(testcluster.PodHostIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { minio.Close() })
	cfg := minio.Config("minio", miniotest.BucketName(bucket))
	store, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return store, cfg
}

// deployment is wharfjobs as the node tests run it: the worker's
// ConfigMap and store Secret in the namespace, the provisioner behind a
// loopback HTTP server, and the aggregator relaying to an in-memory sink.
type deployment struct {
	api  *httptest.Server
	sink *aggregatortest.MemorySink
	pods *podWatch
}

// deploy starts it; workerEnv adds to (or overrides) the worker's
// ConfigMap. Everything stops when the test ends.
func deploy(ctx context.Context, t *testing.T, c *testcluster.Cluster, store blob.Store, storeCfg blob.Config, workerEnv map[string]string, launcherCfg ...func(*kube.Config)) *deployment {
	t.Helper()
	return deployTo(ctx, t, c, store, storeCfg, workerEnv, nil, nil, launcherCfg...)
}

// deployTo is deploy with the provisioner serving on ln (nil: a new
// loopback port) and the aggregator relaying to sink (nil: d.sink, in
// memory), for a test with a real wharf-api, which needs the engine's URL
// before it starts.
//
// launcherCfg changes the provisioner's launcher settings; with
// MaxRunning set, the provisioner's queue is passed every second, as
// `wharfjobs provisioner` does every WHARFJOBS_QUEUE_RELEASE_INTERVAL.
func deployTo(ctx context.Context, t *testing.T, c *testcluster.Cluster, store blob.Store, storeCfg blob.Config, workerEnv map[string]string, ln net.Listener, sink aggregator.Sink, launcherCfg ...func(*kube.Config)) *deployment {
	t.Helper()
	env := map[string]string{
		"WHARFJOBS_STORE":            "minio",
		"WHARFJOBS_STORE_ENDPOINT":   storeCfg.Endpoint,
		"WHARFJOBS_STORE_BUCKET":     storeCfg.Bucket,
		"WHARFJOBS_STEP_FETCH_IMAGE": workerImage,
		"WHARFJOBS_STEP_CPU_REQUEST": "10m",
		"WHARFJOBS_LOG_FORMAT":       "json",
	}
	maps.Copy(env, workerEnv)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "wharfjobs-worker", Namespace: namespace}, Data: env}
	if _, err := c.Client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wharfjobs-store", Namespace: namespace}, StringData: map[string]string{
		"WHARFJOBS_STORE_ACCESS_KEY": storeCfg.AccessKey,
		"WHARFJOBS_STORE_SECRET_KEY": storeCfg.SecretKey,
	}}
	if _, err := c.Client.CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	launcher := &kube.Launcher{Client: c.Client, Config: kube.Config{Namespace: namespace, Image: workerImage, CPURequest: "10m"}}
	for _, f := range launcherCfg {
		f(&launcher.Config)
	}
	prov, err := provisioner.New(launcher, store, provisioner.Config{Token: "e2e-token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if launcher.Config.MaxRunning > 0 {
		qctx, stopQueue := context.WithCancel(ctx)
		queueDone := make(chan struct{})
		go func() {
			defer close(queueDone)
			for qctx.Err() == nil {
				_ = prov.Queue().Pass(qctx)
				select {
				case <-qctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
		t.Cleanup(func() { stopQueue(); <-queueDone })
	}
	d := &deployment{api: httptest.NewUnstartedServer(prov), sink: aggregatortest.NewMemorySink()}
	if ln != nil {
		d.api.Listener.Close()
		d.api.Listener = ln
	}
	d.api.Start()
	t.Cleanup(d.api.Close)
	if sink == nil {
		sink = d.sink
	}
	agg := aggregator.New(store, sink, launcher, aggregator.Config{PollInterval: 200 * time.Millisecond, DiscoverInterval: 2 * time.Second, LeaseDuration: 15 * time.Second})
	aggCtx, stopAgg := context.WithCancel(ctx)
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
	t.Cleanup(func() { stopAgg(); <-aggDone })
	d.pods = watchPods(ctx, t, c)
	return d
}

// trigger starts build buildRef of repoURL as wharf-api would and returns
// its ref and when it was triggered.
func (d *deployment) trigger(t *testing.T, buildRef, repoURL string) (string, time.Time) {
	t.Helper()
	q := url.Values{"token": {"e2e-token"}, "BUILD_REF": {buildRef}, "REPO_NAME": {"demo"}, "REPO_GROUP": {"e2e"},
		"GIT_FULLURL": {repoURL}, "GIT_BRANCH": {"main"}, "WHARF_PROJECT_ID": {"1"}}
	at := time.Now()
	resp, err := http.Post(d.api.URL+"/api/worker?"+q.Encode(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger answered %s", resp.Status)
	}
	return job.Request{BuildRef: buildRef}.Ref(), at
}
