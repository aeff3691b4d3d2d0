package sinks

import (
	"sync"
	"time"
)

// runAgeTimer calls rotate, with mu held, every tenth of age (between
// 10ms and 1s) until stop closes, so that files rotate by age even when no
// records arrive; closed (read with mu held) skips a tick after Close. It
// closes done when it returns, and at once when age is not positive (no
// rotation by age). The file and parquet sinks share it.
func runAgeTimer(age time.Duration, mu *sync.Mutex, closed *bool, rotate func(), stop <-chan struct{}, done chan<- struct{}) {
	if age <= 0 {
		close(done)
		return
	}
	every := min(max(age/10, 10*time.Millisecond), time.Second)
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				if !*closed {
					rotate()
				}
				mu.Unlock()
			}
		}
	}()
}
