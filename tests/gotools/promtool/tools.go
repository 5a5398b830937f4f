//go:build tools

// Package tools pins promtool (tests/gotools/build.sh promtool).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
