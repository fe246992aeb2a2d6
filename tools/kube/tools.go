//go:build tools

// Package tools pins what tools/install.sh builds from this module besides ./cmd/etcd:
// k8s.io/kubernetes/cmd/kube-apiserver and k8s.io/kubernetes/cmd/kubectl, at the k8s.io/kubernetes
// version required in go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
