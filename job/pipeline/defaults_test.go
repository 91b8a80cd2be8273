package pipeline

import (
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// TestImagesDefaults: the default tags of Images are DefaultImages, and
// withDefaults gives them too.
func TestImagesDefaults(t *testing.T) {
	var fromEnv Images
	testenv.EmptyEnv(t, &fromEnv)
	if err := envconfig.Process("WHARFJOBS", &fromEnv); err != nil {
		t.Fatal(err)
	}
	fromCode := Images{}.withDefaults()
	testenv.SameDefaults(t, &fromEnv, &fromCode)
	if fromEnv != DefaultImages {
		t.Errorf("from the environment %+v, DefaultImages %+v", fromEnv, DefaultImages)
	}
}
