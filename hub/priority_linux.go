package hub

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// maxBackgroundThreads bounds the threads of a hub that backgroundThread
// gives to readers and writers of subscriptions (a few per subscribed
// dataset): past it, they run on the hub's threads, at its priority.
const maxBackgroundThreads = 64

// backgroundThread gives the calling goroutine a thread of its own whose
// nice value is the thread's by nice more (at most 19), when nice > 0
// and the hub has fewer than maxBackgroundThreads such threads; it
// returns the function that the goroutine calls when it ends (it must
// not unlock the thread: the thread ends with the goroutine, so that no
// other goroutine runs at that priority, which it may not be allowed to
// raise back).
func (h *Hub) backgroundThread(nice int) (done func()) {
	if nice <= 0 {
		return func() {}
	}
	if h.bgThreads.Add(1) > maxBackgroundThreads {
		h.bgThreads.Add(-1)
		return func() {}
	}
	// The thread ends with the goroutine; were it the main thread, the
	// runtime keeps it, idle for good, which the priority does not
	// matter to.
	runtime.LockOSThread()
	tid := unix.Gettid()
	// The raw getpriority(2) answers 20 - nice.
	if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil {
		// An error (a sandbox refusing setpriority) leaves the priority
		// as it is.
		unix.Setpriority(unix.PRIO_PROCESS, tid, min(19, 20-prio+nice))
	}
	return func() { h.bgThreads.Add(-1) }
}
