//go:build !linux

package http

import "syscall"

// canTryWrite says that sockWriter writes.
const canTryWrite = false

type sockWriter struct{}

func newSockWriter(syscall.RawConn) *sockWriter { return &sockWriter{} }

// tryWrite writes nothing on this system: the subscriptions' own
// goroutines write their events.
func (*sockWriter) tryWrite([][]byte) (int, error) { return 0, nil }
