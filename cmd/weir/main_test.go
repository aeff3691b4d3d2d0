package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in process and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestLogToolsOnARealLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	out, err := run(t, "bench", "log", "--dir", dir, "--size", "3MiB", "--segment", "1MiB", "--keep", "--compression", "lz4")
	if err != nil {
		t.Fatalf("bench log: %v\n%s", err, out)
	}
	if !strings.Contains(out, "every record read back and checked") {
		t.Fatalf("bench log output:\n%s", out)
	}
	out, err = run(t, "log", "inspect", filepath.Dir(dir))
	if err != nil {
		t.Fatalf("log inspect: %v", err)
	}
	if !strings.Contains(out, "00000000000000000000.log") || !strings.Contains(out, "active") || !strings.Contains(out, "closed") {
		t.Fatalf("log inspect output:\n%s", out)
	}
	out, err = run(t, "log", "verify", dir)
	if err != nil || !strings.Contains(out, "ok ") {
		t.Fatalf("log verify of a good log: %v\n%s", err, out)
	}

	seg := filepath.Join(dir, "00000000000000000000.log")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[5000] ^= 0x80
	os.WriteFile(seg, b, 0o644)
	out, err = run(t, "log", "verify", dir)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("log verify of a damaged log: %v, want exit code 1", err)
	}
	if !strings.Contains(out, "CORRUPT") || !strings.Contains(out, seg) || !strings.Contains(out, "position:") {
		t.Fatalf("log verify output does not name the damage:\n%s", out)
	}
}

func TestLogToolsExplainABadDirectory(t *testing.T) {
	_, err := run(t, "log", "inspect", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no log segments") {
		t.Fatalf("inspect of an empty directory: %v", err)
	}
	_, err = run(t, "bench", "log", "--size", "lots")
	if err == nil || !strings.Contains(err.Error(), "--size") {
		t.Fatalf("bad --size: %v", err)
	}
}
