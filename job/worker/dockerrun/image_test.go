package dockerrun

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/registry"
)

// TestRegistryAuth: the credentials of the image's registry from a
// config.json, given as the file or as Docker's DOCKER_CONFIG directory;
// none for another registry; errors without the secret.
func TestRegistryAuth(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"auths": {"https://index.docker.io/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("hub-user:hub-pass")) + `"},
		"registry.example.org:5000": {"username": "ci", "password": "reg-pass"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ image, user, pass string }{
		{"golang:1.26", "hub-user", "hub-pass"},
		{"registry.example.org:5000/team/app:1", "ci", "reg-pass"},
		{"quay.io/other/image", "", ""},
	}
	for _, file := range []string{dir, filepath.Join(dir, "config.json")} {
		r := &Runner{Config: Config{ConfigFile: file}}
		for _, c := range cases {
			got, err := r.registryAuth(c.image)
			if err != nil {
				t.Fatal(err)
			}
			var ac registry.AuthConfig
			if got != "" {
				raw, err := base64.URLEncoding.DecodeString(got)
				if err != nil || json.Unmarshal(raw, &ac) != nil {
					t.Fatalf("%s: header %q is not base64url JSON", c.image, got)
				}
			}
			if ac.Username != c.user || ac.Password != c.pass {
				t.Fatalf("%s via %s: %+v, want %s/%s", c.image, file, ac, c.user, c.pass)
			}
		}
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"auths": {"docker.io": {"auth": "not-base64-s3cret!"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := (&Runner{Config: Config{ConfigFile: bad}}).registryAuth("alpine")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a malformed auth: %v", err)
	}
}

// TestGraceSeconds: the engine takes whole seconds; a grace below one
// must not become an immediate SIGKILL.
func TestGraceSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{500 * time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, 10 * time.Second: 10} {
		if got := graceSeconds(d); got != want {
			t.Fatalf("graceSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}
