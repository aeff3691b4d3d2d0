package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrNotFound is returned for a key that has no object.
var ErrNotFound = errors.New("objstore: not found")

// ErrExists is returned by PutIfAbsent for a key that has an object.
var ErrExists = errors.New("objstore: object exists")

// ErrPrecondition is returned by PutIfMatch when the object is not at the
// version it names: another writer replaced it.
var ErrPrecondition = errors.New("objstore: object changed")

// Object describes a stored object.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Store is an object store; see the package doc for the contract. Its
// methods are safe for concurrent use.
type Store interface {
	// Put stores r's bytes as key, replacing an object there, atomically.
	Put(ctx context.Context, key string, r io.Reader) error
	// PutIfAbsent stores r's bytes as key unless key exists (ErrExists).
	PutIfAbsent(ctx context.Context, key string, r io.Reader) error
	// Get reads n bytes of key from off; n < 0 reads to the end.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// GetVersion reads the whole of key and its version: an opaque tag
	// that differs for different contents (S3's ETag).
	GetVersion(ctx context.Context, key string) ([]byte, string, error)
	// PutIfMatch stores r's bytes as key if key's object is at version,
	// atomically with respect to other PutIfMatch calls, and returns the
	// new object's version; otherwise it fails with ErrPrecondition.
	PutIfMatch(ctx context.Context, key string, r io.Reader, version string) (string, error)
	// List returns the objects whose keys start with prefix, by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// FilePutter is an optional interface of stores that take a local file
// more cheaply than through Put: PutFile moves the file at src (which
// the caller gives up) to key, atomically, like Put.
type FilePutter interface {
	PutFile(ctx context.Context, key, src string) error
}

// FileSection is an optional interface of a reader given to Put whose
// bytes are the n bytes of the local file f from off (a sealed segment):
// a store may send them from the file (sendfile) instead of reading them
// through r. f stays the caller's; a store opens a descriptor of its own
// on f.Name() when it is still that file.
type FileSection interface {
	FileSection() (f *os.File, off, n int64)
}

// SectionCRC is an optional interface of a FileSection reader that knows
// the CRC-32C of the bytes of its section (a log segment's, from the
// CRCs its batches carry): a store that sends a body's CRC-32C for the
// server to check (S3's x-amz-checksum-crc32c) takes it instead of
// reading the section to compute it. An error (it does not know)
// leaves the store to compute it. A wrong CRC fails the upload: the
// server never stores the object.
type SectionCRC interface {
	SectionCRC32C() (uint32, error)
}

// Pacer is an optional interface of a FileSection reader whose bytes go
// at a pace (an upload rate): a store that sends them from the file
// calls Pace with the bytes it has left to send before each part, waits
// as long as Pace does, and sends the n it allows (at least 1, at most
// left) before calling it again. Pace returns an error (and the store
// stops the upload) when the upload's context ends.
type Pacer interface {
	Pace(left int64) (n int64, err error)
}

// BatchDeleter is an optional interface of stores that delete many keys
// in few requests (S3's DeleteObjects); missing keys are not an error.
type BatchDeleter interface {
	DeleteKeys(ctx context.Context, keys []string) error
}

// DeleteKeys deletes keys through BatchDeleter if s has it, else one by
// one.
func DeleteKeys(ctx context.Context, s Store, keys []string) error {
	if bd, ok := s.(BatchDeleter); ok {
		return bd.DeleteKeys(ctx, keys)
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, s.Delete(ctx, k))
	}
	return errors.Join(errs...)
}

// PutFile stores the local file src as key, through FilePutter if s has
// it, else by Put and removing src.
func PutFile(ctx context.Context, s Store, key, src string) error {
	if fp, ok := s.(FilePutter); ok {
		return fp.PutFile(ctx, key, src)
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	err = s.Put(ctx, key, f)
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Remove(src); err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	return nil
}

// CheckKey returns an error for a key the contract does not allow.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("objstore: bad key %q", key)
	}
	for _, e := range strings.Split(key, "/") {
		if e == "" || e == "." || e == ".." {
			return fmt.Errorf("objstore: bad key %q", key)
		}
	}
	return nil
}

// Dir is a Store in a local directory; see the package doc.
type Dir struct {
	root string
}

var (
	_ Store      = (*Dir)(nil)
	_ FilePutter = (*Dir)(nil)
)

