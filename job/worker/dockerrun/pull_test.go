package dockerrun_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/registrytest"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
)

// engineCall makes one call of the engine's API and fails the test on an
// error status or an error in a streamed answer.
func engineCall(t *testing.T, e *enginetest.Engine, method, path string, header http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://engine/v1.41"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || strings.Contains(string(body), `"error"`) {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, body)
	}
}

// TestPullWithCredentials: a step's image missing from the engine is
// pulled (IfNotPresent) with the credentials of its registry from the
// docker config file; without them the step fails ImagePullFailed with the
// registry's refusal. Docker only: Podman refuses plain HTTP registries
// unless registries.conf lists them, and the test engine's is the
// machine's.
func TestPullWithCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Plain HTTP on loopback, which Docker allows for 127.0.0.0/8.
	reg := registrytest.Start(t, ctx, t.TempDir(), "127.0.0.1", false)
	host := reg.Host
	e := engines.Docker(t)
	if err := e.LoadBusybox(ctx, stepImage); err != nil {
		t.Fatal(err)
	}
	// Into the registry, then gone from the engine: the step must pull it.
	ref := host + "/team/busybox"
	auth, _ := json.Marshal(map[string]string{"username": reg.User, "password": reg.Password, "serveraddress": host})
	engineCall(t, e, http.MethodPost, "/images/"+stepImage+"/tag?"+url.Values{"repo": {ref}, "tag": {"e2e"}}.Encode(), nil)
	engineCall(t, e, http.MethodPost, "/images/"+ref+"/push?tag=e2e", http.Header{"X-Registry-Auth": {base64.URLEncoding.EncodeToString(auth)}})
	engineCall(t, e, http.MethodDelete, "/images/"+ref+":e2e", nil)

	step := newStep(t, "pulled", "echo ran in the pulled image")
	step.Container.Image = ref + ":e2e"
	pull := func(c *dockerrun.Config) { c.PullPolicy = "IfNotPresent"; c.PullTimeout = time.Minute }
	res, stdout, stderr := run(t, newRunner(t, e, pull), ctx, step)
	if !strings.HasPrefix(res.Reason, "ImagePullFailed: "+ref+":e2e: ") || stdout != "" {
		t.Fatalf("without credentials: %+v %q\n%s", res, stdout, stderr)
	}
	t.Logf("without credentials: %s", res.Reason)
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), reg.DockerConfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	res, stdout, stderr = run(t, newRunner(t, e, func(c *dockerrun.Config) { pull(c); c.ConfigFile = cfgDir }), ctx, step)
	if res.ExitCode != 0 || res.Reason != "" || stdout != "ran in the pulled image\n" || !strings.Contains(stderr, "[wharfjobs] pulled image "+ref+":e2e in ") {
		t.Fatalf("with credentials: %+v %q\n%s", res, stdout, stderr)
	}
	if strings.Contains(stderr, reg.Password) {
		t.Fatal("the registry password reached the step's log")
	}
}
