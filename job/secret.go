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
	prefix, err := ProjectSecretPrefix(instance, projectID)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrSecretName, name, err)
	}
	full := prefix + name
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrSecretName)
	}
	if errs := validation.IsDNS1123Subdomain(full); len(errs) > 0 {
		return "", fmt.Errorf("%w %q: the Secret name %s is not a valid Kubernetes name: %s", ErrSecretName, name, full, errs[0])
	}
	return full, nil
}

// ProjectSecretPrefix is what every Secret of the project starts with,
// wharf-<instance>-project-<project id>-secretname-, for a runner to tell
// the project's own Secrets from others.
func ProjectSecretPrefix(instance, projectID string) (string, error) {
	if projectID == "" {
		return "", errors.New("the build has no project (WHARF_PROJECT_ID), and a step's Secrets belong to its project")
	}
	id, err := strconv.ParseUint(projectID, 10, 64)
	if err != nil {
		return "", fmt.Errorf("project id %q is not a number", projectID)
	}
	if instance == "" {
		instance = DefaultInstanceID
	}
	return fmt.Sprintf("wharf-%s-project-%d-secretname-", instance, id), nil
}
