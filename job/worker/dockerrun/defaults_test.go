package dockerrun

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestConfigDefaults: the default tags of Config and the defaults in code
// are the same values, and Validate names the variable it refuses.
func TestConfigDefaults(t *testing.T) {
	var fromEnv Config
	testenv.EmptyEnv(t, &fromEnv)
	if err := envconfig.Process("WHARFJOBS", &fromEnv); err != nil {
		t.Fatal(err)
	}
	fromCode := Config{}.withDefaults()
	// The copied kube runner settings have no tag here; their defaults
	// are kuberun's.
	fromEnv.PullPolicy = fromCode.PullPolicy
	testenv.SameDefaults(t, &fromEnv, &fromCode)
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, bad := range map[string]Config{
		"WHARFJOBS_DOCKER_STOP_GRACE": {StopGrace: -time.Second},
		"WHARFJOBS_STEP_PULL_POLICY":  {PullPolicy: "Sometimes"},
		"WHARFJOBS_DOCKER_HOST":       {Host: "/var/run/docker.sock"},
		"WHARFJOBS_DOCKER_USER":       {User: "root"},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
	for _, ok := range []string{"", "image", "1000", "1000:1000"} {
		if err := (Config{User: ok}).Validate(); err != nil {
			t.Errorf("WHARFJOBS_DOCKER_USER=%q: %v", ok, err)
		}
	}
}
