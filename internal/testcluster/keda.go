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

// kedaCRDs are the custom resources KEDA's operator watches, in
// KEDAModule: it will not start its controllers without all of them.
// ScaledObject's comes first: InstallKnativeAndKEDA needs only that one.
var kedaCRDs = []string{
	"config/crd/bases/keda.sh_scaledobjects.yaml",
	"config/crd/bases/keda.sh_scaledjobs.yaml",
	"config/crd/bases/keda.sh_triggerauthentications.yaml",
	"config/crd/bases/keda.sh_clustertriggerauthentications.yaml",
	"config/crd/bases/eventing.keda.sh_cloudeventsources.yaml",
	"config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml",
}

var kedaScaledObject = schema.GroupKind{Group: "keda.sh", Kind: "ScaledObject"}

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
	if err := a.installCRDs(ctx, KEDAModule, kedaScaledObject, kedaCRDs...); err != nil {
		return fmt.Errorf("KEDA's CRDs: %w", err)
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
