package aggregator

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// TestEnvironmentDefaultsAreTheCodeDefaults: an operator who sets nothing
// and a Config{} built in code get the same settings, so the default tags
// and the default constants cannot drift apart.
func TestEnvironmentDefaultsAreTheCodeDefaults(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if name := typ.Field(i).Tag.Get("envconfig"); name != "" {
			// envconfig also reads the name without the prefix.
			for _, key := range []string{"WHARFJOBS_" + name, name} {
				t.Setenv(key, "") // restored after the test
				os.Unsetenv(key)
			}
		}
	}
	var fromEnv Config
	if err := envconfig.Process("WHARFJOBS", &fromEnv); err != nil {
		t.Fatal(err)
	}
	fromCode := Config{}.withDefaults()
	env, code := reflect.ValueOf(fromEnv), reflect.ValueOf(fromCode)
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Name {
		case "Logger":
			continue // not a setting
		case "Holder":
			// No default tag: New makes up a random id for an empty one.
			if fromEnv.Holder != "" || !strings.HasPrefix(fromCode.Holder, "aggregator-") {
				t.Errorf("Holder: %q from the environment, %q in code", fromEnv.Holder, fromCode.Holder)
			}
			continue
		}
		if e, c := env.Field(i).Interface(), code.Field(i).Interface(); !reflect.DeepEqual(e, c) {
			t.Errorf("%s: WHARFJOBS_%s defaults to %v, a Config built in code to %v", f.Name, f.Tag.Get("envconfig"), e, c)
		}
		if f.Tag.Get("desc") == "" {
			t.Errorf("%s has no desc tag for the command's help", f.Name)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" when valid
	}{
		{Config{}, ""},
		{Config{HotPollInterval: -1, IdleExit: time.Minute, BatchLines: 1}, ""},
		{Config{BatchLines: -1}, "WHARFJOBS_BATCH_LINES=-1: expected a number of 0 or more (default 5000)"},
		{Config{PollInterval: -time.Second}, "WHARFJOBS_POLL_INTERVAL=-1s: expected a duration of 0 or more (default 1s)"},
		{Config{RetryMax: -1, IdleExit: -1}, "WHARFJOBS_RETRY_MAX=-1ns"},
		{Config{RetryMax: -1, IdleExit: -1}, "WHARFJOBS_IDLE_EXIT=-1ns"},
		{Config{Workers: -8}, "WHARFJOBS_RELAY_WORKERS=-8"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
	// New cannot fail, so Run and Once refuse to start.
	a := New(nil, nil, nil, Config{MissingGrace: -time.Minute})
	if err := a.Once(context.Background()); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_MISSING_GRACE") {
		t.Fatalf("Once: %v", err)
	}
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_MISSING_GRACE") {
		t.Fatalf("Run: %v", err)
	}
}
