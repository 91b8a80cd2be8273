package testcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/wharfjobs/wharfjobs/internal/testenv"
)

// kedaCRDs are the custom resources KEDA's operator watches: it will not
// start its controllers without all of them.
var kedaCRDs = []string{
	"keda.sh_scaledobjects.yaml",
	"keda.sh_scaledjobs.yaml",
	"keda.sh_triggerauthentications.yaml",
	"keda.sh_clustertriggerauthentications.yaml",
	"eventing.keda.sh_cloudeventsources.yaml",
	"eventing.keda.sh_clustercloudeventsources.yaml",
}

// KEDANamespace is where KEDA's operator keeps its cluster-wide objects
// (KEDA_CLUSTER_OBJECT_NAMESPACE), as its own chart installs it.
const KEDANamespace = "keda"

// StartKEDA installs KEDA's CRDs (from KEDAModule) and starts KEDA's
// operator (`make keda`) against the cluster, so ScaledObjects scale
// their targets from and to zero. It returns once the operator's probe
// answers.
//
// The operator runs on this machine with the admin kubeconfig, as the
// control plane's own processes do, not as a pod: only KEDA's operator
// runs, not its metrics API server, so scaling between 0 and 1 works
// (the operator does it) and an HPA above 1 has no external metrics.
func (c *Cluster) StartKEDA(ctx context.Context) error {
	bin, err := testenv.CachedBinary("keda-operator", "WHARFJOBS_KEDA_BIN", "keda")
	if err != nil {
		return err
	}
	a, err := c.Applier()
	if err != nil {
		return err
	}
	for _, name := range kedaCRDs {
		crd, err := ModuleFile(KEDAModule, "config/crd/bases/"+name)
		if err != nil {
			return err
		}
		if err := a.ApplyFiles(ctx, crd); err != nil {
			return fmt.Errorf("install KEDA's CRD %s: %w", name, err)
		}
	}
	if err := waitFor(ctx, 30*time.Second, func() error {
		a.mapper.Reset()
		_, err := a.mapper.RESTMapping(schema.GroupKind{Group: "keda.sh", Kind: "ScaledObject"})
		return err
	}); err != nil {
		return fmt.Errorf("KEDA's ScaledObject CRD not served: %w", err)
	}

	// The operator's gRPC metrics service (for KEDA's metrics API server,
	// not run here) will not start without a CA and a key pair; the
	// API server's kind of certificate serves.
	certs := filepath.Join(c.dir, "keda-certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return err
	}
	if err := writeServingCert(filepath.Join(certs, "ca.crt"), filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key")); err != nil {
		return fmt.Errorf("KEDA's certificates: %w", err)
	}
	probe, err := testenv.FreePort()
	if err != nil {
		return err
	}
	env := []string{"WATCH_NAMESPACE=", "KEDA_CLUSTER_OBJECT_NAMESPACE=" + KEDANamespace, "POD_NAMESPACE=" + KEDANamespace, "KUBECONFIG=" + c.Kubeconfig}
	if err := c.startEnv("keda-operator", env, bin,
		"--kubeconfig", c.Kubeconfig,
		"--cert-dir", certs, "--ca-dir", certs,
		"--metrics-bind-address", "0",
		"--metrics-service-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(probe),
		"--enable-webhook-patching=false", "--enable-apiservice-patching=false"); err != nil {
		return err
	}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe), nil, "", 2*time.Minute); err != nil {
		return fmt.Errorf("KEDA's operator: %w; log: %s", err, c.tail("keda-operator"))
	}
	return c.checkRunning()
}
