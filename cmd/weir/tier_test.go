package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestServeColdStoreConfig: cold_store in weir.yaml (and WEIR_COLD_STORE)
// becomes the hub's cold store; a bad URL is an error naming the key.
func TestServeColdStoreConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte("data_dir: "+dir+"/data\ncold_store: file://"+dir+"/cold\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	if err := loadServeConfig(path, &cfg); err != nil {
		t.Fatal(err)
	}
	o, err := cfg.hubOptions(nil)
	if err != nil || o.ColdStore == nil {
		t.Fatalf("hubOptions: %v, cold store %v", err, o.ColdStore)
	}
	t.Setenv("WEIR_COLD_STORE", "gopher://x")
	applyEnv(&cfg)
	if _, err := cfg.hubOptions(nil); err == nil {
		t.Fatal("a bad cold_store was accepted")
	}
}
