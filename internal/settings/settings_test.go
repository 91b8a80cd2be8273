package settings

import (
	"strings"
	"testing"
	"time"
)

type size int64

type config struct {
	Interval time.Duration `envconfig:"POLL_INTERVAL" default:"1s"`
	Lines    int           `envconfig:"BATCH_LINES" default:"5000"`
	Bytes    size          `envconfig:"MAX_SIZE" default:"1Gi"`
	Special  time.Duration `envconfig:"HOT_POLL"`
	Name     string        `envconfig:"NAME"`
	Internal int
}

func TestNonNegative(t *testing.T) {
	if err := NonNegative(config{Internal: -1}); err != nil {
		t.Fatalf("zero settings (and a field no setting fills) refused: %v", err)
	}
	err := NonNegative(&config{Interval: -time.Second, Lines: -1, Bytes: -2, Special: -1})
	for _, want := range []string{
		"WHARFJOBS_POLL_INTERVAL=-1s: expected a duration of 0 or more (default 1s)",
		"WHARFJOBS_BATCH_LINES=-1: expected a number of 0 or more (default 5000)",
		"WHARFJOBS_MAX_SIZE=-2: expected a number of 0 or more (default 1Gi)",
		"WHARFJOBS_HOT_POLL=-1ns: expected a duration of 0 or more",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := NonNegative(config{Special: -1}, "Special"); err != nil {
		t.Fatalf("a skipped field checked: %v", err)
	}
}
