package ducktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Package is the npm package and version installed.
const Package = "@duckdb/node-api@1.5.6-r.1"

const script = `import { DuckDBInstance } from '@duckdb/node-api';
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(process.argv[2]);
process.stdout.write(JSON.stringify({columns: reader.columnNames(), types: reader.columnTypes().map(String), rows: reader.getRowObjectsJson()}));
`

// Dir is where the package is installed.
func Dir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("ducktest: %w", err)
	}
	return filepath.Join(cache, "weir-test", "duckdb"), nil
}

// Install installs the package if it is missing and returns its
// directory.
func Install(ctx context.Context) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("ducktest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("ducktest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("ducktest: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if err := os.WriteFile(filepath.Join(dir, "query.mjs"), []byte(script), 0o644); err != nil {
		return "", fmt.Errorf("ducktest: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api", "package.json")); err == nil {
		return dir, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", errors.New("ducktest: npm is not installed; run scripts/test-deps.sh (it installs nodejs and npm)")
	}
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"weir-duckdb","private":true}`+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("ducktest: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent", Package)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ducktest: npm install %s in %s: %w: %s", Package, dir, err, out.Bytes())
	}
	return dir, nil
}

// Result is what a query returned.
type Result struct {
	Columns []string         `json:"columns"`
	Types   []string         `json:"types"`
	Rows    []map[string]any `json:"rows"`
}

// Run runs one SQL statement and returns its result.
func Run(ctx context.Context, sql string) (*Result, error) {
	dir, err := Install(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "query.mjs"), sql)
	cmd.Dir = dir
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ducktest: %s: %w: %s", sql, err, stderr.Bytes())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("ducktest: %s: %w", sql, err)
	}
	return &r, nil
}

// Query runs sql and fails the test on an error.
func Query(t testing.TB, sql string) *Result {
	t.Helper()
	r, err := Run(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Scalar runs sql, which returns one row of one column, and returns its
// value as text.
func Scalar(t testing.TB, sql string) string {
	t.Helper()
	r := Query(t, sql)
	if len(r.Rows) != 1 || len(r.Columns) != 1 {
		t.Fatalf("ducktest: %s: got %d rows of %d columns, want one value", sql, len(r.Rows), len(r.Columns))
	}
	return fmt.Sprint(r.Rows[0][r.Columns[0]])
}
