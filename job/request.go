// Package job holds what a build is: the request wharf-api sends, the
// Launcher interface that starts a build's worker, and the names and labels
// every build's Kubernetes objects share.
package job

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Request is one build request as wharf-api sends it (query parameters of
// the trigger). Secret fields never leave the process in JSON: they travel
// in a per-build Kubernetes Secret (or a file for local builds).
type Request struct {
	// BuildRef is wharf-api's build id (BUILD_REF), a positive integer.
	BuildRef   string `json:"buildRef"`
	RepoName   string `json:"repoName,omitempty"`
	RepoGroup  string `json:"repoGroup,omitempty"`
	RepoBranch string `json:"repoBranch,omitempty"`
	GitBranch  string `json:"gitBranch,omitempty"`
	// RunStages lists the stages to run; empty means all (RUN_STAGES=ALL).
	RunStages   []string `json:"runStages,omitempty"`
	GitFullURL  string   `json:"gitFullUrl"`
	ProjectID   string   `json:"projectId,omitempty"`
	Instance    string   `json:"instance,omitempty"`
	Environment string   `json:"environment,omitempty"`
	// InputNames lists the names of Vars, for request.json.
	InputNames []string `json:"inputNames,omitempty"`

	// Vars are the build inputs (VARS), values typed as YAML gave them.
	// They travel with the secrets: the provisioner cannot know which are
	// password inputs without parsing the pipeline, which it never does.
	Vars map[string]any `json:"-"`
	// GitToken authenticates the clone.
	GitToken string `json:"-"`
}

// Secrets is the part of a request that must never reach a log, an object
// key, a Job spec or an error message.
type Secrets struct {
	GitToken string         `json:"gitToken,omitempty"`
	Vars     map[string]any `json:"vars,omitempty"`
}

// Secrets returns the request's secret part.
func (r Request) Secrets() Secrets {
	return Secrets{GitToken: r.GitToken, Vars: r.Vars}
}

// WithSecrets returns r with the secret part set from s.
func (r Request) WithSecrets(s Secrets) Request {
	r.GitToken, r.Vars = s.GitToken, s.Vars
	return r
}

var refPart = regexp.MustCompile(`[^a-z0-9-]+`)

// Ref is the build's key in the blob store and the root of its Kubernetes
// names: the build ref, prefixed with the wharf instance when there is one
// (two wharf-api instances can both have a build 42).
func (r Request) Ref() string {
	if r.Instance == "" {
		return r.BuildRef
	}
	inst := strings.Trim(refPart.ReplaceAllString(strings.ToLower(r.Instance), "-"), "-")
	if len(inst) > 30 {
		inst = inst[:30]
	}
	return inst + "-" + r.BuildRef
}

// MarshalPublic is the request as stored in request.json: no secrets.
func (r Request) MarshalPublic() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode request of build %s: %w", r.BuildRef, err)
	}
	return append(b, '\n'), nil
}
