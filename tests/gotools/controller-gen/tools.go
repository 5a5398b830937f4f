//go:build tools

// Package tools pins the Go tools the tests build (tests/gotools/build.sh).
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
