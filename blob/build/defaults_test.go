package build

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestWriterConfigDefaults: the default tags of WriterConfig and the
// defaults in code are the same values.
func TestWriterConfigDefaults(t *testing.T) {
	var fromEnv WriterConfig
	testenv.EmptyEnv(t, &fromEnv)
	if err := envconfig.Process("WHARFJOBS", &fromEnv); err != nil {
		t.Fatal(err)
	}
	var fromCode WriterConfig
	fromCode.defaults()
	testenv.SameDefaults(t, &fromEnv, &fromCode, "SpillDir")
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	for _, bad := range []WriterConfig{{FlushInterval: -1}, {FlushLinger: -1}, {ChunkSize: -1}, {RetryMin: time.Second, RetryMax: time.Millisecond}, {Compression: "gzip"}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_LOG_") {
			t.Errorf("Validate(%+v) = %v, want an error naming the variable", bad, err)
		}
	}
}
