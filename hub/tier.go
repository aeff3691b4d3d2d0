package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/weirhub/weir/internal/objstore"
	wlog "github.com/weirhub/weir/log"
)

// coldTier is one partition's space in the hub's cold store
// (Options.ColdStore): the objects under DATASET/PARTITION/ of the store,
// as the partition's log.Tier. Uploads of every partition share the hub's
// slots (Options.ColdUploads), so that many partitions rolling at once
// do not flood the store, and its pace (Options.ColdUploadBytesPerSecond;
// nil: unpaced).
type coldTier struct {
	s      objstore.Store
	prefix string
	slots  chan struct{}
	pace   *rate.Limiter
}

var _ wlog.Tier = (*coldTier)(nil)

func (h *Hub) coldTier(dataset string, partition int32) *coldTier {
	return &coldTier{s: h.opts.ColdStore, prefix: path.Join(dataset, fmt.Sprint(partition)) + "/", slots: h.coldSlots, pace: h.coldPace}
}

// mapErr makes the store's sentinels the ones log.Tier's contract names.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, objstore.ErrNotFound):
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	case errors.Is(err, objstore.ErrExists):
		return fmt.Errorf("%w (%w)", err, fs.ErrExist)
	case errors.Is(err, objstore.ErrPrecondition):
		return fmt.Errorf("%w (%w)", err, wlog.ErrTierFenced)
	}
	return err
}

func (t *coldTier) take(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (t *coldTier) Put(ctx context.Context, name string, r io.Reader) error {
	if err := t.take(ctx); err != nil {
		return err
	}
	defer func() { <-t.slots }()
	return mapErr(t.s.Put(ctx, t.prefix+name, t.paced(ctx, r)))
}

// newPace returns the limiter of uploads at bytesPerSec: a burst of a
// tenth of a second's bytes (64KiB to 16MiB), so that the rate holds
// over any second.
func newPace(bytesPerSec int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(min(max(bytesPerSec/10, 64<<10), 16<<20)))
}

// paced returns r read at most at t's pace; its Len, if it has one (a
// store sends an object of known size in one PUT), and its FileSection
// with a Pacer, if it has one (a store sends the file's bytes itself, in
// the steps the Pacer allows).
func (t *coldTier) paced(ctx context.Context, r io.Reader) io.Reader {
	if t.pace == nil {
		return r
	}
	p := &pacedReader{ctx: ctx, r: r, pace: t.pace}
	l, ok := r.(interface{ Len() int })
	if !ok {
		return p
	}
	if fs, ok := r.(objstore.FileSection); ok {
		return pacedSection{pacedLen{p, l}, fs}
	}
	return pacedLen{p, l}
}

// pacedReader reads r at its limiter's pace: before reading it waits for
// the bytes of a step (paceStep, at most the burst and what r has left
// when it tells), then reads up to them. A store reads in small pieces
// (minio-go 64 KiB at a time, a copy 32 KiB): a wait per read put a
// timer, a sleep and a wake-up on every piece, and turned one stream into
// thousands of short bursts per GiB that both ends paid for
// (BenchmarkProduceUploadRatio's paced uploads cost twice the CPU per
// GiB of the unpaced ones).
type pacedReader struct {
	ctx    context.Context
	r      io.Reader
	pace   *rate.Limiter
	credit int // bytes waited for and not read yet
}

// paceStep is the most bytes a paced upload waits for at once: a 64th of
// a second at 64 MB/s, so the pace holds within a few milliseconds.
const paceStep = 1 << 20

// wait waits for the bytes of a step, at most left, and returns them.
func (p *pacedReader) wait(left int) (int, error) {
	step := min(paceStep, p.pace.Burst(), left)
	if step <= 0 {
		return 0, nil
	}
	if err := p.pace.WaitN(p.ctx, step); err != nil {
		return 0, fmt.Errorf("hub: pacing a cold store upload: %w", err)
	}
	return step, nil
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.credit == 0 && len(b) > 0 {
		left := paceStep
		if l, ok := p.r.(interface{ Len() int }); ok {
			left = l.Len()
		}
		step, err := p.wait(left)
		if err != nil {
			return 0, err
		}
		p.credit = step
	}
	if p.credit > 0 {
		b = b[:min(len(b), p.credit)]
	}
	n, err := p.r.Read(b)
	p.credit = max(p.credit-n, 0)
	return n, err
}

type pacedLen struct {
	*pacedReader
	l interface{ Len() int }
}

func (p pacedLen) Len() int { return p.l.Len() }

