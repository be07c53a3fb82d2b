//go:build tools

// Package tools pins the Kubernetes node commands the harness's real node runs, so `go mod tidy`
// keeps them. A module of its own (the same pins as ../go.mod, plus what kube-proxy needs), so
// that the control plane's build cache key, and with it the default harness, stays as it is.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
