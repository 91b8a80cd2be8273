package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharfjobs/wharfjobs/internal/enginetest"
	"github.com/wharfjobs/wharfjobs/internal/image"
	"github.com/wharfjobs/wharfjobs/internal/testcluster"
	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

const kanikoImage = "kaniko:e2e"

// registry is a CNCF Distribution registry (`make registry`) serving
// HTTPS on the bridge address with a self-signed certificate (clients skip
// verification, as wharf-cmd's kaniko --skip-tls-verify does), with
// htpasswd (bcrypt) basic auth.
type registry struct {
	Host     string // 10.89.0.1:PORT
	User     string
	Password string
	log      string
	client   *http.Client
}

func startRegistry(t *testing.T, ctx context.Context, dir string) *registry {
	t.Helper()
	bin := cachedTool(t, "registry", "WHARFJOBS_REGISTRY_BIN", "registry")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &registry{Host: net.JoinHostPort(testcluster.PodHostIP, strconv.Itoa(port)), User: "wharf", Password: testenv.RandomHex(12),
		log: filepath.Join(dir, "registry.log")}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	rdir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(filepath.Join(rdir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(rdir, "tls.crt"), filepath.Join(rdir, "tls.key")
	pool, err := selfSigned(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	r.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	htpasswd := filepath.Join(rdir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(r.User+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  secret: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: wharfjobs-e2e
    path: %s
`, filepath.Join(rdir, "data"), r.Host, testenv.RandomHex(16), certFile, keyFile, htpasswd)
	cfgFile := filepath.Join(rdir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Up when /v2/ asks for credentials.
	err = testenv.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		resp, err := r.client.Get("https://" + r.Host + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("/v2/ answered %s without credentials, want 401", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("registry at %s: %v; log:\n%s", r.Host, err, r.Tail())
	}
	return r
}

// Tail is the end of the registry's log.
func (r *registry) Tail() string {
	b, _ := os.ReadFile(r.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// DockerConfig is a docker config.json holding the registry's credentials
// (a kubernetes.io/dockerconfigjson Secret's .dockerconfigjson).
func (r *registry) DockerConfig() []byte {
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{r.Host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password)),
	}}})
	return b
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
	resp, err := r.client.Do(req)
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

// selfSigned writes a self-signed certificate for the bridge address and
// its key, and returns a pool that trusts it.
func selfSigned(certFile, keyFile string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wharfjobs-e2e-registry"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.ParseIP(testcluster.PodHostIP)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}
