package dockerrun

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/wharfjobs/wharfjobs/blob/build"
)

// ensureImage makes image present as WHARFJOBS_STEP_PULL_POLICY says
// (IfNotPresent: pull when missing; Always; Never) and returns the step's
// failure reason when it cannot, "" when the image is there.
func (r *Runner) ensureImage(ctx context.Context, image string, stderr io.Writer) string {
	if r.Config.PullPolicy != "Always" {
		cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout)
		_, err := r.cli.ImageInspect(cctx, image)
		cancel()
		if err == nil {
			return ""
		}
		if !cerrdefs.IsNotFound(err) {
			return build.ReasonImagePullFailed.Withf("%s: %v", image, err)
		}
		if r.Config.PullPolicy == "Never" {
			return build.ReasonImagePullFailed.Withf("%s: not on the engine, and WHARFJOBS_STEP_PULL_POLICY=Never", image)
		}
	}
	fmt.Fprintf(stderr, "[wharfjobs] pulling image %s\n", image)
	start := time.Now()
	auth, err := r.registryAuth(image)
	if err != nil {
		return build.ReasonImagePullFailed.Withf("%s: %v", image, err)
	}
	pctx, cancel := context.WithTimeout(ctx, r.Config.PullTimeout)
	defer cancel()
	resp, err := r.cli.ImagePull(pctx, image, client.ImagePullOptions{RegistryAuth: auth})
	if err == nil {
		err = resp.Wait(pctx)
	}
	if err != nil {
		return build.ReasonImagePullFailed.Withf("%s: %v", image, err)
	}
	fmt.Fprintf(stderr, "[wharfjobs] pulled image %s in %s\n", image, time.Since(start).Round(time.Millisecond))
	return ""
}

// dockerConfig is the part of a docker config.json that holds registry
// credentials.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

// registryAuth is the X-Registry-Auth value for pulling image: the
// credentials of its registry in Config.ConfigFile, "" when there are
// none. Errors never hold the credentials.
func (r *Runner) registryAuth(image string) (string, error) {
	if r.Config.ConfigFile == "" {
		return "", nil
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("image reference: %w", err)
	}
	domain := reference.Domain(named)
	file := r.Config.ConfigFile
	// A directory is Docker's own DOCKER_CONFIG (which envconfig also
	// reads for an unset WHARFJOBS_DOCKER_CONFIG): its config.json.
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		file = filepath.Join(file, "config.json")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("WHARFJOBS_DOCKER_CONFIG: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("WHARFJOBS_DOCKER_CONFIG %s: not a docker config.json (%v)", file, errorKind(err))
	}
	for key, a := range cfg.Auths {
		if registryHost(key) != domain {
			continue
		}
		ac := registry.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, ServerAddress: key}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			user, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return "", fmt.Errorf("WHARFJOBS_DOCKER_CONFIG %s: the auth of %s is not base64 of user:password", file, key)
			}
			ac.Username, ac.Password = user, pass
		}
		j, err := json.Marshal(ac)
		if err != nil {
			return "", err
		}
		return base64.URLEncoding.EncodeToString(j), nil
	}
	return "", nil
}

// registryHost is the registry of a config.json auths key, which may be
// a URL ("https://index.docker.io/v1/") or a host[:port].
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	if key == "index.docker.io" || key == "registry-1.docker.io" {
		return "docker.io"
	}
	return key
}

// errorKind describes a JSON error without the text it quotes, which
// could be a password.
func errorKind(err error) string {
	switch err.(type) {
	case *json.SyntaxError:
		return "invalid JSON"
	case *json.UnmarshalTypeError:
		return "a field of the wrong type"
	}
	return "unreadable"
}
