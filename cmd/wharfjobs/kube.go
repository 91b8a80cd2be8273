package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wharfjobs/wharfjobs/blob"
	"github.com/wharfjobs/wharfjobs/job/worker"
	"github.com/wharfjobs/wharfjobs/job/worker/kuberun"
)

// kubeClient connects with the in-cluster ServiceAccount, or with
// $KUBECONFIG (default ~/.kube/config) outside a cluster.
func kubeClient() (kubernetes.Interface, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: not in a cluster and no usable kubeconfig: %w", err)
		}
	}
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}

func newKubeRunner(store blob.Store) (worker.StepRunner, error) {
	var cfg kuberun.Config
	if err := loadEnv(&cfg); err != nil {
		return nil, err
	}
	// The downward API sets these without the prefix.
	for env, field := range map[string]*string{"POD_NAMESPACE": &cfg.Namespace, "POD_NAME": &cfg.OwnerName, "POD_UID": &cfg.OwnerUID} {
		if *field == "" {
			*field = os.Getenv(env)
		}
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kube runner: no namespace: set POD_NAMESPACE (the downward API does it in a build Job)")
	}
	cs, err := kubeClient()
	if err != nil {
		return nil, err
	}
	return &kuberun.Runner{Client: cs, Config: cfg, Workspaces: kuberun.StoreWorkspaces{Store: store}}, nil
}
