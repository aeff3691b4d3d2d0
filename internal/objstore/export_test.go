package objstore

// TestStore exposes the contract test to the external test package.
var TestStore = testStore
