package job

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The collision pairs a review found (issue #14, MEDIUM 3): with the old
// Ref (lower-case, replace, cut to 30) each pair shared one store
// directory and one Job, so the second trigger got the first build and
// its git token.
func TestRefIsInjective(t *testing.T) {
	pairs := [][2]string{
		{"wharf-production-europe-west-01", "wharf-production-europe-west-02"},
		{"Team_A", "team-a"},
		{"", "___"},
		{"team-a", "team-a-"},
		{"a--b", "a-b"},
		{"a", "a-1"}, // "a-1-2" must not be instance a's build "1-2"
		{strings.Repeat("x", 41), strings.Repeat("x", 42)},
	}
	for _, p := range pairs {
		for _, ref := range []string{"1", "2", "42"} {
			a, b := Request{Instance: p[0], BuildRef: ref}, Request{Instance: p[1], BuildRef: ref}
			if a.Ref() == b.Ref() {
				t.Errorf("instances %q and %q share the ref %q for build %s", p[0], p[1], a.Ref(), ref)
			}
			if a.WorkerID() == b.WorkerID() {
				t.Errorf("instances %q and %q share the worker id %q for build %s", p[0], p[1], a.WorkerID(), ref)
			}
		}
	}
	// Across instances and builds: no two pairs share a ref or a name, and
	// each is a valid label (refs are label values and key segments).
	seenRef, seenID := map[string]string{}, map[string]string{}
	instances := []string{"", "prod", "Prod", "prod-1", "prod--1", "team a", "team_a", "TEAM-A", "___", "-",
		"wharf-production-europe-west-01", "wharf-production-europe-west-02", strings.Repeat("long-instance-", 5)}
	for _, inst := range instances {
		for _, n := range []string{"1", "12", "123456789012345"} {
			r := Request{Instance: inst, BuildRef: n}
			key := inst + "\x00" + n
			if prev, dup := seenRef[r.Ref()]; dup {
				t.Errorf("%q and %q share the ref %q", key, prev, r.Ref())
			}
			if prev, dup := seenID[r.WorkerID()]; dup {
				t.Errorf("%q and %q share the worker id %q", key, prev, r.WorkerID())
			}
			seenRef[r.Ref()], seenID[r.WorkerID()] = key, key
			if errs := validation.IsValidLabelValue(r.Ref()); len(errs) > 0 {
				t.Errorf("ref %q of %q: %v", r.Ref(), key, errs)
			}
			if errs := validation.IsDNS1123Label(r.WorkerID()); len(errs) > 0 || len(r.WorkerID()) > MaxWorkerIDLen {
				t.Errorf("worker id %q of %q: %v (len %d)", r.WorkerID(), key, errs, len(r.WorkerID()))
			}
		}
	}
	// A clean instance keeps a readable ref, as before.
	if got := (Request{Instance: "prod", BuildRef: "42"}).Ref(); got != "prod-42" {
		t.Errorf("Ref of prod/42 = %q, want prod-42", got)
	}
}

func TestProjectSecretName(t *testing.T) {
	for _, c := range []struct {
		instance, project, name string
		want, err               string
	}{
		// wharf-cmd pkg/steps/container.go:113 at 421514f:
		// fmt.Sprintf("wharf-%s-project-%d-secretname-%s", instanceID, projectID, secretName)
		{"prod", "17", "registry", "wharf-prod-project-17-secretname-registry", ""},
		// wharf-cmd's default instance id, pkg/config/config.go:319.
		{"", "17", "registry", "wharf-local-project-17-secretname-registry", ""},
		// Another build's Secret or ours stays out of reach: the name is
		// always inside the project's namespace of names.
		{"prod", "17", "wharf-build-41", "wharf-prod-project-17-secretname-wharf-build-41", ""},
		{"prod", "", "registry", "", "has no project"},
		{"prod", "x", "registry", "", "not a number"},
		{"prod", "17", "../x", "", "not a valid Kubernetes name"},
		{"prod", "17", "Registry", "", "not a valid Kubernetes name"},
		{"prod", "17", "", "", "empty"},
	} {
		got, err := ProjectSecretName(c.instance, c.project, c.name)
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("ProjectSecretName(%q, %q, %q) = %q, %v; want %q, %q", c.instance, c.project, c.name, got, err, c.want, c.err)
		}
	}
}
