package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// What a request may cost, and how that is bounded before it is decoded
// (issue 18, items 3 and 4):
//
//   - Size: Produce may be MaxRequestBytes; every other API at most
//     maxOtherRequestBytes: they carry names and numbers, not records.
//   - Memory while reading: a body is read into a buffer that grows as its
//     bytes arrive, so an announced size costs nothing until it is sent,
//     and the bytes every connection holds are charged to one budget
//     (Options.QueuedMaxRequestBytes); a reader waits for room until its
//     body deadline. Requests of at most freeRequestBytes are not charged
//     (they cost at most MaxConnections times that), so clients that fill
//     the budget with slow bodies do not stall Metadata or heartbeats.
//   - Time while reading: the body must arrive within RequestBodyTimeout
//     plus a second per 256 KiB.
//   - Memory while decoding: kmsg preallocates an array from its claimed
//     count, checked against the bytes left times a small per-element
//     minimum (two bytes for a produce topic), so a request can cost its
//     size times the largest element kmsg allocates for it over that
//     minimum. Produce, the one large request, is walked first
//     (checkProduceShape): every count must fit the bytes it needs, and
//     what kmsg will allocate must stay within twice the request plus
//     64 KiB. Other requests are charged size times that largest element
//     (decodeFactor) against a second budget of the same size while they
//     decode; decoding holds it for CPU time only, never while waiting
//     on the network.

// maxOtherRequestBytes bounds requests other than Produce.
const maxOtherRequestBytes = 1 << 20

// requestLimit is the largest request accepted for API key.
func (s *Server) requestLimit(key int16) int32 {
	if key == 0 {
		return s.opts.MaxRequestBytes
	}
	return min(maxOtherRequestBytes, s.opts.MaxRequestBytes)
}

// bodyMinRate is the slowest a request body may arrive: its deadline is
// Options.RequestBodyTimeout plus one second per bodyMinRate bytes.
const bodyMinRate = 256 << 10

func (s *Server) bodyTimeout(size int) time.Duration {
	return s.opts.RequestBodyTimeout + time.Duration(size)*time.Second/bodyMinRate
}

// firstChunk is the buffer a body starts with; it doubles as bytes arrive.
const firstChunk = 64 << 10

// freeRequestBytes is the size up to which a body is not charged to the
// read budget.
const freeRequestBytes = 4 << 10

// budget is a FIFO weighted semaphore of bytes: the bytes of requests
// being read, queued and decoded across connections.
type budget struct {
	mu      sync.Mutex
	size    int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64) *budget { return &budget{size: size} }

// errNoRoom is the error of an acquire that waited past its deadline.
var errNoRoom = errors.New("no room in the request budget (QueuedMaxRequestBytes) before the deadline")

// acquire takes n bytes, waiting in line until they are free, ctx ends or
// the deadline passes. The deadline keeps a connection that holds bytes
// from waiting for ever on others that hold the rest.
func (b *budget) acquire(ctx context.Context, deadline time.Time, n int64) error {
	if n <= 0 {
		return nil
	}
	n = min(n, b.size) // one request may use all of it, never more
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-timer.C:
		err = errNoRoom
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.mu.Unlock()
		b.release(n)
	default:
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		b.grant() // those behind it may fit now
		b.mu.Unlock()
	}
	return err
}

func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	n = min(n, b.size)
	b.mu.Lock()
	b.used -= n
	b.grant()
	b.mu.Unlock()
}

// grant wakes the waiters at the head of the line that now fit.
func (b *budget) grant() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.size {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += w.n
		close(w.ready)
	}
}

// inUse is the number of bytes taken.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// decodeFactor is, per API key, the largest array element kmsg allocates
// for that request: what one claimed byte can cost when decoded.
var decodeFactor = map[int16]int64{}

func init() {
	for key := range apis {
		decodeFactor[key] = max(1, int64(largestElem(reflect.TypeOf(kmsg.RequestForKey(key)), map[reflect.Type]bool{})))
	}
}

// largestElem is the size of the largest slice element type reachable
// from t (strings count as their header).
func largestElem(t reflect.Type, seen map[reflect.Type]bool) uintptr {
	if seen[t] {
		return 0
	}
	seen[t] = true
	var best uintptr
	switch t.Kind() {
	case reflect.Pointer:
		return largestElem(t.Elem(), seen)
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 {
			best = t.Elem().Size()
		}
		best = max(best, largestElem(t.Elem(), seen))
	case reflect.Struct:
		for i := range t.NumField() {
			best = max(best, largestElem(t.Field(i).Type, seen))
		}
	}
	return best
}

