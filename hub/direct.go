package hub

import (
	"slices"
	"sync"
)

// Direct delivery: a subscription that has caught up with the shared
// window, follows it with the shared tokens, and can write without
// blocking (SubscribeOptions.TryWrite) parks itself with one of its
// fan-out's writers (about one per processor) instead of waiting for the
// window to grow. When events are published, each writer walks its
// parked subscriptions and writes to each, in one call, the frames of
// every event it has not had (consecutive frames are consecutive bytes
// of a chunk, so that is one or two pieces): a thousand subscribers
// cost a thousand writes per pass, without a thousand goroutines woken,
// and a writer that falls behind takes more events per pass.
//
//	reader ──publish──▶ window ──signal──▶ writer 1 ──TryWrite──▶ parked subscriptions 1, 3, 5…
//	                                   └─▶ writer 2 ──TryWrite──▶ parked subscriptions 2, 4, 6…
//
// A writer hands a subscription back to its own goroutine (which then
// goes on as a subscription that is not parked) when the connection did
// not take everything (the rest of the bytes are the goroutine's to
// write, blocking as it may), when the next event has no frame of its
// framing or is in a partition it did not know of when it parked, when
// the window moved past it (it catches up from the log), when a write
// failed, and when the fan-out ends. The subscription's goroutine takes
// itself back for its heartbeat, and when its context or the hub ends.
// A parked subscription's connection is written only by the writer
// holding its mu, so a slow one costs a writer one write that returns
// at once, and the others are not delayed by it.

// direct is a subscription's parking state.
type direct struct {
	fk    int                              // the index of its framing in the events
	write func(bufs [][]byte) (int, error) // SubscribeOptions.TryWrite
	wake  chan struct{}                    // cap 1: a writer handed it back
	w     *fanWriter
	idx   int // in w.subs, under w.mu

	mu     sync.Mutex
	parked bool
	seq    int64    // the next event it is to get
	pos    []int64  // B(seq); read-only (may be shared by several)
	parts  int      // how many partitions it knew of when it parked
	rest   [][]byte // what a writer could not write: the goroutine writes it first
	err    error    // a write failed
	wrote  bool     // a writer wrote since it parked
}

// parkState is what the goroutine of a subscription gets back.
type parkState struct {
	seq   int64
	pos   []int64 // B(seq), read-only
	rest  [][]byte
	err   error
	wrote bool
}

// fanWriter is one of a fan-out's writers.
type fanWriter struct {
	f      *fanout
	id     int
	signal chan struct{} // cap 1: events were published
	mu     sync.Mutex
	subs   []*direct // parked with this writer
}

