package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job/kube"
)

// TestWhyABuildWaitsOrDiedOnARealNode runs the builds issue #18 names on a
// kubelet: a step that allocates past its memory limit (OOMKilled, with the
// limit, in diagnosis.json and the log's last line), a step whose image
// does not exist (waiting lines, then the image pull limit's reason), a
// build queued behind WHARFJOBS_MAX_RUNNING_BUILDS (its position, then
// its release), and a step requesting more CPU than the node has
// (FailedScheduling lines, then the scheduling limit's reason).
func TestWhyABuildWaitsOrDiedOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c := startNode(ctx, t, dir, stepImageOf(t))
	importProdImage(ctx, t, c)
	store, storeCfg := startStore(ctx, t, "why")
	repo := func(name, pipeline string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return serveRepo(t, ctx, d, map[string]string{".wharf-ci.yml": pipeline})
	}
	step := func(image string, cmds ...string) string {
		return "build:\n  " + "main:\n    container:\n      image: " + image + "\n      cmds:\n" + "        - " + strings.Join(cmds, "\n        - ") + "\n"
	}
	// The kernel kills dd when its 256 MiB buffer passes the 48Mi limit;
	// the last command's status is the script's.
	oomRepo := repo("oom", step(stepImage, "echo allocating", "dd if=/dev/zero of=/dev/null bs=256M count=1"))
	pullRepo := repo("pull", step("nosuch.invalid/wharfjobs/none:1", "echo never"))
	okRepo := repo("ok", step(stepImage, "echo queued build ran"))
	d := deploy(ctx, t, c, store, storeCfg, map[string]string{
		"WHARFJOBS_STEP_MEMORY_LIMIT":       "48Mi",
		"WHARFJOBS_STEP_MEMORY_REQUEST":     "16Mi",
		"WHARFJOBS_STEP_IMAGE_PULL_TIMEOUT": "8s",
		"WHARFJOBS_STEP_PENDING_TIMEOUT":    "8s",
	}, func(k *kube.Config) { k.MaxRunning = 2 })

	waitFinal := func(ref string) (build.Status, string) {
		t.Helper()
		var st build.Status
		err := testenv.WaitFor(ctx, 4*time.Minute, 200*time.Millisecond, func() error {
			_, statuses, _ := d.sink.Received(ref)
			if n := len(statuses); n > 0 && statuses[n-1].Status.Final() {
				st = statuses[n-1]
				return nil
			}
			return fmt.Errorf("build %s not final at the sink", ref)
		})
		if err != nil {
			t.Fatalf("%v; pods: %s", err, debugState(c))
		}
		recs, _, _ := d.sink.Received(ref)
		var text strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&text, "[%s] %s\n", r.Source(), r.Text)
		}
		return st, text.String()
	}
	stepReason := func(st build.Status) string {
		for _, s := range st.Steps {
			if s.Step == "main" {
				return s.Reason
			}
		}
		return ""
	}

	// Two builds take the two slots; the third waits for one.
	oomRef, _ := d.trigger(t, "1", oomRepo)
	pullRef, _ := d.trigger(t, "2", pullRepo)
	okRef, _ := d.trigger(t, "3", okRepo)

	st, log := waitFinal(oomRef)
	diag, err := build.ReadDiagnosis(ctx, store, oomRef)
	if err != nil {
		t.Fatalf("OOM build: %v; log:\n%s", err, log)
	}
	// containerd 1.6 on cgroup v1 (this VM) learns of an OOM kill from an
	// event that can arrive after the task's exit; the kubelet then
	// reports the container as Error with exit 137 (seen once, in a cold
	// CI run under load). What the runtime reported is what wharfjobs
	// shows, so either is right; the diagnosis has the limit either way.
	summary := "step build/main: OOMKilled at 48Mi limit"
	if st.Status == build.Failed && stepReason(st) == "" && st.Reason == "StepFailed: build/main exit 137" {
		t.Logf("the runtime reported the OOM-killed step as exit 137, not OOMKilled (containerd's OOM event came after the exit)")
		summary = "step build/main: exit 137 (signal 9)"
		var limit string
		for _, p := range diag.Pods {
			for _, c := range p.Containers {
				if c.Name == "step" && c.ExitCode != nil && *c.ExitCode == 137 {
					limit = c.MemoryLimit
				}
			}
		}
		if limit != "48Mi" {
			t.Errorf("OOM diagnosis does not show the step container's exit 137 at its 48Mi limit:\n%s", diag.Text())
		}
	} else if st.Status != build.Failed || !strings.HasPrefix(stepReason(st), "OOMKilled: memory limit 48Mi") {
		t.Errorf("OOM build: %s %q, step reason %q; log:\n%s", st.Status, st.Reason, stepReason(st), log)
	}
	if diag.Summary != summary || diag.RecordedBy != "worker" {
		t.Errorf("OOM diagnosis: %q by %s, want %q by the worker", diag.Summary, diag.RecordedBy, summary)
	}
	if !strings.Contains(log, "diagnosis: "+summary) {
		t.Errorf("the OOM build's log has no summary line:\n%s", log)
	}
	if len(diag.Nodes) != 1 || len(diag.Nodes[0].Conditions) == 0 || len(diag.Events) == 0 || len(diag.Errors) != 0 {
		t.Errorf("OOM diagnosis lacks nodes or events, or has errors:\n%s", diag.Text())
	}
	t.Logf("the OOM build's diagnosis as `wharfjobs status` prints it:\n%s", diag.Text())

	st, log = waitFinal(pullRef)
	reason := stepReason(st)
	if st.Status != build.Failed || !(strings.HasPrefix(reason, "ImagePullBackOff: nosuch.invalid/wharfjobs/none:1") || strings.HasPrefix(reason, "ErrImagePull: nosuch.invalid/wharfjobs/none:1")) {
		t.Errorf("pull build: %s %q, step reason %q; log:\n%s", st.Status, st.Reason, reason, log)
	}
	if !strings.Contains(log, `cannot pull image "nosuch.invalid/wharfjobs/none:1"`) {
		t.Errorf("the pull build's log does not say it waits for its image:\n%s", log)
	}
	if diag, err := build.ReadDiagnosis(ctx, store, pullRef); err != nil || !strings.HasPrefix(diag.Summary, "step build/main: ") {
		t.Errorf("pull diagnosis: %+v, %v", diag, err)
	}

	st, log = waitFinal(okRef)
	if st.Status != build.Completed || !strings.Contains(log, "queued: ") || !strings.Contains(log, "released from the queue: starting") ||
		!strings.Contains(log, "queued build ran") {
		t.Errorf("queued build: %s %q; log:\n%s", st.Status, st.Reason, log)
	}
	if _, err := build.ReadDiagnosis(ctx, store, okRef); err == nil {
		t.Error("a completed build has a diagnosis")
	}

	// More CPU than the node has: the step pod is never scheduled.
	cm, err := c.Client.CoreV1().ConfigMaps(namespace).Get(ctx, "wharfjobs-worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["WHARFJOBS_STEP_CPU_REQUEST"], cm.Data["WHARFJOBS_STEP_CPU_LIMIT"] = "64", "64"
	if _, err := c.Client.CoreV1().ConfigMaps(namespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cpuRef, _ := d.trigger(t, "4", okRepo)
	st, log = waitFinal(cpuRef)
	reason = stepReason(st)
	if st.Status != build.Failed || !strings.HasPrefix(reason, "Unschedulable: ") || !strings.Contains(reason, "Insufficient cpu") {
		t.Errorf("CPU build: %s %q, step reason %q; log:\n%s", st.Status, st.Reason, reason, log)
	}
	if !strings.Contains(log, "waiting for a node: ") || !strings.Contains(log, "Insufficient cpu") {
		t.Errorf("the CPU build's log does not say why it waits:\n%s", log)
	}
	for _, ref := range []string{pullRef, okRef, cpuRef} {
		_, log := waitFinal(ref)
		t.Logf("build %s log:\n%s", ref, log)
	}
}
