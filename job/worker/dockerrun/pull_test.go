package dockerrun_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
	"github.com/wharfjobs/wharfjobs/job/worker/dockerrun"
)

// startRegistry runs the CNCF Distribution registry (`make registry`) on
// loopback over plain HTTP, which Docker allows for 127.0.0.0/8, with
// basic auth for user and password.
func startRegistry(t *testing.T, user, password string) string {
	t.Helper()
	bin, err := testenv.CachedBinary("registry", "WHARFJOBS_REGISTRY_BIN", "registry")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: %s\nauth:\n  htpasswd:\n    realm: dockerrun-test\n    path: %s\n",
		filepath.Join(dir, "data"), host, testenv.RandomHex(16), filepath.Join(dir, "htpasswd"))
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	client := &http.Client{Timeout: 5 * time.Second}
	err = testenv.WaitFor(context.Background(), 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := client.Get("http://" + host + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("/v2/ answered %s without credentials, want 401", resp.Status)
		}
		return nil
	})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
		t.Fatalf("registry at %s: %v\n%s", host, err, b)
	}
	return host
}

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
	const user = "ci"
	password := "pw-" + testenv.RandomHex(8)
	host := startRegistry(t, user, password)
	e := engines.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.LoadBusybox(ctx, stepImage); err != nil {
		t.Fatal(err)
	}
	// Into the registry, then gone from the engine: the step must pull it.
	ref := host + "/team/busybox"
	auth, _ := json.Marshal(map[string]string{"username": user, "password": password, "serveraddress": host})
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
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	res, stdout, stderr = run(t, newRunner(t, e, func(c *dockerrun.Config) { pull(c); c.ConfigFile = cfgDir }), ctx, step)
	if res.ExitCode != 0 || res.Reason != "" || stdout != "ran in the pulled image\n" || !strings.Contains(stderr, "[wharfjobs] pulled image "+ref+":e2e in ") {
		t.Fatalf("with credentials: %+v %q\n%s", res, stdout, stderr)
	}
	if strings.Contains(stderr, password) {
		t.Fatal("the registry password reached the step's log")
	}
}