// NewDir returns the store rooted at dir, creating it.
func NewDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return &Dir{root: filepath.Clean(dir)}, nil
}

// Root is the directory the store keeps its objects in.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// temp writes r into a synced temporary file next to key's path.
func (d *Dir) temp(key string, r io.Reader) (dst, tmp string, err error) {
	if dst, err = d.path(key); err != nil {
		return "", "", err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("objstore: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", "", fmt.Errorf("objstore: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", "", fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return dst, f.Name(), nil
}

// Put implements Store.
func (d *Dir) Put(_ context.Context, key string, r io.Reader) error {
	dst, tmp, err := d.temp(key, r)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return syncDir(filepath.Dir(dst))
}

// PutIfAbsent implements Store.
func (d *Dir) PutIfAbsent(_ context.Context, key string, r io.Reader) error {
	dst, tmp, err := d.temp(key, r)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, key)
		}
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return syncDir(filepath.Dir(dst))
}

// PutFile implements FilePutter: a rename on the same filesystem, else a
// copy through Put.
func (d *Dir) PutFile(ctx context.Context, key, src string) error {
	dst, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	err = os.Rename(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("objstore: %w", err)
		}
		defer f.Close()
		if err := d.Put(ctx, key, f); err != nil {
			return err
		}
		return os.Remove(src)
	}
	if err != nil {
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return syncDir(filepath.Dir(dst))
}

// fileRange is what Dir.Get returns: a range of an open file.
type fileRange struct {
	*io.SectionReader
	f      *os.File
	off, n int64
}

func (r *fileRange) Close() error { return r.f.Close() }

// WriteTo copies the rest of the range to w; to an *os.File the kernel
// copies it (copy_file_range), without passing through user space.
func (r *fileRange) WriteTo(w io.Writer) (int64, error) {
	pos, _ := r.SectionReader.Seek(0, io.SeekCurrent)
	if _, err := r.f.Seek(r.off+pos, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.Copy(w, &io.LimitedReader{R: r.f, N: r.n - pos})
	r.SectionReader.Seek(pos+n, io.SeekStart)
	return n, err
}

// GetVersion implements Store: a Dir's version is a hash of the contents.
func (d *Dir) GetVersion(_ context.Context, key string) ([]byte, string, error) {
	f, err := d.Open(key)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, "", fmt.Errorf("objstore: get %s: %w", key, err)
	}
	return b, contentVersion(b), nil
}

func contentVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// PutIfMatch implements Store: under an flock of a lock file next to the
// key (".tmp-lock-" and its name, left out of List), it compares the
// version of the object there and renames the new one onto it.
func (d *Dir) PutIfMatch(ctx context.Context, key string, r io.Reader, version string) (string, error) {
	dst, tmp, err := d.temp(key, r)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(dst), ".tmp-lock-"+filepath.Base(dst)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("objstore: put %s: %w", key, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("objstore: put %s: lock: %w", key, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	_, cur, err := d.GetVersion(ctx, key)
	if errors.Is(err, ErrNotFound) || err == nil && cur != version {
		return "", fmt.Errorf("%w: %s is not at version %s", ErrPrecondition, key, version)
	}
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return "", fmt.Errorf("objstore: put %s: %w", key, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return contentVersion(b), syncDir(filepath.Dir(dst))
}

// Open opens key's file for reading: a Dir's objects are files.
func (d *Dir) Open(key string) (*os.File, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return f, nil
}

// Get implements Store.
func (d *Dir) Get(_ context.Context, key string, off, n int64) (io.ReadCloser, error) {
	f, err := d.Open(key)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("objstore: %w", err)
		}
		n = max(st.Size()-off, 0)
	}
	return &fileRange{SectionReader: io.NewSectionReader(f, off, n), f: f, off: off, n: n}, nil
}

// List implements Store.
func (d *Dir) List(_ context.Context, prefix string) ([]Object, error) {
	// Walk only the directory the prefix is in.
	base := path.Dir(prefix)
	if !strings.Contains(prefix, "/") {
		base = "."
	} else if strings.HasSuffix(prefix, "/") {
		base = strings.TrimSuffix(prefix, "/")
	}
	start := filepath.Join(d.root, filepath.FromSlash(base))
	var out []Object
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, _ := filepath.Rel(d.root, p)
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, Object{Key: key, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (d *Dir) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("objstore: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("objstore: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("objstore: sync %s: %w", dir, err)
	}
	return nil
}
