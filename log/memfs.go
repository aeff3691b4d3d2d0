package log

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemFS is an FS held in memory that remembers what was made durable, so
// that a test can simulate a power cut: CrashClone returns the file system
// as a machine would find it after a crash, with only the data that was
// synced (File.Sync) in files whose names were made durable (SyncDir), and
// can then open a log on the clone and check what survived. A process
// killed with SIGKILL keeps the page cache, which a kill -9 test therefore
// cannot tell from the disk; MemFS can.
//
// The model: a file's data is durable up to its last Sync; a directory's
// entries (files created, renamed or removed in it) as of its last
// SyncDir, except that a directory itself, once created, is durable. It is
// safe for concurrent use. The zero value is not usable: use NewMemFS.
type MemFS struct {
	mu    sync.Mutex
	dirs  map[string]*memDir
	locks map[string]bool
}

type memDir struct {
	entries map[string]*memNode // now
	synced  map[string]*memNode // as of the last SyncDir
}

type memNode struct {
	mu     sync.RWMutex
	data   []byte // now
	synced []byte // as of the last Sync
	mtime  time.Time
}

// NewMemFS returns an empty MemFS.
func NewMemFS() *MemFS {
	m := &MemFS{dirs: map[string]*memDir{}, locks: map[string]bool{}}
	m.dirs["/"] = newMemDir()
	return m
}

func newMemDir() *memDir {
	return &memDir{entries: map[string]*memNode{}, synced: map[string]*memNode{}}
}

// CrashClone returns what a power cut would leave of m now: files with
// their synced data under the durable names. m itself is unchanged.
func (m *MemFS) CrashClone() *MemFS { return m.crashClone(nil) }

// CrashCloneTorn is CrashClone, except that each file keeps part of what
// was written since its last sync, as a torn write does: a random part of
// what was appended, and each 4 KiB page written over, old or new at
// random.
func (m *MemFS) CrashCloneTorn(rng *rand.Rand) *MemFS { return m.crashClone(rng) }

func (m *MemFS) crashClone(rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemFS{dirs: map[string]*memDir{}, locks: map[string]bool{}}
	nodes := map[*memNode]*memNode{}
	for path, d := range m.dirs {
		cd := newMemDir()
		for name, n := range d.synced {
			cn, ok := nodes[n]
			if !ok {
				n.mu.RLock()
				data := slices.Clone(n.synced)
				if rng != nil {
					data = tornData(rng, n.synced, n.data)
				}
				mtime := n.mtime
				n.mu.RUnlock()
				cn = &memNode{data: data, synced: slices.Clone(data), mtime: mtime}
				nodes[n] = cn
			}
			cd.entries[name], cd.synced[name] = cn, cn
		}
		c.dirs[path] = cd
	}
	return c
}

// tornData is what a torn write leaves of a file whose synced data is
// synced and whose data is now data: the size grows by a random part of
// what was appended, and each 4 KiB page that the writes since the sync
// changed holds, at random, its old bytes or its new ones (the old bytes
// of a page past the synced size being zeros): pages reach the disk in any
// order, so overwrites of zeros written ahead can land torn, or after a
// page before them that never did.
func tornData(rng *rand.Rand, synced, data []byte) []byte {
	size := len(synced)
	if len(data) > len(synced) {
		size += rng.IntN(len(data) - len(synced) + 1)
	}
	out := make([]byte, size)
	copy(out, synced)
	const page = 4096
	for at := 0; at < size; at += page {
		end := min(at+page, size)
		if at >= len(data) {
			break
		}
		newer := data[at:min(end, len(data))]
		if !bytes.Equal(newer, out[at:at+len(newer)]) && rng.IntN(2) == 0 {
			copy(out[at:], newer)
		}
	}
	return out
}

func cleanPath(name string) string { return filepath.Clean("/" + name) }

