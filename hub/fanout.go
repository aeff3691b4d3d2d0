package hub

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

// fanout is the one reader of a dataset that its subscriptions share: it
// follows every partition from where it started (the high watermarks when
// the first subscription came; a partition added later from its start),
// and turns each record into an event once, with its token and its JSON,
// into a window of the latest events bounded by Options.SubscribeBuffer
// bytes. Subscriptions that are caught up read that window at their own
// pace; one the window has moved past (lapped) catches up from the log
// itself, coalesced (subscription.coalesce), then joins the window again.
// The fan-out runs while the dataset has subscriptions.
//
// Processors: the readers and writers (direct.go) of all the fan-outs of
// a hub take turns on Options.SubscribeProcs tokens (Hub.fanCPU): a
// reader's turn is one read of every partition, a writer's 64
// subscriptions of a pass. With GOMAXPROCS-1 tokens, delivery never
// takes every processor from producers; and when processors are what
// delivery lacks, the reader cannot publish into the window faster than
// the writers write it out (it would lap subscriptions that take all
// they are sent, which then coalesce or resume): the backlog waits in
// the log. Their threads run at Options.SubscribeNice (backgroundThread).
//
// Positions: B(s), the positions before the event of sequence number s, is
// the positions after the previous event (its offset + 1 in its partition),
// or where the reader started a partition. A subscription that has
// everything below its positions V joins at the first s with B(s) <= V in
// every partition and skips the events below V; from the s where
// V == B(s) its tokens are the shared ones.
type fanout struct {
	h     *Hub
	ds    *Dataset
	idTag string
	limit int64
	stop  chan struct{}

	// mu guards the window: the reader writes under Lock, the
	// subscriptions read under RLock (a thousand of them woken at once
	// take it together).
	mu     sync.RWMutex
	events []*fanEvent // the window: events[i] has sequence number first+i
	first  int64
	oldest []int64 // B(first)
	head   []int64 // B(first+len(events))
	starts []int64 // per partition, where the reader started it
	bytes  int64
	more   chan struct{} // closed when events are added, invalidated, or the fan-out ends
	done   chan struct{} // closed when the fan-out ends
	err    error         // why the fan-out ended
	subs   int           // under h.fanMu
	// framings are the transports' encodings the reader frames each
	// event in (at most maxFramings, added by the subscriptions that
	// ask, under mu).
	framings []*Framing
	// writers deliver the frames of new events to the parked
	// subscriptions (direct.go), each to its share of them.
	writers []*fanWriter
	nextW   int // the writer of the next parked subscription, under mu
	// published is first+len(events) as of the last publish: the
	// writers look at it without the lock between two writes.
	published atomic.Int64
}

// maxFramings is how many framings a fan-out encodes events in (SSE and
// WebSocket); a subscription asking for another gets its events one by
// one.
const maxFramings = 2

// frameChunk holds the frames of consecutive events of one framing: the
// reader fills it front to back, and publishes the bytes it filled; they
// are read-only from then on. b is set once, at creation.
type frameChunk struct{ b []byte }

// frameChunkSize is the size of a frame chunk (a larger frame gets a
// chunk of its own).
const frameChunkSize = 64 << 10

// frameRef is where an event's frame is: c.b[off:end].
type frameRef struct {
	c        *frameChunk
	off, end int
}

// fanEvent is one event of the window: read-only once published.
type fanEvent struct {
	Event
	size   int64
	frames [maxFramings]frameRef // per f.framings; c nil when not framed
}

// fanBytesSlab is how many bytes of events the reader allocates at a
// time (an event larger than a quarter of it gets its own): one
// allocation for hundreds of small events. A slab lives until the last
// of its events leaves the window (they leave it in order).
const fanBytesSlab = 32 << 10

// fanEventOverhead is what an event costs beyond its bytes, for the bound.
const fanEventOverhead = 160

