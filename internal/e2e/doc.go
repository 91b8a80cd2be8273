// Package e2e holds the end-to-end test of a build on a real Kubernetes
// node: wharf-api's trigger reaches the provisioner over HTTP, the build
// runs as a Job whose worker pod clones the repository and runs its steps
// as pods, logs and status land in a real MinIO, and the aggregator relays
// them. The images the node runs are built from this module and from
// Debian's git and busybox-static (internal/image); nothing is pulled.
package e2e
