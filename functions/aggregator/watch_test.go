package aggregator

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/blob/fs"
	"github.com/wharfjobs/wharfjobs/job"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// TestJobWatchReactsWithoutPolling: with polling and re-listing an hour
// apart, a Job that fails its deadline still fails its build at once,
// through the watch.
func TestJobWatchReactsWithoutPolling(t *testing.T) {
	s, _ := fs.Open(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := fake.NewClientset()
	l := &kube.Launcher{Client: cs, Config: kube.Config{Namespace: "b"}}
	b, _, err := l.Launch(ctx, job.Request{BuildRef: "3", GitFullURL: "https://g/x.git"})
	if err != nil {
		t.Fatal(err)
	}
	writeBuild(t, s, "3", 2, "", nil)
	sink := NewMemorySink()
	a := New(s, sink, l, Config{PollInterval: time.Hour, DiscoverInterval: time.Hour, Logger: quiet})
	go a.Run(ctx)
	for {
		if _, statuses, _ := sink.Received("3"); len(statuses) == 1 {
			break // the first pass relayed Running
		}
		time.Sleep(10 * time.Millisecond)
	}
	j, err := cs.BatchV1().Jobs("b").Get(ctx, b.WorkerID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded"}}
	if _, err := cs.BatchV1().Jobs("b").UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, statuses, _ := sink.Received("3")
		if n := len(statuses); n == 2 && statuses[1].Status == build.Failed && statuses[1].Reason == build.ReasonDeadlineExceeded {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the Job's failure was not relayed through the watch: %+v", statuses)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
