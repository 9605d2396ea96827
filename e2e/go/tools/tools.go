//go:build tools

// Package tools pins the helm and CoreDNS commands this module builds.
package tools

import (
	_ "github.com/coredns/coredns"
	_ "helm.sh/helm/v3/cmd/helm"
)
