//go:build tools

// Package tools pins what tools/install.sh builds from this module besides ./cmd/etcd and ./cmd/pause:
// k8s.io/kubernetes/cmd/kube-apiserver and k8s.io/kubernetes/cmd/kubectl (install.sh kube), and
// kubelet, kube-controller-manager, kube-scheduler and kube-proxy (install.sh node), at the
// k8s.io/kubernetes version required in go.mod.
//
// go.sum holds the checksums of what kube builds; node.sum holds the further ones the node's binaries
// need (install.sh node builds them with go.sum and node.sum together, -modfile), so adding the node did
// not change what the kube stamp covers. When the pins change, regenerate both: `go mod tidy` here gives
// the union; node.sum is the union minus what `go build` of the kube binaries alone keeps in go.sum.
package tools

import (
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
