package kuberun

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestConfigDefaults: the default tags of Config and the defaults in code
// are the same values.
func TestConfigDefaults(t *testing.T) {
	var fromEnv Config
	testenv.EmptyEnv(t, &fromEnv)
	if err := envconfig.Process("WHARFJOBS", &fromEnv); err != nil {
		t.Fatal(err)
	}
	fromCode := Config{}.withDefaults()
	testenv.SameDefaults(t, &fromEnv, &fromCode)
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, bad := range map[string]Config{
		"WHARFJOBS_STEP_POLL_INTERVAL":      {PollInterval: -time.Second},
		"WHARFJOBS_STEP_PENDING_TIMEOUT":    {PendingTimeout: -time.Second},
		"WHARFJOBS_STEP_IMAGE_PULL_TIMEOUT": {ImagePullTimeout: -time.Second},
		"WHARFJOBS_STEP_RUN_AS_USER":        {RunAsUser: -1},
		"WHARFJOBS_STEP_PULL_POLICY":        {PullPolicy: "Sometimes"},
		"WHARFJOBS_STEP_CPU_LIMIT":          {CPULimit: "lots"},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
