package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/wharfjobs/wharfjobs/blob/build"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestConfigDefaults: the default tags of Config (and its Files) and the
// defaults in code are the same values.
func TestConfigDefaults(t *testing.T) {
	var fromEnv Config
	testenv.EmptyEnv(t, &fromEnv)
	for _, p := range []any{&fromEnv, &fromEnv.Files, &fromEnv.Log, &fromEnv.Images} {
		if err := envconfig.Process("WHARFJOBS", p); err != nil {
			t.Fatal(err)
		}
	}
	fromCode := Config{}.withDefaults()
	testenv.SameDefaults(t, &fromEnv, &fromCode)
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, bad := range map[string]Config{
		"WHARFJOBS_STEP_TIMEOUT":       {StepTimeout: -time.Second},
		"WHARFJOBS_HEARTBEAT_INTERVAL": {Heartbeat: -time.Second},
		"WHARFJOBS_CACHE_MAX_SIZE":     {Files: FilesConfig{CacheMaxSize: -1}},
		"WHARFJOBS_LOG_UPLOAD_TIMEOUT": {Log: build.WriterConfig{UploadTimeout: -time.Second}},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
