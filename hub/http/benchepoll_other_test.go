//go:build !linux

package http

import (
	"errors"
	"sync"
	"time"
)

// runEpollSubscribers needs Linux's epoll: elsewhere
// -broadcast.client-io=goroutines.
func runEpollSubscribers(kind, rawURL string, clientPoll time.Duration, subs, sample, total int, ev *benchEvents, wg *sync.WaitGroup, errs chan<- error) error {
	return errors.New("-broadcast.client-io=epoll needs Linux: use -broadcast.client-io=goroutines")
}
