// Command kube-controller-manager is the upstream controller manager, built
// here for tests (job, garbage collector, TTL-after-finished controllers).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() { os.Exit(cli.Run(app.NewControllerManagerCommand())) }
