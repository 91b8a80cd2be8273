package kube

import (
	"reflect"
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
	if !reflect.DeepEqual(fromEnv, fromCode) {
		t.Errorf("from the environment %+v, in code %+v", fromEnv, fromCode)
	}
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, bad := range map[string]Config{
		"WHARFJOBS_BUILD_ACTIVE_DEADLINE": {ActiveDeadline: -time.Second},
		"WHARFJOBS_MAX_RUNNING_BUILDS":    {MaxRunning: -1},
		"WHARFJOBS_WORKER_PULL_POLICY":    {PullPolicy: "Sometimes"},
		"WHARFJOBS_WORKER_MEMORY_LIMIT":   {MemoryLimit: "much"},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
