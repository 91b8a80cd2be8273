package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// ReadManifests reads the objects of a multi-document YAML (or JSON) file.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// Applier creates manifests' objects of any kind, as kubectl apply does
// for new objects, with strict field validation.
type Applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// Applier returns an Applier for the cluster.
func (c *Cluster) Applier() (*Applier, error) { return c.ApplierWithWarnings(nil) }

// ApplierWithWarnings is an Applier whose requests' warnings (Pod
// Security's among them) go to h; nil leaves client-go's default.
func (c *Cluster) ApplierWithWarnings(h rest.WarningHandler) (*Applier, error) {
	cfg := rest.CopyConfig(c.Config)
	if h != nil {
		cfg.WarningHandler = h
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))}, nil
}

// Reset forgets the cached API resources (after installing CRDs).
func (a *Applier) Reset() { a.mapper.Reset() }

// Create creates obj (an existing one is left alone), or only validates it
// with a server-side dry run.
func (a *Applier) Create(ctx context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	if err := a.CreateNew(ctx, obj, dryRun); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// CreateNew is Create for an object that must not exist yet: an existing
// one is an error (apierrors.IsAlreadyExists).
func (a *Applier) CreateNew(ctx context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	gvk := obj.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	}
	if _, err := ri.Create(ctx, obj, opts); err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}

// Pinned versions whose CRDs validate Knative Services and KEDA
// ScaledObjects (the Go module proxy's copies of the projects include
// their config directories).
const (
	KnativeModule = "knative.dev/serving@v0.51.0"
	KEDAModule    = "github.com/kedacore/keda/v2@v2.21.0"
)

// InstallKnativeAndKEDA installs the CRDs of Knative Serving's Service and
// KEDA's ScaledObject from their modules and returns once the API server
// serves both, so that objects of those kinds can be created.
func (a *Applier) InstallKnativeAndKEDA(ctx context.Context) error {
	if err := a.installCRDs(ctx, KnativeModule, schema.GroupKind{Group: "serving.knative.dev", Kind: "Service"}, "config/core/300-resources/service.yaml"); err != nil {
		return err
	}
	return a.installCRDs(ctx, KEDAModule, kedaScaledObject, kedaCRDs[0])
}

// installCRDs applies the CRD files at paths in module (module@version)
// and returns once the API server serves kind.
func (a *Applier) installCRDs(ctx context.Context, module string, kind schema.GroupKind, paths ...string) error {
	for _, p := range paths {
		crd, err := ModuleFile(module, p)
		if err != nil {
			return err
		}
		if err := a.ApplyFiles(ctx, crd); err != nil {
			return fmt.Errorf("install CRD %s of %s: %w", p, module, err)
		}
	}
	// A new CRD takes a moment to be served.
	if err := waitFor(ctx, 30*time.Second, func() error {
		a.mapper.Reset()
		_, err := a.mapper.RESTMapping(kind)
		return err
	}); err != nil {
		return fmt.Errorf("CRD of %s not served: %w", kind, err)
	}
	return nil
}

// ModuleFile returns the path of a file of a Go module (module@version),
// downloading the module through the module proxy when it is not in the
// module cache yet.
func ModuleFile(module, path string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("go mod download %s: %v\n%s%s", module, err, out, exit.Stderr)
		}
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s %v", module, info.Error, err)
	}
	return filepath.Join(info.Dir, path), nil
}

// ApplyFiles creates every object of the files, in order.
func (a *Applier) ApplyFiles(ctx context.Context, files ...string) error {
	for _, f := range files {
		objs, err := ReadManifests(f)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if err := a.Create(ctx, obj, false); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	return nil
}
