// Package kube is a wrapper module that builds the Kubernetes binaries the
// tests run (kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet) from k8s.io/kubernetes at the minor version of wharfjobs'
// client-go. It is a module of its own so that its large dependency graph
// stays out of wharfjobs' go.mod; `make kube-bins` builds it into
// .cache/bin.
package kube