// dirOf returns the directory holding name and the name within it. Called
// with m.mu held.
func (m *MemFS) dirOf(name string) (*memDir, string, error) {
	p := cleanPath(name)
	d := m.dirs[filepath.Dir(p)]
	if d == nil {
		return nil, "", &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return d, filepath.Base(p), nil
}

// OpenFile opens a file; flags O_CREATE, O_TRUNC, O_RDONLY, O_WRONLY and
// O_RDWR are honoured.
func (m *MemFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.dirOf(name)
	if err != nil {
		return nil, err
	}
	if m.dirs[cleanPath(name)] != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("is a directory")}
	}
	n := d.entries[base]
	if n == nil {
		if flag&os.O_CREATE == 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = &memNode{mtime: time.Now()}
		d.entries[base] = n
	} else if flag&os.O_TRUNC != 0 {
		n.mu.Lock()
		n.data = nil
		n.mu.Unlock()
	}
	return &memFile{name: name, n: n, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

// MkdirAll creates dir and its parents.
func (m *MemFS) MkdirAll(dir string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := cleanPath(dir)
	for q := p; ; q = filepath.Dir(q) {
		if m.dirs[q] == nil {
			m.dirs[q] = newMemDir()
		}
		if q == "/" {
			return nil
		}
	}
}

// ReadDir lists the files and directories in dir, sorted.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := cleanPath(dir)
	d := m.dirs[p]
	if d == nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for name := range d.entries {
		names = append(names, name)
	}
	for q := range m.dirs {
		if q != "/" && filepath.Dir(q) == p {
			names = append(names, filepath.Base(q))
		}
	}
	slices.Sort(names)
	return names, nil
}

// Stat describes a file or directory.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirs[cleanPath(name)] != nil {
		return memInfo{name: filepath.Base(name), dir: true}, nil
	}
	d, base, err := m.dirOf(name)
	if err != nil {
		return nil, err
	}
	n := d.entries[base]
	if n == nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return n.info(base), nil
}

// Remove deletes a file or an empty directory.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := cleanPath(name)
	if d := m.dirs[p]; d != nil {
		for q := range m.dirs {
			if strings.HasPrefix(q, p+"/") {
				return &os.PathError{Op: "remove", Path: name, Err: fmt.Errorf("directory not empty")}
			}
		}
		if len(d.entries) > 0 {
			return &os.PathError{Op: "remove", Path: name, Err: fmt.Errorf("directory not empty")}
		}
		delete(m.dirs, p)
		return nil
	}
	d, base, err := m.dirOf(name)
	if err != nil {
		return err
	}
	if d.entries[base] == nil {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.entries, base)
	return nil
}

// Rename moves a file, replacing newname.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.dirOf(oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.dirOf(newname)
	if err != nil {
		return err
	}
	n := od.entries[ob]
	if n == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	delete(od.entries, ob)
	nd.entries[nb] = n
	return nil
}

// SyncDir makes dir's entries durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[cleanPath(dir)]
	if d == nil {
		return &os.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	d.synced = maps.Clone(d.entries)
	return nil
}

// Lock takes dir's lock within this MemFS.
func (m *MemFS) Lock(dir string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := cleanPath(dir)
	if m.locks[p] {
		return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
	}
	m.locks[p] = true
	return memLock{m: m, dir: p}, nil
}

type memLock struct {
	m   *MemFS
	dir string
}

func (l memLock) Close() error {
	l.m.mu.Lock()
	delete(l.m.locks, l.dir)
	l.m.mu.Unlock()
	return nil
}

// memFile is an open MemFS file.
type memFile struct {
	name     string
	n        *memNode
	writable bool
	at       int64 // position of Write
	closed   bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) ReadAt(b []byte, off int64) (int, error) {
	f.n.mu.RLock()
	defer f.n.mu.RUnlock()
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(b, f.n.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(b []byte, off int64) (int, error) {
	if !f.writable {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: os.ErrPermission}
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if end := off + int64(len(b)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	copy(f.n.data[off:], b)
	f.n.mtime = time.Now()
	return len(b), nil
}

func (f *memFile) Write(b []byte) (int, error) {
	n, err := f.WriteAt(b, f.at)
	f.at += int64(n)
	return n, err
}

func (f *memFile) Truncate(size int64) error {
	if !f.writable {
		return &os.PathError{Op: "truncate", Path: f.name, Err: os.ErrPermission}
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size:size]
	} else {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *memFile) Sync() error {
	f.n.mu.Lock()
	f.n.synced = slices.Clone(f.n.data)
	f.n.mu.Unlock()
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.n.info(filepath.Base(f.name)), nil }

func (f *memFile) Close() error {
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return nil
}

func (n *memNode) info(name string) memInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return memInfo{name: name, size: int64(len(n.data)), mtime: n.mtime}
}

type memInfo struct {
	name  string
	size  int64
	mtime time.Time
	dir   bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return i.mtime }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
