package sinks

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClaimStaging: an instance that starts removes what instances that
// are gone left behind (their lock free, or written straight into the
// base by earlier versions) and never a live instance's temporary files;
// release removes its own.
func TestClaimStaging(t *testing.T) {
	base := filepath.Join(t.TempDir(), "staging")
	live, err := claimStaging(base)
	if err != nil {
		t.Fatal(err)
	}
	liveFile := filepath.Join(live.dir, "part-1.parquet.tmp")
	if err := os.WriteFile(liveFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A crashed instance: its lock file exists but nobody holds it.
	dead, err := claimStaging(base)
	if err != nil {
		t.Fatal(err)
	}
	deadFile := filepath.Join(dead.dir, "part-2.parquet.tmp")
	if err := os.WriteFile(deadFile, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dead.lock.Close() // what kill -9 does to its flock
	legacy := filepath.Join(base, "part-3.parquet.tmp")
	orphan := filepath.Join(base, "run-orphan.d")
	if err := os.WriteFile(legacy, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(orphan, 0o755); err != nil {
		t.Fatal(err)
	}

	next, err := claimStaging(base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(liveFile); err != nil {
		t.Fatalf("a live instance's temporary file was removed: %v", err)
	}
	for _, gone := range []string{deadFile, dead.dir, dead.lock.Name(), legacy, orphan} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", gone, err)
		}
	}
	if next.dir == live.dir {
		t.Fatal("two live instances share a directory")
	}
	for _, r := range []*stagingRun{live, next} {
		if err := r.release(); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := os.ReadDir(base); len(left) != 0 {
		t.Fatalf("left in staging after release: %v", left)
	}
}
