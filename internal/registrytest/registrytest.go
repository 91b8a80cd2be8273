// Package registrytest runs the CNCF Distribution registry (`make
// registry`) for tests: basic auth from an htpasswd file (bcrypt), over
// HTTPS with a self-signed certificate or, on loopback, plain HTTP (which
// Docker allows for 127.0.0.0/8). Nothing can be pulled from outside here,
// so the step types' pushes and the docker runner's pulls go to one.
package registrytest

import (
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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// Registry is a running registry; the test's cleanup stops it.
type Registry struct {
	// Host is its address, IP:PORT.
	Host     string
	User     string
	Password string
	// Scheme is https or http.
	Scheme string
	// Client reaches it and trusts its certificate.
	Client *http.Client
	log    string
}

// Start starts a registry on ip (a free port) with its data, certificate
// and log under dir; with tlsOn it serves HTTPS with a self-signed
// certificate for ip, else plain HTTP. It returns once /v2/ asks for
// credentials.
func Start(t testing.TB, ctx context.Context, dir, ip string, tlsOn bool) *Registry {
	t.Helper()
	bin, err := testenv.CachedBinary("registry", "WHARFJOBS_REGISTRY_BIN", "registry")
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{Host: net.JoinHostPort(ip, strconv.Itoa(port)), User: "wharf", Password: testenv.RandomHex(12), Scheme: "http",
		Client: &http.Client{Timeout: 30 * time.Second}, log: filepath.Join(dir, "registry.log")}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	rdir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(filepath.Join(rdir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	tlsCfg := ""
	if tlsOn {
		certFile, keyFile := filepath.Join(rdir, "tls.crt"), filepath.Join(rdir, "tls.key")
		pool, err := selfSigned(certFile, keyFile, ip)
		if err != nil {
			t.Fatal(err)
		}
		r.Scheme = "https"
		r.Client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		tlsCfg = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
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
%sauth:
  htpasswd:
    realm: wharfjobs-test
    path: %s
`, filepath.Join(rdir, "data"), r.Host, testenv.RandomHex(16), tlsCfg, htpasswd)
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
		resp, err := r.Client.Get(r.Scheme + "://" + r.Host + "/v2/")
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
func (r *Registry) Tail() string {
	b, _ := os.ReadFile(r.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// DockerConfig is a docker config.json holding the registry's credentials
// (a kubernetes.io/dockerconfigjson Secret's .dockerconfigjson).
func (r *Registry) DockerConfig() []byte {
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{r.Host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password)),
	}}})
	return b
}

// selfSigned writes a self-signed certificate for ip and its key, and
// returns a pool that trusts it.
func selfSigned(certFile, keyFile, ip string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wharfjobs-test-registry"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.ParseIP(ip)},
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
