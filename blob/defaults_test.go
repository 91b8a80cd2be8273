package blob

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// TestConfigDefaults: the store timeout's default tag is the one in code,
// the defaults validate, and nonsense does not.
func TestConfigDefaults(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WHARFJOBS_") || strings.HasPrefix(k, "STORE") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	var cfg Config
	if err := envconfig.Process("WHARFJOBS", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != DefaultTimeout {
		t.Errorf("WHARFJOBS_STORE_TIMEOUT's default is %s, the code's %s", cfg.Timeout, DefaultTimeout)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, bad := range map[string]Config{
		"WHARFJOBS_STORE=":         {Backend: "ftp"},
		"WHARFJOBS_STORE_TIMEOUT=": {Backend: BackendS3, Timeout: -time.Second},
		"WHARFJOBS_STORE_FS_ROOT":  {Backend: BackendFS},
	} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
