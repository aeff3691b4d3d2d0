package objstore

// TestStore exposes the contract test to the external test package.
var TestStore = testStore

// SetSendHook sets the hook that runs after a sectionConn sent a file
// section's bytes with sendfile.
func SetSendHook(f func()) {
	if f == nil {
		sendHook.Store(nil)
		return
	}
	sendHook.Store(&f)
}
