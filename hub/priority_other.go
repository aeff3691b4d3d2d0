//go:build !linux

package hub

// backgroundThread does nothing where thread priorities are not set
// (Options.SubscribeNice is Linux only).
func (h *Hub) backgroundThread(nice int) (done func()) { return func() {} }