// pacedSection is a pacedReader over an objstore.FileSection: a store
// that sends the section from its file waits for each step (Pace) as
// Read would.
type pacedSection struct {
	pacedLen
	fs objstore.FileSection
}

var _ objstore.Pacer = pacedSection{}

func (p pacedSection) FileSection() (*os.File, int64, int64) { return p.fs.FileSection() }

// SectionCRC32C implements objstore.SectionCRC with the reader's own, if
// it has one.
func (p pacedSection) SectionCRC32C() (uint32, error) {
	if c, ok := p.fs.(objstore.SectionCRC); ok {
		return c.SectionCRC32C()
	}
	return 0, errors.New("hub: the upload's CRC-32C is not known")
}

// Pace implements objstore.Pacer.
func (p pacedSection) Pace(left int64) (int64, error) {
	step, err := p.wait(int(min(left, paceStep)))
	return int64(step), err
}

func (t *coldTier) PutIfAbsent(ctx context.Context, name string, r io.Reader) error {
	return mapErr(t.s.PutIfAbsent(ctx, t.prefix+name, r))
}

func (t *coldTier) GetVersion(ctx context.Context, name string) ([]byte, string, error) {
	b, v, err := t.s.GetVersion(ctx, t.prefix+name)
	return b, v, mapErr(err)
}

func (t *coldTier) PutIfMatch(ctx context.Context, name string, r io.Reader, version string) (string, error) {
	v, err := t.s.PutIfMatch(ctx, t.prefix+name, r, version)
	return v, mapErr(err)
}

func (t *coldTier) Get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	rc, err := t.s.Get(ctx, t.prefix+name, off, n)
	return rc, mapErr(err)
}

var _ wlog.TierLister = (*coldTier)(nil)

// List implements log.TierLister: the objects under the partition's
// prefix, named without it.
func (t *coldTier) List(ctx context.Context) ([]wlog.TierObject, error) {
	objs, err := t.s.List(ctx, t.prefix)
	if err != nil {
		return nil, err
	}
	out := make([]wlog.TierObject, 0, len(objs))
	for _, o := range objs {
		if name, ok := strings.CutPrefix(o.Key, t.prefix); ok {
			out = append(out, wlog.TierObject{Name: name, Size: o.Size, Modified: o.Modified})
		}
	}
	return out, nil
}

// fileStore is a store whose objects are local files (objstore.Dir).
type fileStore interface {
	Open(key string) (*os.File, error)
}

// opener is coldTier with log.TierOpener, over a fileStore.
type opener struct{ *coldTier }

var _ wlog.TierOpener = opener{}

// OpenObject implements log.TierOpener.
func (t opener) OpenObject(name string) (*os.File, error) {
	f, err := t.s.(fileStore).Open(t.prefix + name)
	return f, mapErr(err)
}

// tier returns t as the log's Tier: with TierOpener over a fileStore.
func (t *coldTier) tier() wlog.Tier {
	if _, ok := t.s.(fileStore); ok {
		return opener{t}
	}
	return t
}

func (t *coldTier) Delete(ctx context.Context, names []string) error {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = t.prefix + n
	}
	return objstore.DeleteKeys(ctx, t.s, keys)
}

// deleteCold removes a deleted dataset's objects from the cold store:
// every partition's manifest first, so that a crash part way leaves
// objects no manifest lists (garbage that a new dataset of the same name
// overwrites), never a manifest naming missing objects.
func (h *Hub) deleteCold(name string) error {
	if h.opts.ColdStore == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	objs, err := h.opts.ColdStore.List(ctx, name+"/")
	if err != nil {
		return fmt.Errorf("hub: deleting %s from the cold store: %w", name, err)
	}
	slices.SortStableFunc(objs, func(a, b objstore.Object) int {
		am, bm := path.Base(a.Key) == wlog.ManifestName, path.Base(b.Key) == wlog.ManifestName
		switch {
		case am && !bm:
			return -1
		case bm && !am:
			return 1
		}
		return 0
	})
	var keys []string
	for _, o := range objs {
		if path.Base(o.Key) == wlog.ManifestName {
			if err := h.opts.ColdStore.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("hub: deleting %s from the cold store: %w", name, err)
			}
			continue
		}
		keys = append(keys, o.Key)
	}
	if err := objstore.DeleteKeys(ctx, h.opts.ColdStore, keys); err != nil {
		return fmt.Errorf("hub: deleting %s from the cold store: %w", name, err)
	}
	return nil
}
