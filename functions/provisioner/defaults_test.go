package provisioner

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestConfigDefaults: the default tags of Config and HTTPConfig and the
// defaults in code are the same values.
func TestConfigDefaults(t *testing.T) {
	var fromEnv Config
	var httpEnv HTTPConfig
	testenv.EmptyEnv(t, &fromEnv)
	testenv.EmptyEnv(t, &httpEnv)
	for _, p := range []any{&fromEnv, &httpEnv} {
		if err := envconfig.Process("WHARFJOBS", p); err != nil {
			t.Fatal(err)
		}
	}
	fromCode := Config{}.withDefaults()
	testenv.SameDefaults(t, &fromEnv, &fromCode)
	httpCode := HTTPConfig{}.withDefaults()
	testenv.SameDefaults(t, &httpEnv, &httpCode)
	if !reflect.DeepEqual(httpEnv, httpCode) {
		t.Errorf("from the environment %+v, in code %+v", httpEnv, httpCode)
	}
	if err := errors.Join(fromEnv.Validate(), httpEnv.Validate()); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for want, err := range map[string]error{
		"WHARFJOBS_MAX_QUERY_BYTES":       Config{MaxQueryBytes: -1}.Validate(),
		"WHARFJOBS_TRIGGER_STORE_TIMEOUT": Config{StoreTimeout: -time.Second}.Validate(),
		"WHARFJOBS_HTTP_IDLE_TIMEOUT":     HTTPConfig{IdleTimeout: -time.Second}.Validate(),
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
