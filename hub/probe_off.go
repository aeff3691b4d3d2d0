//go:build !bcastprobe

package hub

// The probe of BenchmarkBroadcast's breakdown (probe_on.go): nothing
// without the build tag bcastprobe.

func probeNow() int64                              { return 0 }
func probePub(int64)                               {}
func probeWrite(int, int64, int)                   {}
func probePass(int, int64, int64, int64, int, int) {}
