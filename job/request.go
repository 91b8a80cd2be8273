// Package job holds what a build is: the request wharf-api sends, how a
// build is named (its ref, its worker id, its project's Secrets), the
// build as a launcher reports it (Build), and the labels every build's
// Kubernetes objects share.
//
// It declares no launcher interface: each consumer declares the methods
// it uses, functions/provisioner.Launcher (launch, list, get, cancel) and
// functions/aggregator.Jobs (the builds' Job states, and cancel), and
// job/kube.Launcher (build Jobs) and job/local.Launcher (worker processes,
// wharfjobs dev) implement them.
package job

import (
	"crypto/sha256"
	"encoding/hex"
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

// instanceLabel is an instance name that can stand in a ref as it is: a
// lower-case DNS label of at most MaxCleanInstance characters with no "--"
// (which marks the hashed form, so the two forms never meet).
var instanceLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

var refPart = regexp.MustCompile(`[^a-z0-9]+`)

// MaxCleanInstance is the longest WHARF_INSTANCE kept as it is in refs;
// longer ones are hashed, so a ref stays a valid label value (63).
const MaxCleanInstance = 40

// InstanceKey is how an instance appears in refs: the instance itself when
// it is a clean DNS label (see instanceLabel), otherwise a readable
// sanitised prefix, "--" and a hash of the exact instance. Two different
// instances never share a key: the clean forms are the instances
// themselves, and a hashed form has a "--" no clean form has.
func InstanceKey(instance string) string {
	if instance == "" {
		return ""
	}
	if len(instance) <= MaxCleanInstance && instanceLabel.MatchString(instance) && !strings.Contains(instance, "--") {
		return instance
	}
	base := strings.Trim(refPart.ReplaceAllString(strings.ToLower(instance), "-"), "-")
	if len(base) > 20 {
		base = strings.TrimRight(base[:20], "-")
	}
	if base == "" {
		base = "i"
	}
	sum := sha256.Sum256([]byte(instance))
	return base + "--" + hex.EncodeToString(sum[:])[:12]
}

// Ref is the build's key in the blob store and the root of its Kubernetes
// names: the build ref, prefixed with InstanceKey of the wharf instance
// when there is one (two wharf-api instances can both have a build 42).
// It is injective: two different (instance, build ref) pairs never share a
// ref, since BUILD_REF is digits and the instance key never ends in '-'.
func (r Request) Ref() string {
	if r.Instance == "" {
		return r.BuildRef
	}
	return InstanceKey(r.Instance) + "-" + r.BuildRef
}

// MaxWorkerIDLen is the longest worker id (the Job name): wharf-api stores
// the workerId in a 40-character column.
const MaxWorkerIDLen = 40

// WorkerID is the deterministic name of the build's worker (its Job): the
// same instance and build ref always give the same name, which is what
// makes a repeated trigger find the existing Job (AlreadyExists) instead
// of a second build. It is a DNS-1123 label of at most MaxWorkerIDLen
// characters; a longer one is cut and ends in a hash of the exact
// instance and build ref.
func (r Request) WorkerID() string {
	name := "wharf-build-" + r.Ref()
	if len(name) <= MaxWorkerIDLen {
		return name
	}
	sum := sha256.Sum256([]byte(r.Instance + "\x00" + r.BuildRef))
	return strings.TrimRight(name[:MaxWorkerIDLen-13], "-") + "--" + hex.EncodeToString(sum[:])[:10]
}

// MarshalPublic is the request as stored in request.json: no secrets.
func (r Request) MarshalPublic() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode request of build %s: %w", r.BuildRef, err)
	}
	return append(b, '\n'), nil
}
