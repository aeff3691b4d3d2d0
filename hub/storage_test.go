package hub

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	wlog "github.com/weirhub/weir/log"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// diskFull is a file system that runs out of space for the files of one
// dataset after a number of opens, or for every write once full is set.
type diskFull struct {
	dataset   string
	opensLeft atomic.Int64
	full      atomic.Bool
}

func (d *diskFull) fs() wlog.FS {
	return &wlog.FaultFS{FS: wlog.OSFS(), Fail: func(op, path string) error {
		if !strings.Contains(path, string(filepath.Separator)+d.dataset+string(filepath.Separator)) {
			return nil
		}
		if op == "open" && d.opensLeft.Add(-1) < 0 || op == "write" && d.full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}}
}

// TestStorageErrors: a disk that fills up while a dataset of 100
// partitions is created fails the create with ErrStorage wrapping ENOSPC,
// logged with its cause, and leaves nothing of the dataset behind; a
// produce to a full disk fails the same way.
func TestStorageErrors(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	disk := &diskFull{dataset: "full"}
	disk.opensLeft.Store(40)
	opts := testOptions(dir)
	opts.FS = disk.fs()
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h := openHub(t, opts)
	defer h.Close()

	_, err := h.CreateDataset("full", DatasetConfig{Partitions: 100})
	if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("CreateDataset on a full disk = %v, want ErrStorage wrapping ENOSPC", err)
	}
	if _, derr := h.Dataset("full"); !errors.Is(derr, ErrUnknownDataset) {
		t.Fatalf("after a failed create, Dataset = %v, want ErrUnknownDataset", derr)
	}
	if _, serr := os.Stat(filepath.Join(dir, "datasets", "full")); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("the half-created dataset is still on disk: %v", serr)
	}
	if got := logs.String(); !strings.Contains(got, "creating a dataset failed") || !strings.Contains(got, "no space left on device") {
		t.Fatalf("the failure is not logged with its cause:\n%s", got)
	}

	// Room again: the same name can be created; then the disk fills.
	disk.opensLeft.Store(1 << 30)
	ds, err := h.CreateDataset("full", DatasetConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(1)
	if _, err := p.Produce(batch(t, "fits"), true); err != nil {
		t.Fatal(err)
	}
	disk.full.Store(true)
	if _, err := p.Produce(batch(t, "does not fit"), true); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Produce on a full disk = %v, want ErrStorage wrapping ENOSPC", err)
	}
	disk.full.Store(false)
	if res, err := p.Produce(batch(t, "fits again"), true); err != nil || res.BaseOffset != 1 {
		t.Fatalf("Produce once there is room = %+v, %v", res, err)
	}
}

// TestAddPartitionsStorageError: a disk that fills up while partitions are
// added fails with ErrStorage and leaves the dataset as it was.
func TestAddPartitionsStorageError(t *testing.T) {
	dir := t.TempDir()
	disk := &diskFull{dataset: "grow"}
	disk.opensLeft.Store(1 << 30)
	opts := testOptions(dir)
	opts.FS = disk.fs()
	h := openHub(t, opts)
	defer h.Close()
	ds, err := h.CreateDataset("grow", DatasetConfig{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	disk.opensLeft.Store(3)
	if err := h.AddPartitions("grow", 10); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("AddPartitions on a full disk = %v, want ErrStorage wrapping ENOSPC", err)
	}
	if n := ds.NumPartitions(); n != 2 {
		t.Fatalf("%d partitions after a failed AddPartitions, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "datasets", "grow", "2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a partition of the failed AddPartitions is left on disk: %v", err)
	}
	disk.opensLeft.Store(1 << 30)
	if err := h.AddPartitions("grow", 10); err != nil {
		t.Fatal(err)
	}
	if n := ds.NumPartitions(); n != 10 {
		t.Fatalf("%d partitions, want 10", n)
	}
}
