package zinctest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServer starts a server, indexes through the ES bulk API and finds
// the documents again with the helpers.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	var info struct {
		Version struct{ Number string } `json:"version"`
	}
	if _, err := s.Do(ctx, http.MethodGet, "/", nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.Version.Number != ESVersion {
		t.Errorf("info version = %q, want %q", info.Version.Number, ESVersion)
	}
	var body strings.Builder
	var ids []string
	for i := range 50 {
		id := fmt.Sprintf("doc-%d", i)
		ids = append(ids, id)
		fmt.Fprintf(&body, `{"index":{"_index":"zt-%d","_id":%q}}`+"\n"+`{"n":%d,"msg":"hello"}`+"\n", i%2, id, i)
	}
	var res struct {
		Errors bool             `json:"errors"`
		Items  []map[string]any `json:"items"`
	}
	if _, err := s.Do(ctx, http.MethodPost, "/_bulk", body.String(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Errors || len(res.Items) != len(ids) {
		t.Fatalf("bulk: errors %v, %d items, want no errors and %d", res.Errors, len(res.Items), len(ids))
	}
	if got := s.WaitForIDs(t, "zt-*", ids, 20*time.Second); got != len(ids) {
		t.Fatalf("WaitForIDs = %d, want %d", got, len(ids))
	}
	if got, err := s.CountIDs(ctx, "zt-*", []string{"doc-1", "doc-2", "missing"}); err != nil || got != 2 {
		t.Errorf("CountIDs(doc-1, doc-2, missing) = %d, %v; want 2", got, err)
	}
	if got, err := s.Count(ctx, "zt-1", nil); err != nil || got != 25 {
		t.Errorf("Count(zt-1) = %d, %v; want 25", got, err)
	}
	for _, tt := range []struct {
		index string
		want  bool
	}{{"zt-0", true}, {"zt-1", true}, {"zt-2", false}} {
		if got, err := s.IndexExists(ctx, tt.index); err != nil || got != tt.want {
			t.Errorf("IndexExists(%s) = %v, %v; want %v", tt.index, got, err, tt.want)
		}
	}
}

// TestPatchNamesWhatIsMissing checks that patching a tree that is not
// the expected release fails with a message naming the file.
func TestPatchNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "cmd", "zincsearch", "main.go")
	if err := os.MkdirAll(filepath.Dir(main), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := patch(dir)
	if err == nil || !strings.Contains(err.Error(), "main.go") || !strings.Contains(err.Error(), "pyroscope") {
		t.Fatalf("patch(unexpected tree) = %v, want an error naming main.go and pyroscope", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "web", "dist", "index.html")); err != nil {
		t.Errorf("no web/dist stub: %v", err)
	}
}
