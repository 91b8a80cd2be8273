package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/blob/backend"
	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/internal/wharfapitest"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

const (
	// MinIO's image, built from the pinned MinIO binary (`make minio`);
	// the chart runs the production image, workerImage.
	minioImage = "wharfjobs-minio:e2e"
	helmNS     = "wharfjobs-helm"
	// storageClass names the static local PV the test makes for the
	// chart's MinIO.
	storageClass = "wharfjobs-local"
	helmBuilds   = 20
	// helmMaxRunning is the provisioner's WHARFJOBS_MAX_RUNNING_BUILDS.
	helmMaxRunning = 6
	// kedaCooldown is the ScaledObject's cooldownPeriod here. With the
	// chart's drain (aggregator.drainSeconds, 60 s, after the scale-in's
	// SIGTERM) it must cover how far the relay runs behind the workers, or
	// the last builds would complete only when the next build starts an
	// aggregator (and this test would time out waiting for them).
	kedaCooldown = 60 * time.Second
)

// helmLines are the step lines of wharfapitest's files pipeline (two
// stages, two parallel steps, 2000 lines, artifacts and test results)
// that every build must show in wharf-api once.
func helmLines() []string {
	lines := []string{"[build/wait] starting"}
	for i := 1; i <= 2000; i++ {
		lines = append(lines, fmt.Sprintf("[build/lines] line %d", i))
	}
	return lines
}

