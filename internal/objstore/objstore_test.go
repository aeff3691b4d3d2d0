package objstore

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// testStore is the contract every Store implementation passes.
func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	get := func(key string, off, n int64) string {
		t.Helper()
		r, err := s.Get(ctx, key, off, n)
		if err != nil {
			t.Fatalf("Get(%s, %d, %d) = %v", key, off, n, err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := s.Get(ctx, "a/missing", 0, -1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing key = %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, "a/b/one", strings.NewReader("hello, world")); err != nil {
		t.Fatal(err)
	}
	if got := get("a/b/one", 0, -1); got != "hello, world" {
		t.Errorf("Get = %q", got)
	}
	if got := get("a/b/one", 7, 5); got != "world" {
		t.Errorf("ranged Get = %q, want world", got)
	}
	if err := s.Put(ctx, "a/b/one", strings.NewReader("replaced")); err != nil {
		t.Fatal(err)
	}
	if got := get("a/b/one", 0, -1); got != "replaced" {
		t.Errorf("Get after a second Put = %q", got)
	}
	if err := s.PutIfAbsent(ctx, "a/b/one", strings.NewReader("no")); !errors.Is(err, ErrExists) {
		t.Errorf("PutIfAbsent on an existing key = %v, want ErrExists", err)
	}
	// Of many concurrent PutIfAbsent calls, exactly one wins.
	if wins := race(t, 8, ErrExists, func(i int) error {
		return s.PutIfAbsent(ctx, "a/race", strings.NewReader(strings.Repeat("x", i+1)))
	}); wins != 1 {
		t.Errorf("%d concurrent PutIfAbsent calls won, want 1", wins)
	}
	// PutIfMatch replaces only the version it names; of concurrent
	// writers at one version, exactly one wins.
	if _, _, err := s.GetVersion(ctx, "a/nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetVersion of a missing key = %v, want ErrNotFound", err)
	}
	if _, err := s.PutIfMatch(ctx, "a/nothing", strings.NewReader("x"), "v"); !errors.Is(err, ErrPrecondition) {
		t.Errorf("PutIfMatch of a missing key = %v, want ErrPrecondition", err)
	}
	b, v1, err := s.GetVersion(ctx, "a/b/one")
	if err != nil || string(b) != "replaced" || v1 == "" {
		t.Fatalf("GetVersion = %q, %q, %v", b, v1, err)
	}
	v2, err := s.PutIfMatch(ctx, "a/b/one", strings.NewReader("second"), v1)
	if err != nil || v2 == "" || v2 == v1 {
		t.Fatalf("PutIfMatch at the current version = %q, %v (was %q)", v2, err, v1)
	}
	if b, v, err := s.GetVersion(ctx, "a/b/one"); err != nil || string(b) != "second" || v != v2 {
		t.Errorf("GetVersion after PutIfMatch = %q, %q, %v; want second, %q", b, v, err, v2)
	}
	if _, err := s.PutIfMatch(ctx, "a/b/one", strings.NewReader("stale"), v1); !errors.Is(err, ErrPrecondition) {
		t.Errorf("PutIfMatch at a stale version = %v, want ErrPrecondition", err)
	}
	if wins := race(t, 6, ErrPrecondition, func(i int) error {
		_, err := s.PutIfMatch(ctx, "a/b/one", strings.NewReader(strings.Repeat("y", i+1)), v2)
		return err
	}); wins != 1 {
		t.Errorf("%d concurrent PutIfMatch calls at one version won, want 1", wins)
	}
	s.Put(ctx, "a/b/one", strings.NewReader("replaced"))
	s.Put(ctx, "a/b/two", strings.NewReader("2"))
	s.Put(ctx, "a/c", strings.NewReader("3"))
	objs, err := s.List(ctx, "a/b/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	if want := []string{"a/b/one", "a/b/two"}; !slices.Equal(keys, want) {
		t.Errorf("List(a/b/) = %v, want %v", keys, want)
	}
	if objs[0].Size != int64(len("replaced")) {
		t.Errorf("size of a/b/one = %d", objs[0].Size)
	}
	objs, _ = s.List(ctx, "a/b/t")
	if len(objs) != 1 || objs[0].Key != "a/b/two" {
		t.Errorf("List(a/b/t) = %v", objs)
	}
	if err := s.Delete(ctx, "a/b/two"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a/b/two"); err != nil {
		t.Errorf("Delete of a missing key = %v", err)
	}
	for _, bad := range []string{"", "/abs", "a/../b", "a//b", "./a"} {
		if err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", bad)
		}
	}
}

// race runs put(0..n-1) at once and returns how many succeeded; a
// failure other than lost fails the test.
func race(t *testing.T, n int, lost error, put func(i int) error) int {
	var wg sync.WaitGroup
	var wins atomic.Int32
	for i := range n {
		wg.Go(func() {
			if err := put(i); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, lost) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	return int(wins.Load())
}

func TestDir(t *testing.T) {
	root := t.TempDir()
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, d)
	// No temporary file is left, and List leaves them out.
	os.WriteFile(filepath.Join(root, "a", ".tmp-123"), []byte("partial"), 0o644)
	objs, _ := d.List(context.Background(), "a/")
	for _, o := range objs {
		if strings.Contains(o.Key, ".tmp-") {
			t.Errorf("List shows the temporary file %s", o.Key)
		}
	}
}

func TestDirPutFile(t *testing.T) {
	root := t.TempDir()
	d, _ := NewDir(root)
	src := filepath.Join(root, "staged")
	os.WriteFile(src, []byte("data"), 0o644)
	if err := PutFile(context.Background(), d, "x/y/file", src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("the source is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "x", "y", "file")); string(b) != "data" {
		t.Errorf("file = %q", b)
	}
}