// acquireFanout returns the fan-out of ds, started if it was not, counted
// as used until releaseFanout.
func (h *Hub) acquireFanout(ds *Dataset) *fanout {
	h.fanMu.Lock()
	defer h.fanMu.Unlock()
	f := h.fanouts[ds]
	if f == nil {
		if h.fanCPU == nil {
			h.fanCPU = make(chan struct{}, h.opts.SubscribeProcs)
		}
		parts := ds.partitions()
		f = &fanout{h: h, ds: ds, limit: h.opts.SubscribeBuffer, stop: make(chan struct{}), more: make(chan struct{}),
			done: make(chan struct{})}
		f.writers = make([]*fanWriter, runtime.GOMAXPROCS(0))
		for i := range f.writers {
			f.writers[i] = &fanWriter{f: f, id: i, signal: make(chan struct{}, 1)}
			go f.writers[i].run()
		}
		f.idTag = subscriptionTag(ds)
		for _, p := range parts {
			hw := p.HighWatermark()
			f.oldest, f.head, f.starts = append(f.oldest, hw), append(f.head, hw), append(f.starts, hw)
		}
		if h.fanouts == nil {
			h.fanouts = map[*Dataset]*fanout{}
		}
		h.fanouts[ds] = f
		go f.run(parts)
	}
	f.subs++
	return f
}

// releaseFanout ends one use of f; the last stops it.
func (h *Hub) releaseFanout(f *fanout) {
	h.fanMu.Lock()
	defer h.fanMu.Unlock()
	if f.subs--; f.subs == 0 {
		close(f.stop)
		delete(h.fanouts, f.ds)
	}
}

// run is the reader: it reads what is written to every partition, 1024
// records of a partition at a time, and publishes the events.
func (f *fanout) run(parts []*Partition) {
	defer f.h.backgroundThread(f.h.opts.SubscribeNice)()
	pos := append([]int64(nil), f.head...)
	its := make([]*wlog.Iterator, 0, len(parts))
	wake := make(chan struct{}, 1)
	add := func(p *Partition, from int64) {
		it := p.log.NewIterator(from)
		it.ChunkBytes = 256 << 10
		its = append(its, it)
		p.addWaiter(wake)
	}
	for i, p := range parts {
		add(p, pos[i])
	}
	defer func() {
		for _, p := range parts {
			p.removeWaiter(wake)
		}
	}()
	tick := time.NewTicker(time.Second) // partitions added
	defer tick.Stop()
	var batch []*fanEvent
	tokenPos := append([]int64(nil), pos...)
	var buf, scratch []byte
	var framer framer
	var slab []fanEvent // events are allocated 256 at a time
	var byteSlab []byte // and their bytes fanBytesSlab at a time
	cpu := f.h.fanCPU
	for {
		cpu <- struct{}{}
		if now := f.ds.partitions(); len(now) > len(parts) {
			added := now[len(parts):]
			f.mu.Lock()
			for _, p := range added {
				start := p.StartOffset()
				f.oldest, f.head, f.starts = append(f.oldest, start), append(f.head, start), append(f.starts, start)
				pos, tokenPos = append(pos, start), append(tokenPos, start)
				add(p, start)
			}
			f.mu.Unlock()
			parts = now
		}
		progressed := false
		for i, p := range parts {
			it := its[i]
			if p.StartOffset() > pos[i] {
				// Retention went past what the reader had read: the
				// subscriptions re-read it themselves and reset.
				pos[i] = p.StartOffset()
				tokenPos[i] = pos[i]
				it.SeekTo(pos[i])
				f.invalidate(tokenPos)
				continue
			}
			from := pos[i]
			batch = batch[:0]
			for n := 0; n < 1024 && it.Next(); n++ {
				r := it.Record()
				tokenPos[i] = r.Offset + 1
				buf = appendToken(buf[:0], f.idTag, tokenPos)
				if len(slab) == 0 {
					slab = make([]fanEvent, 256)
				}
				batch = append(batch, newFanEvent(&slab[0], p.id, r, string(buf), &scratch, &byteSlab))
				slab = slab[1:]
			}
			if err := it.Err(); err != nil {
				if errors.Is(err, wlog.ErrOutOfRange) && p.StartOffset() > pos[i] {
					continue // the start moved: handled above on the next pass
				}
				<-cpu
				f.fail(fmt.Errorf("hub: subscription to %s/%d: %w", f.ds.name, p.id, err))
				return
			}
			pos[i] = max(pos[i], it.Offset())
			if len(batch) == 0 {
				continue
			}
			progressed = true
			// Tombstones removed at or after where this read began may
			// have been skipped by it.
			if p.log.CheckResume(from) != nil {
				f.invalidate(tokenPos)
				continue
			}
			framer.frame(f, batch)
			f.publish(batch, tokenPos)
		}
		<-cpu
		if progressed {
			// The writers it woke (readied on this processor) take
			// their turn before its next: the window does not move on
			// past subscriptions that only wait for a writer.
			runtime.Gosched()
			continue
		}
		waiting := true
		for i, p := range parts {
			if p.HighWatermark() > pos[i] {
				waiting = false
			}
		}
		if !waiting {
			continue
		}
		select {
		case <-wake:
		case <-tick.C:
		case <-f.stop:
			f.fail(ErrClosed)
			return
		case <-f.h.stop:
			f.fail(ErrClosed)
			return
		}
	}
}