// TestHelmDeployment deploys wharfjobs the way an operator does, with
// `helm install` of charts/wharfjobs onto the test node: the production
// image built from the Dockerfile, the chart's in-cluster MinIO on a PVC,
// the provisioner's NodePort as a real wharf-api's engine URL, the
// aggregator relaying to that wharf-api. Builds of the files pipeline
// triggered through wharf-api all complete with every line, artifact and
// test result exactly once; a build runs through `helm upgrade`; a killed
// worker fails its build; `helm uninstall` leaves only MinIO's PVC.
func TestHelmDeployment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	helm := cachedTool(t, "helm", "WHARFJOBS_HELM_BIN", "helm")
	minioBin := cachedTool(t, "minio", "WHARFJOBS_MINIO_BIN", "minio")

	minioImg := image.Image{Name: minioImage, Entrypoint: []string{"/usr/bin/minio"}, Files: []image.File{
		{Path: "/usr/bin/minio", Source: minioBin, Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: fs.ModeSticky | 0o777},
	}}
	c := startNode(ctx, t, dir, stepImageOf(t), minioImg)
	importProdImage(ctx, t, c)
	t0 := time.Now()
	if err := c.StartKEDA(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("KEDA's CRDs and operator ready in %v", time.Since(t0).Round(time.Millisecond))
	cs := c.Client.CoreV1()

	// The release's namespace, labelled as the chart's README says, and
	// a PV for MinIO's claim.
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: helmNS, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if _, err := cs.Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "minio-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 1000, 1000); err != nil { // MinIO's user in the chart; hostPath ignores fsGroup
		t.Fatal(err)
	}
	mode := storagev1.VolumeBindingImmediate
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: storageClass}, Provisioner: "kubernetes.io/no-provisioner", VolumeBindingMode: &mode,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	if _, err := cs.PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "wharfjobs-e2e-minio"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              storageClass,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: data, Type: &dirOrCreate}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// wharf-api listens on the bridge, where the aggregator reaches it,
	// and triggers builds at the provisioner's NodePort, which the chart
	// is given (provisioner.service.nodePort), so wharf-api starts first
	// and the chart gets its URL.
	const nodePort = 30080
	api := wharfapitest.StartTest(t, net.JoinHostPort(testcluster.PodHostIP, "0"),
		wharfapitest.Engine{URL: fmt.Sprintf("http://%s:%d/api/worker", testcluster.PodHostIP, nodePort), Token: "e2e-token"})
	apiAddr := strings.TrimPrefix(api.URL, "http://")
	values := fmt.Sprintf(`image: {repository: %s, tag: %s, pullPolicy: IfNotPresent}
token: e2e-token
wharfApi: {url: "http://%s"}
minio:
  image: %s
  storageClass: %s
  storageSize: 1Gi
  resources: {requests: {cpu: 10m, memory: 64Mi}, limits: {cpu: "2", memory: 1Gi}}
provisioner:
  service: {type: NodePort, nodePort: %d}
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: "1", memory: 256Mi}}
  extraEnv: [{name: WHARFJOBS_MAX_RUNNING_BUILDS, value: "%d"}, {name: WHARFJOBS_QUEUE_RELEASE_INTERVAL, value: "1s"}]
aggregator:
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: "1", memory: 256Mi}}
worker:
  resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: "1", memory: 256Mi}}
  extraEnv: {WHARFJOBS_STEP_CPU_REQUEST: 10m, WHARFJOBS_BUILD_TTL_AFTER_FINISHED: 10s}
keda: {enabled: true, cooldownPeriod: %d, pollingInterval: 2}
`, strings.Split(workerImage, ":")[0], strings.Split(workerImage, ":")[1], apiAddr, minioImage, storageClass, nodePort, helmMaxRunning, int(kedaCooldown/time.Second))
	valuesFile := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(valuesFile, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	helmRun := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "HELM_CACHE_HOME="+filepath.Join(dir, "helm-cache"),
			"HELM_CONFIG_HOME="+filepath.Join(dir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(dir, "helm-data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, debugState(c))
		}
		return string(out)
	}
	t1 := time.Now()
	helmRun("install", "wharfjobs", "../../charts/wharfjobs", "--namespace", helmNS, "-f", valuesFile, "--wait", "--wait-for-jobs", "--timeout", "5m")
	t.Logf("helm install --wait: %v", time.Since(t1).Round(time.Millisecond))

	svc, err := cs.Services(helmNS).Get(ctx, "wharfjobs-provisioner", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Spec.Ports[0].NodePort; got != nodePort {
		t.Fatalf("the provisioner's Service has node port %d, want provisioner.service.nodePort %d", got, nodePort)
	}
	// No build, no aggregator: KEDA took the ScaledObject (Ready) and
	// finds its trigger inactive.
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	scaledObjects := dyn.Resource(schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}).Namespace(helmNS)
	if err := testenv.WaitFor(ctx, time.Minute, 250*time.Millisecond, func() error {
		return aggregatorAtZero(ctx, c, scaledObjects)
	}); err != nil {
		t.Fatalf("before the builds: %v\n%s", err, c.Tail("keda-operator"))
	}

	files, wantTests, err := wharfapitest.FilesRepo(stepImage)
	if err != nil {
		t.Fatal(err)
	}
	repoURL := serveRepo(t, ctx, dir, files)
	client := api.Client()
	project, err := client.CreateProject("helm-e2e", repoURL, files[".wharf-ci.yml"])
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		id        string
		triggered time.Time
		done      time.Duration
		status    string
	}
	results := make([]result, helmBuilds)
	// While the builds run: when each build's worker pod first runs, and
	// the peak memory of the control plane's processes and of our pods.
	running, workerEnded := map[string]time.Time{}, map[string]time.Time{}
	// When KEDA's aggregator first ran, and when KEDA next set it to 0
	// replicas (its pod then drains).
	var aggregatorUp, scaledIn time.Time
	peakAggregators, peakWorkers := 0, 0
	peakProc, peakPod := map[string]int64{}, map[string]int64{}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			pods, err := cs.Pods(helmNS).List(sampleCtx, metav1.ListOptions{LabelSelector: job.LabelComponent + "=" + kube.ComponentWorker})
			if err == nil {
				now := time.Now()
				workers := 0
				for _, p := range pods.Items {
					ref := p.Labels[job.LabelBuildRef]
					if p.Status.Phase == corev1.PodRunning {
						workers++
						if _, ok := running[ref]; !ok {
							running[ref] = now
						}
					}
					if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Terminated != nil {
						workerEnded[ref] = cs[0].State.Terminated.FinishedAt.Time
					}
				}
				peakWorkers = max(peakWorkers, workers)
			}
			if d, err := c.Client.AppsV1().Deployments(helmNS).Get(sampleCtx, "wharfjobs-aggregator", metav1.GetOptions{}); err == nil {
				if d.Status.ReadyReplicas > 0 && aggregatorUp.IsZero() {
					aggregatorUp = time.Now()
				}
				peakAggregators = max(peakAggregators, int(d.Status.ReadyReplicas))
				if !aggregatorUp.IsZero() && scaledIn.IsZero() && d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
					scaledIn = time.Now()
				}
			}
			if n%4 == 0 {
				for name, rss := range c.RSS() {
					peakProc[name] = max(peakProc[name], rss)
				}
				for name, ws := range podMemory(sampleCtx, c, helmNS) {
					peakPod[name] = max(peakPod[name], ws)
				}
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, helmBuilds)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].triggered = time.Now()
			id, err := client.StartBuild(project)
			if err != nil {
				errs <- fmt.Errorf("build %d: %w", i, err)
				return
			}
			results[i].id = id
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	err = testenv.WaitFor(ctx, 12*time.Minute, 250*time.Millisecond, func() error {
		pending := 0
		for i := range results {
			r := &results[i]
			if r.status != "" {
				continue
			}
			b, err := client.Build(r.id)
			if err != nil {
				return err
			}
			if b.Status == "Completed" || b.Status == "Failed" {
				r.status, r.done = b.Status, time.Since(r.triggered)
				continue
			}
			pending++
		}
		if pending > 0 {
			return fmt.Errorf("%d of %d builds not ended in wharf-api", pending, helmBuilds)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, debugState(c))
	}
	stopSampling()
	<-sampled
	var took, toRunning, relayLag []time.Duration
	var lastDone time.Time // when the last build completed in wharf-api
	store := helmStore(ctx, t, c)
	for _, r := range results {
		if at := r.triggered.Add(r.done); at.After(lastDone) {
			lastDone = at
		}
		ref := kube.LabelValue(job.Request{BuildRef: r.id}.Ref())
		if at, ok := running[ref]; ok {
			toRunning = append(toRunning, at.Sub(r.triggered))
		}
		if at, ok := workerEnded[ref]; ok {
			relayLag = append(relayLag, r.triggered.Add(r.done).Sub(at))
		}
		if r.status != "Completed" {
			t.Errorf("build %s ended %s in wharf-api: %s", r.id, r.status, whyEnded(ctx, store, r.id))
		}
		took = append(took, r.done)
	}
	t.Logf("%d builds triggered at once through wharf-api (at most %d running, WHARFJOBS_MAX_RUNNING_BUILDS): trigger -> worker pod running %s; trigger -> Completed in wharf-api %s",
		helmBuilds, peakWorkers, percentiles(toRunning), percentiles(took))
	if peakWorkers > helmMaxRunning {
		t.Errorf("%d worker pods ran at once, want at most %d (WHARFJOBS_MAX_RUNNING_BUILDS)", peakWorkers, helmMaxRunning)
	}
	// How far the relay runs behind the workers: what KEDA's cooldown
	// (and the aggregator's drain) must cover.
	t.Logf("worker container ended -> Completed in wharf-api: %s", percentiles(relayLag))
	t.Logf("peak resident memory during the builds: control plane %s; pods (working set) %s", mib(peakProc), mib(peakPod))
	if aggregatorUp.IsZero() {
		t.Errorf("KEDA never ran the aggregator during the builds\n%s", c.Tail("keda-operator"))
	} else {
		t.Logf("KEDA: aggregator ready %v after the first trigger; at most %d replica(s) during the builds", aggregatorUp.Sub(results[0].triggered).Round(time.Millisecond), peakAggregators)
	}
	if !scaledIn.IsZero() {
		drained := 0
		for _, r := range results {
			if r.triggered.Add(r.done).After(scaledIn) {
				drained++
			}
		}
		t.Logf("KEDA scaled the aggregator in before every build had completed in wharf-api: %d builds completed during its drain", drained)
	}

	// Every line once in wharf-api: the final status went out after the
	// build's last line.
	want := helmLines()
	for _, r := range results {
		count, all := apiLines(t, client, r.id)
		bad := 0
		for _, l := range want {
			if n := count[l]; n != 1 {
				if bad++; bad <= 3 {
					t.Errorf("build %s: wharf-api has %q %d times, want once", r.id, l, n)
				}
			}
		}
		if bad > 0 {
			t.Errorf("build %s: %d of %d step lines not exactly once (%d lines in all)", r.id, bad, len(want), all)
		}
		// Its artifacts and test results, each once.
		if err := client.CheckFiles(r.id, wantTests); err != nil {
			t.Error(err)
		}
	}

	// Every build's log was compacted into log.ndjson.
	for _, r := range results {
		st, _, err := build.ReadStatus(ctx, store, job.Request{BuildRef: r.id}.Ref())
		if err != nil {
			t.Fatal(err)
		}
		if st.Log == nil || st.Log.CompactedSize <= 0 {
			t.Errorf("build %s: log not compacted (status %+v)", r.id, st)
		}
	}

	// Nothing of a build left once the Jobs' TTL (10 s here) passed: no
	// Jobs, no step pods, no per-build Secrets.
	err = testenv.WaitFor(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		jobs, err := c.Client.BatchV1().Jobs(helmNS).List(ctx, metav1.ListOptions{LabelSelector: job.LabelBuildRef})
		if err != nil {
			return err
		}
		if n := len(jobs.Items); n > 0 {
			return fmt.Errorf("%d build Jobs left", n)
		}
		pods, err := cs.Pods(helmNS).List(ctx, metav1.ListOptions{LabelSelector: job.LabelStep})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d step pods left", n)
		}
		secrets, err := cs.Secrets(helmNS).List(ctx, metav1.ListOptions{LabelSelector: job.LabelBuildRef})
		if err != nil {
			return err
		}
		var names []string
		for _, s := range secrets.Items {
			names = append(names, s.Name)
		}
		if len(names) > 0 {
			return fmt.Errorf("per-build Secrets left: %v", names)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// No build pod left: KEDA takes the aggregator back to zero after its
	// cooldown.
	if err := testenv.WaitFor(ctx, kedaCooldown+time.Minute, 250*time.Millisecond, func() error {
		return aggregatorAtZero(ctx, c, scaledObjects)
	}); err != nil {
		t.Errorf("after the builds: %v\n%s", err, c.Tail("keda-operator"))
	} else {
		t.Logf("KEDA: aggregator at 0 replicas %v after the last build completed in wharf-api (cooldownPeriod %v)", time.Since(lastDone).Round(time.Millisecond), kedaCooldown)
	}

	// helm upgrade to a new image tag while a build runs: the build
	// completes, its lines reach wharf-api once each, though the
	// provisioner and the aggregator were replaced mid-build.
	if _, err := c.Ctr(ctx, "images", "tag", "docker.io/library/"+workerImage, "docker.io/library/"+workerImage+"-2"); err != nil {
		t.Fatal(err)
	}
	const slowPipeline = "build:\n  slow:\n    container:\n      image: " + stepImage + "\n      cmds:\n        - for i in $(seq 1 300); do echo \"slow line $i\"; sleep 0.05; done\n"
	slowProject, err := client.CreateProject("helm-upgrade", serveRepo(t, ctx, filepath.Join(dir, "slow"), map[string]string{".wharf-ci.yml": slowPipeline}), slowPipeline)
	if err != nil {
		t.Fatal(err)
	}
	slowID, err := client.StartBuild(slowProject)
	if err != nil {
		t.Fatal(err)
	}
	workerPod(ctx, t, c, slowID)
	t2 := time.Now()
	helmRun("upgrade", "wharfjobs", "../../charts/wharfjobs", "--namespace", helmNS, "-f", valuesFile, "--set", "image.tag="+strings.Split(workerImage, ":")[1]+"-2", "--wait", "--timeout", "5m")
	t.Logf("helm upgrade to a new image tag mid-build: %v", time.Since(t2).Round(time.Millisecond))
	if status, _ := waitEnded(ctx, t, c, client, slowID, 5*time.Minute); status != "Completed" {
		t.Errorf("the build that ran through helm upgrade ended %s", status)
	}
	count, all := apiLines(t, client, slowID)
	bad := 0
	for i := 1; i <= 300; i++ {
		if n := count[fmt.Sprintf("[build/slow] slow line %d", i)]; n != 1 {
			if bad++; bad <= 3 {
				t.Errorf("build %s (through helm upgrade): wharf-api has line %d %d times, want once", slowID, i, n)
			}
		}
	}
	if bad > 0 {
		t.Errorf("build %s (through helm upgrade): %d of 300 lines not exactly once (%d lines in all)", slowID, bad, all)
	}
	for _, comp := range []string{"provisioner", "aggregator"} {
		pods, err := cs.Pods(helmNS).List(ctx, metav1.ListOptions{LabelSelector: job.LabelComponent + "=" + comp})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && !strings.HasSuffix(p.Spec.Containers[0].Image, "-2") {
				t.Errorf("%s pod %s runs %s after the upgrade", comp, p.Name, p.Spec.Containers[0].Image)
			}
		}
	}

	// A worker killed on the node (its container's task, SIGKILL): the
	// build ends Failed with WorkerLost in wharf-api, within seconds.
	const sleepPipeline = "build:\n  sleepy:\n    container:\n      image: " + stepImage + "\n      cmds:\n        - echo started; sleep 300\n"
	sleepProject, err := client.CreateProject("helm-kill", serveRepo(t, ctx, filepath.Join(dir, "sleepy"), map[string]string{".wharf-ci.yml": sleepPipeline}), sleepPipeline)
	if err != nil {
		t.Fatal(err)
	}
	killID, err := client.StartBuild(sleepProject)
	if err != nil {
		t.Fatal(err)
	}
	pod := workerPod(ctx, t, c, killID)
	if err := testenv.WaitFor(ctx, 2*time.Minute, 100*time.Millisecond, func() error {
		if count, _ := apiLines(t, client, killID); count["[build/sleepy] started"] == 0 {
			return errors.New("the step has not started")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if _, err := c.Ctr(ctx, "tasks", "kill", "-s", "SIGKILL", strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")); err != nil {
		t.Fatal(err)
	}
	status, ended := waitEnded(ctx, t, c, client, killID, time.Minute)
	t.Logf("worker killed on the node: Failed in wharf-api %v later", ended.Sub(killed).Round(time.Millisecond))
	if status != "Failed" {
		t.Errorf("the build whose worker was killed ended %s", status)
	}
	if bound := 30 * time.Second; ended.Sub(killed) > bound {
		t.Errorf("the build whose worker was killed took %v to fail in wharf-api, more than %v", ended.Sub(killed), bound)
	}
	count, _ = apiLines(t, client, killID)
	var reason string
	for l := range count {
		if strings.Contains(l, "WorkerLost") {
			reason = l
		}
	}
	if reason == "" {
		t.Errorf("wharf-api's log of the killed build has no WorkerLost line: %v", count)
	} else {
		t.Logf("its last line: %s", reason)
	}

	// helm uninstall leaves MinIO's PVC (the chart's README says so) and
	// nothing else of the release.
	helmRun("uninstall", "wharfjobs", "--namespace", helmNS, "--wait", "--timeout", "3m")
	meta, err := metadata.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	err = testenv.WaitFor(ctx, 2*time.Minute, time.Second, func() error {
		var left []string
		sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=wharfjobs"}
		for _, res := range []string{"pods", "services", "configmaps", "secrets", "serviceaccounts"} {
			l, err := meta.Resource(corev1.SchemeGroupVersion.WithResource(res)).Namespace(helmNS).List(ctx, sel)
			if err != nil {
				return err
			}
			for _, o := range l.Items {
				left = append(left, res+"/"+o.Name)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left after helm uninstall: %v", left)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	pvcs, err := cs.PersistentVolumeClaims(helmNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pvcs.Items) != 1 || !strings.HasPrefix(pvcs.Items[0].Name, "data-wharfjobs-minio-") {
		var names []string
		for _, p := range pvcs.Items {
			names = append(names, p.Name)
		}
		t.Errorf("PVCs after helm uninstall: %v, want MinIO's data-wharfjobs-minio-0 only", names)
	}
}

// aggregatorAtZero says why KEDA has not (yet) scaled the chart's
// aggregator to zero: its ScaledObject is not Ready, or the Deployment
// has replicas or pods. scaledObjects are the release namespace's.
func aggregatorAtZero(ctx context.Context, c *testcluster.Cluster, scaledObjects dynamic.ResourceInterface) error {
	so, err := scaledObjects.Get(ctx, "wharfjobs-aggregator", metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(so.Object, "status", "conditions")
	ready := false
	for _, cond := range conds {
		if m, ok := cond.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
			ready = true
		}
	}
	if !ready {
		return fmt.Errorf("the aggregator's ScaledObject is not Ready: %v", conds)
	}
	d, err := c.Client.AppsV1().Deployments(helmNS).Get(ctx, "wharfjobs-aggregator", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		return fmt.Errorf("the aggregator Deployment has %v replicas, want 0", d.Spec.Replicas)
	}
	pods, err := c.Client.CoreV1().Pods(helmNS).List(ctx, metav1.ListOptions{LabelSelector: job.LabelComponent + "=aggregator"})
	if err != nil {
		return err
	}
	if n := len(pods.Items); n > 0 {
		return fmt.Errorf("%d aggregator pods", n)
	}
	return nil
}

// helmStore opens the chart's in-cluster MinIO from this machine, at its
// Service IP (kube-proxy routes it), with the credentials the chart made.
func helmStore(ctx context.Context, t *testing.T, c *testcluster.Cluster) blob.Store {
	t.Helper()
	sec, err := c.Client.CoreV1().Secrets(helmNS).Get(ctx, "wharfjobs-store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.Client.CoreV1().Services(helmNS).Get(ctx, "wharfjobs-minio", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := backend.Open(ctx, blob.Config{
		Backend: blob.BackendMinIO, Endpoint: net.JoinHostPort(svc.Spec.ClusterIP, "9000"), Bucket: "wharf-builds", Region: "us-east-1",
		AccessKey: string(sec.Data["WHARFJOBS_STORE_ACCESS_KEY"]), SecretKey: string(sec.Data["WHARFJOBS_STORE_SECRET_KEY"]),
		PathStyle: true, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// whyEnded says, in one line, why build id ended as it did: its status
// reason, each step that did not complete, and the diagnosis summary, so
// a failed run shows the cause even when its output is cut short.
func whyEnded(ctx context.Context, store blob.Store, id string) string {
	ref := job.Request{BuildRef: id}.Ref()
	st, _, err := build.ReadStatus(ctx, store, ref)
	if err != nil {
		return err.Error()
	}
	why := []string{fmt.Sprintf("reason %q", st.Reason)}
	for _, s := range st.Steps {
		if s.Status != build.Completed {
			why = append(why, fmt.Sprintf("step %s/%s %s %q", s.Stage, s.Step, s.Status, s.Reason))
		}
	}
	if d, err := build.ReadDiagnosis(ctx, store, ref); err == nil {
		why = append(why, fmt.Sprintf("diagnosis %q", d.Summary))
	}
	return strings.Join(why, "; ")
}

// workerPod returns build id's worker pod once it is Running.
func workerPod(ctx context.Context, t *testing.T, c *testcluster.Cluster, id string) *corev1.Pod {
	t.Helper()
	sel := job.LabelBuildRef + "=" + kube.LabelValue(job.Request{BuildRef: id}.Ref()) + "," + job.LabelComponent + "=" + kube.ComponentWorker
	var pod *corev1.Pod
	err := testenv.WaitFor(ctx, 2*time.Minute, 100*time.Millisecond, func() error {
		pods, err := c.Client.CoreV1().Pods(helmNS).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].ContainerID != "" {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("build %s has no running worker pod (%d pods)", id, len(pods.Items))
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, debugState(c))
	}
	return pod
}

// apiLines returns how often each line is in wharf-api's log of build id.
func apiLines(t *testing.T, client *wharfapitest.Client, id string) (map[string]int, int) {
	t.Helper()
	var logs []struct {
		Message string `json:"message"`
	}
	if err := client.JSON(http.MethodGet, "/api/build/"+id+"/log", nil, &logs); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, l := range logs {
		count[l.Message]++
	}
	return count, len(logs)
}

// waitEnded waits until wharf-api shows build id as ended and returns its
// status and when it was first seen ended.
func waitEnded(ctx context.Context, t *testing.T, c *testcluster.Cluster, client *wharfapitest.Client, id string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	var b wharfapitest.Build
	err := testenv.WaitFor(ctx, timeout, 100*time.Millisecond, func() error {
		var err error
		if b, err = client.Build(id); err != nil {
			return err
		}
		if b.Status != "Completed" && b.Status != "Failed" {
			return fmt.Errorf("build %s is %q in wharf-api", id, b.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, debugState(c))
	}
	return b.Status, time.Now()
}

// percentiles formats the p50, p95 and maximum of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return fmt.Sprintf("p50 %v, p95 %v, max %v (%d)", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*95/100].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), len(ds))
}

// mib formats sizes by name, largest first.
func mib(m map[string]int64) string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int { return int(m[b]>>20) - int(m[a]>>20) })
	var parts []string
	for _, n := range names {
		if m[n] > 0 { // a pod the kubelet has no figure for yet
			parts = append(parts, fmt.Sprintf("%s %d MiB", n, m[n]>>20))
		}
	}
	return strings.Join(parts, ", ")
}

// podMemory reads the kubelet's summary (through the API server's node
// proxy) and returns the working set of namespace's pods by their
// app.kubernetes.io/component (the largest pod of each), or nothing when
// it cannot be read.
func podMemory(ctx context.Context, c *testcluster.Cluster, namespace string) map[string]int64 {
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/" + testcluster.NodeName + "/proxy/stats/summary").DoRaw(ctx)
	if err != nil {
		return nil
	}
	var summary struct {
		Pods []struct {
			PodRef struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"podRef"`
			Memory *struct {
				WorkingSetBytes *int64 `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"pods"`
	}
	if json.Unmarshal(raw, &summary) != nil {
		return nil
	}
	pods, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	component := map[string]string{}
	for _, p := range pods.Items {
		component[p.Name] = p.Labels[job.LabelComponent]
	}
	out := map[string]int64{}
	for _, p := range summary.Pods {
		comp := component[p.PodRef.Name]
		if p.PodRef.Namespace != namespace || comp == "" || p.Memory == nil || p.Memory.WorkingSetBytes == nil {
			continue
		}
		out[comp] = max(out[comp], *p.Memory.WorkingSetBytes)
	}
	return out
}
