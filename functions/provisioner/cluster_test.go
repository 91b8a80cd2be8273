package provisioner_test

// Tests and benchmarks against a real kube-apiserver (and etcd) started by
// internal/testcluster.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	"k8s.io/client-go/util/retry"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/functions/provisioner"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
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

type clusterEnv struct {
	*env
	ns string
}

func newClusterEnv(t testing.TB, cfg kube.Config) *clusterEnv {
	t.Helper()
	c := realCluster(t)
	ns, err := c.Namespace(context.Background(), "prov")
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Namespace, cfg.Image = ns, "wharfjobs:test"
	l := &kube.Launcher{Client: c.Client, Config: cfg}
	p, err := provisioner.New(l, store, provisioner.Config{Token: token}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &clusterEnv{env: &env{srv: srv, store: store, launch: l}, ns: ns}
}

func TestRealAPIServerAcceptsTheBuildJob(t *testing.T) {
	e := newClusterEnv(t, kube.Config{})
	resp, body := e.post(t, "/api/worker", wharfAPIQuery("42"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger: %d %v", resp.StatusCode, body)
	}
	ctx := context.Background()
	cs := realCluster(t).Client
	j, err := cs.BatchV1().Jobs(e.ns).Get(ctx, body["workerId"].(string), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Spec.PodFailurePolicy == nil || *j.Spec.BackoffLimit != 0 || *j.Spec.ActiveDeadlineSeconds != 7200 || *j.Spec.TTLSecondsAfterFinished != 3600 {
		t.Fatalf("job spec as stored: %+v", j.Spec)
	}
	sec, err := cs.CoreV1().Secrets(e.ns).Get(ctx, j.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != j.UID {
		t.Fatalf("secret owner %v, job uid %s", sec.OwnerReferences, j.UID)
	}
	// A dry run of every variant the renderer produces must pass the real
	// validation too: queued, Kueue, no secrets.
	for _, cfg := range []kube.Config{{MaxRunning: 1}, {KueueQueue: "q"}} {
		cfg.Namespace, cfg.Image = e.ns, "x"
		jb, _, err := kube.Render(jobRequest("7"), cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("dry run %+v: %v", cfg, err)
		}
	}
}

func TestRealAPIServerConcurrentTriggersMakeOneJob(t *testing.T) {
	e := newClusterEnv(t, kube.Config{})
	const n = 100
	type answer struct {
		code int
		id   string
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, body := e.post(t, "/api/worker", wharfAPIQuery("100"))
			id, _ := body["workerId"].(string)
			answers[i] = answer{resp.StatusCode, id}
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i, a := range answers {
		switch {
		case a.code == http.StatusCreated:
			created++
		case a.code != http.StatusOK:
			t.Fatalf("request %d answered %d", i, a.code)
		}
		if a.id != answers[0].id {
			t.Fatalf("request %d got worker %q, request 0 %q", i, a.id, answers[0].id)
		}
	}
	jobs, err := realCluster(t).Client.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 1 || created != 1 {
		t.Fatalf("%d jobs, %d answers 201, from %d identical triggers; want exactly 1 of each", len(jobs.Items), created, n)
	}
}

// replica is a second provisioner (its own Launcher, so its own process
// lock) on e's namespace and store, as Knative runs several.
func (e *clusterEnv) replica(t *testing.T) *env {
	t.Helper()
	l := &kube.Launcher{Client: realCluster(t).Client, Config: e.launch.Config}
	p, err := provisioner.New(l, e.store, provisioner.Config{Token: token}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &env{srv: srv, store: e.store, launch: l}
}

// completeJob marks Job name complete, as the Job controller would once its
// pod succeeded (the test cluster runs no node).
func completeJob(t *testing.T, jobs batchv1client.JobInterface, name string) {
	t.Helper()
	ctx := context.Background()
	j, err := jobs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	j.Status.StartTime, j.Status.CompletionTime = &now, &now
	j.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	if _, err := jobs.UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRealAPIServerCapHoldsUnderConcurrentTriggers: builds triggered at
// once (wharf-api starting many), half through each of two provisioner
// replicas, must not each see the same free slots: exactly
// WHARFJOBS_MAX_RUNNING_BUILDS of them run, the rest are queued.
func TestRealAPIServerCapHoldsUnderConcurrentTriggers(t *testing.T) {
	const maxRunning, n = 3, 12
	e := newClusterEnv(t, kube.Config{MaxRunning: maxRunning})
	replicas := []*env{e.env, e.replica(t)}
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, _ := replicas[i%2].post(t, "/api/worker", wharfAPIQuery(fmt.Sprint(200+i)))
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusCreated {
			t.Fatalf("trigger %d answered %d", i, code)
		}
	}
	jobs, err := realCluster(t).Client.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, j := range jobs.Items {
		if !*j.Spec.Suspend {
			running = append(running, j.Name)
		}
	}
	if len(jobs.Items) != n || len(running) != maxRunning {
		t.Fatalf("%d of %d Jobs created unsuspended (%v), want %d (WHARFJOBS_MAX_RUNNING_BUILDS)", len(running), len(jobs.Items), running, maxRunning)
	}
	// A slot frees: a build triggered now queues behind the nine waiting
	// rather than take it; the release pass gives it to one of them.
	ctx := context.Background()
	api := realCluster(t).Client.BatchV1().Jobs(e.ns)
	completeJob(t, api, running[0])
	resp, body := e.post(t, "/api/worker", wharfAPIQuery("299"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger 299: %d %v", resp.StatusCode, body)
	}
	late := body["workerId"].(string)
	released, err := e.launch.ReleaseQueued(ctx)
	if err != nil || len(released) != 1 || released[0] == late {
		t.Fatalf("released %v, %v; want one of the builds queued before %s", released, err, late)
	}
	if j, err := api.Get(ctx, late, metav1.GetOptions{}); err != nil || !*j.Spec.Suspend {
		t.Fatalf("%s jumped the queue (err %v)", late, err)
	}
}

// The admission Lease of a provisioner that died holding it keeps the
// others waiting only until it expires; one that stays held fails the
// trigger with ErrAdmissionBusy instead of starting past the cap.
func TestRealAPIServerAdmissionLeaseExpires(t *testing.T) {
	e := newClusterEnv(t, kube.Config{MaxRunning: 2, AdmissionLease: 2 * time.Second, RequestTimeout: 2 * time.Second})
	ctx := context.Background()
	leases := realCluster(t).Client.CoordinationV1().Leases(e.ns)
	// hold writes the Lease as another replica holding it would.
	hold := func(holder string) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			now := metav1.NowMicro()
			seconds := int32(2)
			l, err := leases.Get(ctx, kube.AdmissionLease, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: kube.AdmissionLease}}
			} else if err != nil {
				return err
			}
			l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now}
			if l.ResourceVersion == "" {
				_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			} else {
				_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			}
			return err
		})
	}
	if err := hold("dead-replica"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if resp, body := e.post(t, "/api/worker", wharfAPIQuery("300")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("trigger behind an expiring lease: %d %v", resp.StatusCode, body)
	}
	if waited := time.Since(t0); waited < time.Second {
		t.Fatalf("started after %v: did not wait for the lease held by another replica", waited)
	}
	// Given back at once after use: the next trigger does not wait.
	if l, err := leases.Get(ctx, kube.AdmissionLease, metav1.GetOptions{}); err != nil || l.Spec.HolderIdentity != nil {
		t.Fatalf("lease after the trigger: %+v, %v; want no holder", l.Spec, err)
	}
	// A replica that keeps renewing it: the launch gives up, and says why.
	if err := hold("busy-replica"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	renewed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				renewed <- nil
				return
			case <-time.After(200 * time.Millisecond):
				if err := hold("busy-replica"); err != nil {
					renewed <- err
					return
				}
			}
		}
	}()
	_, _, err := e.launch.Launch(ctx, job.Request{BuildRef: "301", Instance: "prod"})
	close(stop)
	if rerr := <-renewed; rerr != nil {
		t.Fatalf("renewing the other replica's lease: %v", rerr)
	}
	if !errors.Is(err, kube.ErrAdmissionBusy) || !strings.Contains(err.Error(), "busy-replica") {
		t.Fatalf("launch behind a held lease: %v, want ErrAdmissionBusy naming the holder", err)
	}
}

