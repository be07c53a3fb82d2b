//go:build tools

// Package tools pins the containerd commands the harness's real node runs, so `go mod tidy`
// keeps them. A module of its own: containerd's dependencies must not move the versions the
// Kubernetes wrapper module (../../go.mod) builds with.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