// newFanEvent copies r into an event of partition, with its token and
// JSON (encoded in *scratch first: the event's bytes take one
// allocation, or a piece of the slab *bytes when bytes is not nil and
// they are small), into e if it is not nil.
func newFanEvent(e *fanEvent, partition int32, r *codecs.Record, token string, scratch, bytes *[]byte) *fanEvent {
	if e == nil {
		e = &fanEvent{}
	}
	e.Event = Event{Type: EventRecord, Token: token, Partition: partition, Offset: r.Offset, Time: r.Timestamp,
		Key: r.Key, Value: r.Value, Headers: r.Headers}
	if r.Value == nil && r.Key != nil {
		e.Type = EventDelete
	}
	*scratch = AppendEventJSON((*scratch)[:0], &e.Event, false)
	n := len(r.Key) + len(r.Value) + len(*scratch)
	for _, hd := range r.Headers {
		n += len(hd.Key) + len(hd.Value)
	}
	var b []byte
	if bytes != nil && n <= fanBytesSlab/4 {
		if cap(*bytes)-len(*bytes) < n {
			*bytes = make([]byte, 0, fanBytesSlab)
		}
		b = (*bytes)[len(*bytes) : len(*bytes) : len(*bytes)+n]
		*bytes = (*bytes)[:len(*bytes)+n]
	} else {
		b = make([]byte, 0, n)
	}
	cp := func(v []byte) []byte {
		if v == nil {
			return nil
		}
		b = append(b, v...)
		return b[len(b)-len(v) : len(b) : len(b)]
	}
	e.Key, e.Value = cp(r.Key), cp(r.Value)
	if len(r.Headers) > 0 {
		e.Headers = make([]codecs.RecordHeader, len(r.Headers))
		for i, hd := range r.Headers {
			e.Headers[i] = codecs.RecordHeader{Key: cp(hd.Key), Value: cp(hd.Value)}
		}
	}
	e.JSON = cp(*scratch)
	e.size = int64(n+len(token)) + fanEventOverhead
	return e
}

// framer is the reader's state of framing events: the chunk of each
// framing it fills.
type framer struct {
	framings []*Framing
	chunks   [maxFramings]*frameChunk
	used     [maxFramings]int
	scratch  []byte
}

// frame encodes the events of batch in every framing the fan-out's
// subscriptions asked for, each into the chunk of its framing, so that
// the frames of consecutive events are consecutive bytes.
func (fr *framer) frame(f *fanout, batch []*fanEvent) {
	f.mu.RLock()
	fr.framings = append(fr.framings[:0], f.framings...)
	f.mu.RUnlock()
	for k, fm := range fr.framings {
		for _, e := range batch {
			fr.scratch = fm.Append(fr.scratch[:0], &e.Event)
			n := len(fr.scratch)
			c := fr.chunks[k]
			if c == nil || len(c.b)-fr.used[k] < n {
				c = &frameChunk{b: make([]byte, max(frameChunkSize, n))}
				fr.chunks[k], fr.used[k] = c, 0
			}
			off := fr.used[k]
			copy(c.b[off:], fr.scratch)
			fr.used[k] += n
			e.frames[k] = frameRef{c: c, off: off, end: off + n}
			e.size += int64(n)
		}
	}
}

