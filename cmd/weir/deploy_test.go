package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDeployFiles checks deploy/: the systemd unit passes `systemd-analyze
// verify`, its hardening scores an exposure of at most 2.0 in
// `systemd-analyze security` (0 is best, 10 worst), and the YAML it points
// at is a valid `weir serve` configuration.
func TestDeployFiles(t *testing.T) {
	var cfg serveConfig
	if err := loadServeConfig("../../deploy/weir.yaml", &cfg); err != nil {
		t.Fatalf("deploy/weir.yaml: %v", err)
	}
	if _, err := cfg.hubOptions(nil); err != nil || cfg.HTTP.Listen == "" || cfg.LogFormat != "json" {
		t.Fatalf("deploy/weir.yaml: %+v, %v", cfg, err)
	}
	unit, err := os.ReadFile("../../deploy/weir.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/weir serve --config /etc/weir/weir.yaml") {
		t.Fatalf("the unit does not start weir serve with /etc/weir/weir.yaml")
	}
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing: scripts/test-deps.sh installs the Debian package systemd")
		}
		t.Skip("needs systemd-analyze (Debian package systemd, make test-deps)")
	}
	// verify wants the binary to exist: point ExecStart at this test binary.
	exe, _ := os.Executable()
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/weir", exe)), 0o644)
	if out, err := exec.Command(bin, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "security", "--offline=yes", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for weir.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Fatalf("the unit's exposure level is %.1f, want at most 2.0:\n%s", level, out)
	}
}
