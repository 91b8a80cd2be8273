package job

import (
	"errors"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultInstanceID stands for the instance in project Secret names when a
// build has no WHARF_INSTANCE: wharf-cmd's default instance id
// (iver-wharf/wharf-cmd pkg/config/config.go:319 at 421514f).
const DefaultInstanceID = "local"

// ErrSecretName means a pipeline's secretName cannot name a project Secret.
var ErrSecretName = errors.New("invalid secretName")

// ProjectSecretName is the Kubernetes Secret a pipeline's `secretName:
// name` reaches: wharf-<instance>-project-<project id>-secretname-<name>,
// wharf-cmd's naming (pkg/steps/container.go:113 at 421514f). A pipeline
// is untrusted: this scoping is what keeps it to its own project's
// Secrets, away from other builds' tokens and wharfjobs' own credentials.
func ProjectSecretName(instance, projectID, name string) (string, error) {
	if projectID == "" {
		return "", fmt.Errorf("%w %q: the build has no project (WHARF_PROJECT_ID), and a step's Secrets belong to its project", ErrSecretName, name)
	}
	id, err := strconv.ParseUint(projectID, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w %q: project id %q is not a number", ErrSecretName, name, projectID)
	}
	if instance == "" {
		instance = DefaultInstanceID
	}
	full := fmt.Sprintf("wharf-%s-project-%d-secretname-%s", instance, id, name)
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrSecretName)
	}
	if errs := validation.IsDNS1123Subdomain(full); len(errs) > 0 {
		return "", fmt.Errorf("%w %q: the Secret name %s is not a valid Kubernetes name: %s", ErrSecretName, name, full, errs[0])
	}
	return full, nil
}