// addFraming makes the reader frame the events it reads from now on in
// fm, and returns fm's index in fanEvent.frames; -1 when the fan-out
// frames as many as it may.
func (f *fanout) addFraming(fm *Framing) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.framings {
		if x == fm {
			return i
		}
	}
	if len(f.framings) == maxFramings {
		return -1
	}
	f.framings = append(f.framings, fm)
	return len(f.framings) - 1
}

// publish adds the events to the window, whose head positions become
// head, drops the oldest past the bound and wakes the subscriptions.
func (f *fanout) publish(batch []*fanEvent, head []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range batch {
		f.events = append(f.events, e)
		f.bytes += e.size
	}
	copy(f.head, head)
	drop := 0
	for f.bytes > f.limit && drop < len(f.events) {
		e := f.events[drop]
		f.oldest[e.Partition] = e.Offset + 1
		f.bytes -= e.size
		f.events[drop] = nil
		drop++
	}
	f.events = f.events[drop:]
	f.first += int64(drop)
	f.published.Store(f.first + int64(len(f.events)))
	probePub(f.first + int64(len(f.events)))
	close(f.more)
	f.more = make(chan struct{})
	f.signalWriters()
}

// invalidate drops the whole window (what the reader read may miss
// records): the subscriptions in it read the log themselves, where the
// loss is seen and answered with a reset. The sequence numbers skip one,
// so that a subscription at the window's head (waiting for the next
// event, parked or not) is lapped too: the next event's B is head, not
// its positions.
func (f *fanout) invalidate(head []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.events)
	f.first += int64(len(f.events)) + 1
	f.events = f.events[:0]
	f.bytes = 0
	copy(f.head, head)
	copy(f.oldest, head)
	close(f.more)
	f.more = make(chan struct{})
	f.signalWriters()
}

func (f *fanout) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
		close(f.more)
		close(f.done)
	}
}

// errLapped says the window moved past a subscription.
var errLapped = errors.New("hub: subscription lapped")

// join returns the sequence number at which a subscription that has
// everything below pos joins the window, with B there and the reader's
// partition starts; ok is false if the window has moved past pos.
func (f *fanout) join(pos []int64) (seq int64, b, starts []int64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := min(len(pos), len(f.oldest))
	for i := range n {
		if pos[i] < f.oldest[i] {
			return 0, nil, nil, false
		}
	}
	b = append([]int64(nil), f.oldest...)
	seq = f.first
	for _, e := range f.events {
		if int(e.Partition) < len(pos) && e.Offset >= pos[e.Partition] {
			break
		}
		b[e.Partition] = e.Offset + 1
		seq++
	}
	return seq, b, append([]int64(nil), f.starts...), true
}

// next appends to dst the events from seq on (at most max), and returns
// them with the channel closed when there are more; errLapped if seq left
// the window, the fan-out's error if it ended.
func (f *fanout) next(dst []*fanEvent, seq int64, max int) ([]*fanEvent, <-chan struct{}, []int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if seq < f.first {
		return dst, nil, nil, errLapped
	}
	i := int(seq - f.first)
	if i < len(f.events) {
		return append(dst, f.events[i:min(len(f.events), i+max)]...), f.more, f.starts, nil
	}
	if f.err != nil {
		return dst, nil, nil, f.err
	}
	return dst, f.more, f.starts, nil
}

// appendToken appends the token of positions pos: "ID-P0.P1...", ID the
// first 4 bytes of the dataset's id in hex, Pn the offset partition n
// resumes at.
func appendToken(b []byte, tag string, pos []int64) []byte {
	b = append(b, tag...)
	b = append(b, '-')
	for i, p := range pos {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, p, 10)
	}
	return b
}
