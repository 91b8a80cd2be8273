package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/registrytest"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
)

const kanikoImage = "kaniko:e2e"

// registry is a CNCF Distribution registry (registrytest) serving HTTPS
// on the bridge address with a self-signed certificate (clients skip
// verification, as wharf-cmd's kaniko --skip-tls-verify does), with
// htpasswd (bcrypt) basic auth.
type registry struct{ *registrytest.Registry }

func startRegistry(t *testing.T, ctx context.Context, dir string) *registry {
	t.Helper()
	return &registry{registrytest.Start(t, ctx, dir, testcluster.PodHostIP, true)}
}

// manifestTypes are the manifest media types the registry may hold.
var manifestTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// get is an authenticated GET of the registry's API; it returns the body,
// the Docker-Content-Digest header and the status code.
func (r *registry) get(ctx context.Context, path string, accept []string, auth bool) ([]byte, string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+path, nil)
	if err != nil {
		return nil, "", 0, err
	}
	if auth {
		req.SetBasicAuth(r.User, r.Password)
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return b, resp.Header.Get("Docker-Content-Digest"), resp.StatusCode, err
}

// manifest is the part of an image or artifact manifest the test reads.
type manifest struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

// Manifest reads repo:tag's manifest, with its digest.
func (r *registry) Manifest(ctx context.Context, repo, tag string) (manifest, string, error) {
	b, digest, code, err := r.get(ctx, "/v2/"+repo+"/manifests/"+tag, manifestTypes, true)
	if err != nil {
		return manifest{}, "", err
	}
	if code != http.StatusOK {
		return manifest{}, "", fmt.Errorf("GET /v2/%s/manifests/%s: %d %s", repo, tag, code, b)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return manifest{}, "", fmt.Errorf("manifest of %s:%s: %w: %s", repo, tag, err, b)
	}
	return m, digest, nil
}

// LayerFiles reads a gzipped (or plain) tar layer blob of repo and returns
// its regular files' contents by path.
func (r *registry) LayerFiles(ctx context.Context, repo, digest string) (map[string]string, error) {
	b, _, code, err := r.get(ctx, "/v2/"+repo+"/blobs/"+digest, nil, true)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET blob %s of %s: %d", digest, repo, code)
	}
	var rd io.Reader = strings.NewReader(string(b))
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		rd = zr
	}
	files := map[string]string{}
	tr := tar.NewReader(rd)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", digest, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = string(data)
		}
	}
}

// kanikoImageOf is kaniko's executor laid out as its -debug image is
// (enginetest.KanikoImage).
func kanikoImageOf(t *testing.T) image.Image {
	t.Helper()
	img, err := enginetest.KanikoImage(kanikoImage, cachedTool(t, "kaniko-executor", "WHARFJOBS_KANIKO_BIN", "kaniko"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}