func TestRealAPIServerListCancelQueue(t *testing.T) {
	e := newClusterEnv(t, kube.Config{MaxRunning: 1})
	ctx := context.Background()
	cs := realCluster(t).Client
	jobs := cs.BatchV1().Jobs(e.ns)
	var ids []string
	for i, ref := range []string{"1", "2", "3"} {
		if i > 0 {
			// Creation timestamps have second precision: keep the order
			// clear by creating the next Job in a later second.
			j, err := jobs.Get(ctx, ids[i-1], metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := testenv.WaitFor(ctx, 5*time.Second, 10*time.Millisecond, func() error {
				if now := time.Now(); now.Unix() <= j.CreationTimestamp.Unix() {
					return fmt.Errorf("still the second of %s (%v): %v", j.Name, j.CreationTimestamp, now)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		resp, body := e.post(t, "/api/worker", wharfAPIQuery(ref))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("trigger %s: %d %v", ref, resp.StatusCode, body)
		}
		ids = append(ids, body["workerId"].(string))
	}
	_, body := e.get(t, "/api/worker?WHARF_INSTANCE=prod")
	if body["totalCount"] != float64(3) {
		t.Fatalf("list: %v", body)
	}
	suspended := func(id string) bool {
		j, err := jobs.Get(ctx, id, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *j.Spec.Suspend
	}
	if suspended(ids[0]) || !suspended(ids[1]) || !suspended(ids[2]) {
		t.Fatal("only the first build should run")
	}
	// Cancel the running build: the oldest queued one takes its place.
	req, _ := http.NewRequest(http.MethodDelete, e.srv.URL+"/api/worker/"+ids[0]+"?token="+token, nil)
	if resp, body := do(t, req); resp.StatusCode != http.StatusOK || body["reason"] != "Cancelled" {
		t.Fatalf("cancel: %d %v", resp.StatusCode, body)
	}
	// Background propagation: the Job is gone or going.
	if err := testenv.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		if j, err := jobs.Get(ctx, ids[0], metav1.GetOptions{}); err == nil && j.DeletionTimestamp == nil {
			return errors.New("cancelled job not deleted")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	released, err := e.launch.ReleaseQueued(ctx)
	if err != nil || len(released) != 1 || released[0] != ids[1] {
		t.Fatalf("released %v, %v; want %s", released, err, ids[1])
	}
	if suspended(ids[1]) || !suspended(ids[2]) {
		t.Fatal("release did not unsuspend exactly the oldest queued build")
	}
	// The released build completes: the last one goes.
	completeJob(t, jobs, ids[1])
	if released, err := e.launch.ReleaseQueued(ctx); err != nil || len(released) != 1 || released[0] != ids[2] {
		t.Fatalf("second release: %v %v", released, err)
	}
	st, _, _ := build.ReadStatus(ctx, e.store, "prod-1")
	if st.Status != build.Failed || st.Reason != build.ReasonCancelled.String() {
		t.Fatalf("cancelled build status %+v", st)
	}
}

// BenchmarkTriggerLatency: trigger -> Job created over HTTP, against the
// real API server, next to the API server's own create of the same Job.
// Reports p50/p99 of both, and the provisioner's overhead.
func BenchmarkTriggerLatency(b *testing.B) {
	e := newClusterEnv(b, kube.Config{})
	const n = 1000
	ctx := context.Background()
	cs := realCluster(b).Client
	for b.Loop() {
		direct := make([]time.Duration, 0, n)
		viaAPI := make([]time.Duration, 0, n)
		for i := range n {
			jb, _, _ := kube.Render(jobRequest(fmt.Sprint(100000+i)), e.launch.Config, false)
			start := time.Now()
			if _, err := cs.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			direct = append(direct, time.Since(start))

			q := wharfAPIQuery(fmt.Sprint(200000 + i))
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/worker?"+q.Encode(), nil)
			start = time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusCreated {
				b.Fatalf("trigger %d: %v %v", i, resp, err)
			}
			resp.Body.Close()
			viaAPI = append(viaAPI, time.Since(start))
		}
		dp50, dp99 := percentiles(direct)
		tp50, tp99 := percentiles(viaAPI)
		b.ReportMetric(float64(dp50.Microseconds())/1000, "create-p50-ms")
		b.ReportMetric(float64(dp99.Microseconds())/1000, "create-p99-ms")
		b.ReportMetric(float64(tp50.Microseconds())/1000, "trigger-p50-ms")
		b.ReportMetric(float64(tp99.Microseconds())/1000, "trigger-p99-ms")
		b.ReportMetric(float64((tp99-dp99).Microseconds())/1000, "overhead-p99-ms")
	}
}

// BenchmarkTriggerThroughput: builds started per second by 50 concurrent
// clients.
func BenchmarkTriggerThroughput(b *testing.B) {
	e := newClusterEnv(b, kube.Config{})
	const clients, perClient = 50, 20
	var seq int
	for b.Loop() {
		var wg sync.WaitGroup
		start := time.Now()
		base := seq
		seq += clients * perClient
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perClient {
					q := wharfAPIQuery(fmt.Sprint(300000 + base + c*perClient + i))
					resp, err := http.PostForm(e.srv.URL+"/api/worker?"+q.Encode(), url.Values{})
					if err != nil || resp.StatusCode != http.StatusCreated {
						b.Errorf("trigger: %v %v", resp, err)
						return
					}
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(clients*perClient)/time.Since(start).Seconds(), "builds/s")
	}
}

func percentiles(d []time.Duration) (time.Duration, time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100]
}

func jobRequest(ref string) job.Request {
	return job.Request{BuildRef: ref, Instance: "bench", GitFullURL: "https://git.example.org/a.git", GitToken: "t", Vars: map[string]any{"A": 1}}
}

// TestJobControllerAndGarbageCollector runs the real job controller and
// garbage collector: the build Job's pod must pass the API server's pod
// validation when the controller creates it, and cancelling the build
// must take the pod and the build's Secret with the Job.
func TestJobControllerAndGarbageCollector(t *testing.T) {
	c, err := testcluster.Start(testcluster.Options{ControllerManager: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, err := c.Namespace(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	// The worker's ServiceAccount must exist for the pod to be admitted.
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "wharfjobs-worker"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	store, _ := fs.Open(t.TempDir())
	l := &kube.Launcher{Client: c.Client, Config: kube.Config{Namespace: ns}}
	p, err := provisioner.New(l, store, provisioner.Config{Token: token}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	e := &env{srv: srv, store: store, launch: l}
	_, body := e.post(t, "/api/worker", wharfAPIQuery("11"))
	id, _ := body["workerId"].(string)
	if id == "" {
		t.Fatalf("trigger: %v", body)
	}
	var pod corev1.Pod
	waitFor(t, ctx, "the job controller to create the worker pod", func() bool {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=worker"})
		if err == nil && len(pods.Items) == 1 {
			pod = pods.Items[0]
			return true
		}
		return false
	})
	if pod.Spec.ServiceAccountName != "wharfjobs-worker" || pod.Annotations[kube.AnnotationSafeToEvict] != "false" {
		t.Fatalf("worker pod %+v", pod.ObjectMeta)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/api/worker/"+id+"?token="+token, nil)
	if resp, body := do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d %v", resp.StatusCode, body)
	}
	waitFor(t, ctx, "the garbage collector to delete the pod and the Secret", func() bool {
		_, perr := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		_, serr := c.Client.CoreV1().Secrets(ns).Get(ctx, id, metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr)
	})
}

// waitFor waits until cond holds, until ctx's deadline (or a minute).
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	timeout := time.Minute
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := testenv.WaitFor(ctx, timeout, 100*time.Millisecond, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
