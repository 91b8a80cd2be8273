// Command clusterctl starts and stops the test cluster by hand (make
// cluster-up, make cluster-down): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and a kubelet with containerd,
// with an admin kubeconfig for kubectl.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/wharfjobs/wharfjobs/internal/testcluster"
)

func main() {
	dir := filepath.Join(".cache", "cluster")
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: clusterctl up|down")
		os.Exit(2)
	}
	if os.Args[1] == "down" {
		if err := testcluster.StopDetached(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("cluster stopped")
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "pids")); err == nil {
		fmt.Fprintf(os.Stderr, "a cluster is already up in %s: make cluster-down first\n", dir)
		os.Exit(1)
	}
	c, err := testcluster.Start(testcluster.Options{Node: true, Dir: dir, Detach: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	abs, _ := filepath.Abs(c.Kubeconfig)
	fmt.Printf("cluster up (API server %s, node %s; logs in %s)\nexport KUBECONFIG=%s\n", c.Config.Host, testcluster.NodeName, dir, abs)
	fmt.Printf("import an image: ctr --address %s -n k8s.io images import IMAGE.tar\n", c.ContainerdSocket())
}
