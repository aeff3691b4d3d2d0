//go:build !linux

package log

import "os"

func preallocate(*os.File, int64) {}

func releasePrealloc(*os.File, int64, int64) {}
