package hub

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// backgroundThread gives the calling goroutine a thread of its own whose
// nice value is nice (Options.SubscribeNice), if nice > 0. The goroutine
// must not unlock it: the thread ends with it, so that no other
// goroutine ever runs at that priority.
func backgroundThread(nice int) {
	if nice <= 0 {
		return
	}
	runtime.LockOSThread()
	// An error (a sandbox refusing setpriority) leaves the priority as it is.
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}
