//go:build !bcastprobe

package http

import (
	"runtime/metrics"
	"testing"
)

func probeStart()                       {}
func probeCreated(int64)                {}
func probeAcked()                       {}
func probeReport(*testing.B, int)       {}
func probeChildStart() []metrics.Sample { return nil }
func probeChildEnd([]metrics.Sample)    {}
