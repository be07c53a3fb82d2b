//go:build tools

// Package tools pins the helm command the end-to-end tests use, so `go mod tidy` keeps it.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