// decodeCost is what decoding body (the request after its header) may
// allocate; for Produce, checkProduceShape has bounded it.
func decodeCost(key int16, body []byte, produceCost int64) int64 {
	if key == 0 {
		return produceCost
	}
	f, ok := decodeFactor[key]
	if !ok {
		f = 1
	}
	return f * int64(len(body))
}

var (
	sizeProduceTopic     = int64(reflect.TypeOf(kmsg.ProduceRequestTopic{}).Size())
	sizeProducePartition = int64(reflect.TypeOf(kmsg.ProduceRequestTopicPartition{}).Size())
)

// errShape marks a request whose claimed counts or lengths do not fit its
// bytes, or that would cost too much memory to decode.
var errShape = errors.New("claimed counts do not fit the request")

// shapeReader reads the primitive fields of a request for checkProduceShape.
type shapeReader struct {
	b    []byte
	flex bool
	err  error
}

func (r *shapeReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errShape, what)
	}
	r.b = nil
}

func (r *shapeReader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *shapeReader) int16(what string) int16 {
	if len(r.b) < 2 {
		r.fail(what)
		return 0
	}
	v := int16(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	return v
}

func (r *shapeReader) int32(what string) int32 {
	if len(r.b) < 4 {
		r.fail(what)
		return 0
	}
	v := int32(binary.BigEndian.Uint32(r.b))
	r.b = r.b[4:]
	return v
}

// length reads a string, bytes or array length: -1 is null.
func (r *shapeReader) length(wide bool, what string) int64 {
	switch {
	case r.flex:
		return int64(r.uvarint(what)) - 1
	case wide:
		return int64(r.int32(what))
	default:
		return int64(r.int16(what))
	}
}

// bytes skips a (nullable) string or bytes field and returns its length.
func (r *shapeReader) bytes(wide bool, what string) int64 {
	n := r.length(wide, what)
	if n < -1 || n > int64(len(r.b)) {
		r.fail(what)
		return 0
	}
	if n > 0 {
		r.b = r.b[n:]
	}
	return max(n, 0)
}

// tags skips a tagged-field section, checking each tag fits.
func (r *shapeReader) tags() {
	if !r.flex {
		return
	}
	n := r.uvarint("tag count")
	if n > uint64(len(r.b)) {
		r.fail("tag count")
		return
	}
	for range n {
		r.uvarint("tag key")
		size := r.uvarint("tag size")
		if r.err != nil || size > uint64(len(r.b)) {
			r.fail("tag size")
			return
		}
		r.b = r.b[size:]
	}
}

// array reads an array count that must leave at least minElem bytes for
// each element.
func (r *shapeReader) array(minElem int, what string) int64 {
	n := r.length(true, what)
	if n < -1 || n*int64(minElem) > int64(len(r.b)) {
		r.fail(what + " count")
		return 0
	}
	return max(n, 0)
}

// checkProduceShape walks a Produce request body (after the header) of
// version v and returns what kmsg will allocate decoding it; it fails when
// a count or length does not fit the bytes or that allocation passes
// twice the request plus 64 KiB.
func checkProduceShape(body []byte, v int16) (int64, error) {
	r := &shapeReader{b: body, flex: v >= 9}
	if v >= 3 {
		r.bytes(false, "transactional id")
	}
	r.int16("acks")
	r.int32("timeout")
	// A topic is at least its name's length, its partitions' count and
	// (flexible) its tags; a partition its number and records' length.
	minTopic, minPart := 6, 8
	if r.flex {
		minTopic, minPart = 3, 6
	}
	cost := int64(0)
	topics := r.array(minTopic, "topics")
	cost += topics * sizeProduceTopic
	for range topics {
		cost += r.bytes(false, "topic")
		parts := r.array(minPart, "partitions")
		cost += parts * sizeProducePartition
		for range parts {
			r.int32("partition")
			r.bytes(true, "records")
			r.tags()
		}
		r.tags()
		if r.err != nil {
			return 0, r.err
		}
	}
	r.tags()
	if r.err != nil {
		return 0, r.err
	}
	if limit := 2*int64(len(body)) + 64<<10; cost > limit {
		return 0, fmt.Errorf("%w: %d topics over %d bytes would take %d bytes to decode", errShape, topics, len(body), cost)
	}
	return cost, nil
}