// signalWriters tells every writer that the window changed.
func (f *fanout) signalWriters() {
	for _, w := range f.writers {
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// newDirect returns the parking state of a subscription of f that writes
// with write, whose frames are f's framing fk.
func (f *fanout) newDirect(fk int, write func([][]byte) (int, error)) *direct {
	f.mu.Lock()
	w := f.writers[f.nextW%len(f.writers)]
	f.nextW++
	f.mu.Unlock()
	return &direct{fk: fk, write: write, wake: make(chan struct{}, 1), w: w}
}

// park hands the subscription to its writer from event seq on, where
// its positions are pos (copied).
func (d *direct) park(seq int64, pos []int64) {
	d.mu.Lock()
	d.parked, d.seq, d.pos, d.parts = true, seq, slices.Clone(pos), len(pos)
	d.rest, d.err, d.wrote = nil, nil, false
	d.mu.Unlock()
	w := d.w
	w.mu.Lock()
	d.idx = len(w.subs)
	w.subs = append(w.subs, d)
	w.mu.Unlock()
	// Events published before it was in the list: the writer's next
	// pass takes them.
	f := w.f
	f.mu.RLock()
	behind := seq < f.first+int64(len(f.events)) || f.err != nil
	f.mu.RUnlock()
	if behind {
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// unpark takes the subscription back from its writer (which may have
// handed it back already), and returns where the writer left it.
func (d *direct) unpark() parkState {
	d.mu.Lock()
	st := parkState{seq: d.seq, pos: d.pos, rest: d.rest, err: d.err, wrote: d.wrote}
	d.parked, d.rest, d.pos = false, nil, nil
	d.mu.Unlock()
	w := d.w
	w.mu.Lock()
	last := w.subs[len(w.subs)-1]
	w.subs[d.idx], last.idx = last, d.idx
	w.subs[len(w.subs)-1] = nil
	w.subs = w.subs[:len(w.subs)-1]
	w.mu.Unlock()
	select {
	case <-d.wake:
	default:
	}
	return st
}

// handBack ends the parking, under d.mu: the subscription's goroutine
// takes over.
func (d *direct) handBack() {
	d.parked = false
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// fanYield is how many subscriptions a writer's pass goes through
// between two turns on the fan-outs' processors (Hub.fanCPU).
const fanYield = 64

// maxPieces bounds the pieces of one write; a subscription with more to
// get stays parked and gets the rest on the writer's next pass.
const maxPieces = 64

// run is a writer: after each signal it writes to each of its parked
// subscriptions everything published since it last wrote to it.
func (w *fanWriter) run() {
	defer w.f.h.backgroundThread(w.f.h.opts.SubscribeNice)()
	f := w.f
	var (
		subs []*direct
		evs  []*fanEvent
		// The pieces of the last subscription written, reused for the
		// next when it is at the same event with the same framing and
		// partitions (the usual case: all of them).
		pieces             [][]byte
		pSeq               int64 = -1
		pFk, pParts, pUpto int
		pFull              bool
	)
	for {
		select {
		case <-w.signal:
		case <-f.done:
		}
		cpu := f.h.fanCPU
		cpu <- struct{}{}
		pStart := probeNow()
		w.mu.Lock()
		subs = append(subs[:0], w.subs...)
		w.mu.Unlock()
		f.mu.RLock()
		ended := f.err != nil
		f.mu.RUnlock()
		if len(subs) == 0 {
			<-cpu
			if ended {
				return
			}
			continue
		}
		from := int64(-1)
		for _, d := range subs {
			d.mu.Lock()
			if d.parked && (from < 0 || d.seq < from) {
				from = d.seq
			}
			d.mu.Unlock()
		}
		// The events from the first any of them is to get, copied out of
		// the window with the positions after the last.
		f.mu.RLock()
		first, head := f.first, f.first+int64(len(f.events))
		from = max(from, first)
		if from < head {
			evs = append(evs[:0], f.events[from-first:]...)
		} else {
			evs = evs[:0]
		}
		headPos := slices.Clone(f.head)
		f.mu.RUnlock()
		pSeq = -1
		again := false
		nWritten := 0
		for i, d := range subs {
			if i%fanYield == fanYield-1 {
				<-cpu // the reader and the other writers take their turn
				cpu <- struct{}{}
			}
			// Events published since the pass began go to the
			// subscriptions it has not written yet in the same write
			// (extend): a pass that takes longer than the gap between
			// publishes carries more events a write instead of leaving
			// them to a pass of their own.
			if !ended && f.published.Load() > head {
				evs, head, headPos = f.extend(evs, head, headPos)
				pSeq = -1
			}
			d.mu.Lock()
			if !d.parked {
				d.mu.Unlock()
				continue
			}
			if ended || d.seq < first {
				d.handBack() // lapped, or the end: its own loop sees it
				d.mu.Unlock()
				continue
			}
			if d.seq >= head {
				d.mu.Unlock()
				continue
			}
			if d.seq != pSeq || d.fk != pFk || d.parts != pParts {
				pieces, pUpto, pFull = framesFrom(pieces[:0], evs[d.seq-from:], d.fk, d.parts)
				pSeq, pFk, pParts = d.seq, d.fk, d.parts
			}
			if pUpto > 0 {
				written := evs[d.seq-from : d.seq-from+int64(pUpto)]
				n, err := d.write(pieces)
				probeWrite(w.id, d.seq, pUpto)
				nWritten++
				d.wrote = true
				if d.seq+int64(pUpto) == head {
					d.pos = headPos
				} else {
					pos := slices.Clone(d.pos)
					for _, e := range written {
						pos[e.Partition] = e.Offset + 1
					}
					d.pos = pos
				}
				d.seq += int64(pUpto)
				if err != nil {
					d.err = err
					d.handBack()
					d.mu.Unlock()
					continue
				}
				if rest := restOf(pieces, n); len(rest) > 0 {
					d.rest = rest
					d.handBack()
					d.mu.Unlock()
					continue
				}
			}
			switch {
			case d.seq < head && !pFull:
				d.handBack() // an event it cannot be written here
			case d.seq < head:
				again = true // more than one write takes
			}
			d.mu.Unlock()
		}
		clear(evs)
		<-cpu
		probePass(w.id, pStart, from, head, len(subs), nWritten)
		if ended {
			return // every one handed back
		}
		if again {
			select {
			case w.signal <- struct{}{}:
			default:
			}
		}
	}
}

// extend appends to evs, the events of the window up to head, those
// published since, and returns them with the new head and its positions;
// evs as it is if the window moved past head meanwhile (the next pass
// takes them) or the fan-out ended.
func (f *fanout) extend(evs []*fanEvent, head int64, headPos []int64) ([]*fanEvent, int64, []int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	end := f.first + int64(len(f.events))
	if f.err != nil || head < f.first || end <= head {
		return evs, head, headPos
	}
	return append(evs, f.events[head-f.first:]...), end, slices.Clone(f.head)
}

// framesFrom appends to dst the frames of the events of evs in framing
// fk, consecutive frames joined in one piece, up to an event without a
// frame or of a partition >= parts, or up to maxPieces pieces. It
// returns the pieces, how many events they hold, and whether it stopped
// only for maxPieces.
func framesFrom(dst [][]byte, evs []*fanEvent, fk, parts int) ([][]byte, int, bool) {
	var run frameRef
	for i, e := range evs {
		fr := e.frames[fk]
		if fr.c == nil || int(e.Partition) >= parts {
			if run.c != nil {
				dst = append(dst, run.c.b[run.off:run.end])
			}
			return dst, i, false
		}
		if run.c == fr.c && run.end == fr.off {
			run.end = fr.end
			continue
		}
		if run.c != nil {
			if len(dst) == maxPieces-1 {
				return append(dst, run.c.b[run.off:run.end]), i, true
			}
			dst = append(dst, run.c.b[run.off:run.end])
		}
		run = fr
	}
	if run.c != nil {
		dst = append(dst, run.c.b[run.off:run.end])
	}
	return dst, len(evs), true
}

// restOf returns what of pieces is past the first n bytes (a new slice:
// pieces is reused).
func restOf(pieces [][]byte, n int) [][]byte {
	var rest [][]byte
	for _, p := range pieces {
		switch {
		case n >= len(p):
			n -= len(p)
		case rest == nil:
			rest = append(rest, p[n:])
			n = 0
		default:
			rest = append(rest, p)
		}
	}
	return rest
}
