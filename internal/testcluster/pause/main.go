// Command pause is the test node's pod sandbox process (containerd's
// sandbox_image): it holds the pod's namespaces and exits on SIGTERM or
// SIGINT. Built static and put in an image by the testcluster package,
// since the node cannot pull registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
