// Package kube is a wrapper module that builds the Kubernetes control-plane
// binaries the tests run (kube-apiserver, kube-controller-manager) from
// k8s.io/kubernetes at the minor version of wharfjobs' client-go. It is a
// module of its own so that its large dependency graph stays out of
// wharfjobs' go.mod; hack/cluster.sh builds it into .cache/bin.
package kube
