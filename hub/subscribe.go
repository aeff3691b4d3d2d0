package hub

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

// Event types of a subscription.
const (
	// EventRecord is a record with a value: the key's new value.
	EventRecord = "record"
	// EventDelete is a tombstone: a key with a null value.
	EventDelete = "delete"
	// EventSnapshotEnd follows the latest value of every key, also when
	// there is none.
	EventSnapshotEnd = "snapshot_end"
	// EventReset says the resume point is gone (too old, compacted past,
	// or not this dataset's): the subscriber drops its state, and a fresh
	// snapshot follows.
	EventReset = "reset"
	// EventResume ends a subscription that fell further behind than it
	// may hold (SubscribeOptions.CoalesceBytes): resuming with its token
	// goes on without a gap, reading the log at the subscriber's pace.
	EventResume = "resume"
)

// Subscription start points.
const (
	FromSnapshot = "snapshot" // the latest value of every key, then live
	FromLatest   = "latest"   // only what is written from now on
	FromEarliest = "earliest" // every record still stored, then live
)

// Event is one event of a subscription. Token resumes the subscription
// just after it (SubscribeOptions.Token). Key, Value and Headers are valid
// only during the emit call.
type Event struct {
	Type      string
	Token     string
	Partition int32
	Offset    int64
	Time      int64 // milliseconds since the epoch
	Key       []byte
	Value     []byte
	Headers   []codecs.RecordHeader
	// JSON, if set, is the event as AppendEventJSON(nil, e, false)
	// writes it (which then copies it), encoded once for every
	// subscription that shares the event.
	JSON []byte
}

// SubscribeOptions say where a subscription starts and how it idles.
type SubscribeOptions struct {
	// From is FromSnapshot (the default, also for ""), FromLatest or
	// FromEarliest; a Token overrides it.
	From string
	// Token, if set, resumes after the event that carried it. A token
	// that cannot be resumed (unknown, another dataset's, older than the
	// dataset's start or than tombstones compaction removed) gets an
	// EventReset and a snapshot, never a silent gap.
	Token string
	// Heartbeat is how long the subscription may be idle before OnIdle
	// is called. Default 15 seconds.
	Heartbeat time.Duration
	// OnIdle, if set, is called after Heartbeat without events (an HTTP
	// subscription writes a comment that keeps proxies from closing it).
	OnIdle func() error
	// OnStart, if set, is called once the start positions are fixed,
	// before the first event: whatever is written after it is delivered
	// (an HTTP subscription sends its response headers there, so that a
	// client that has them misses nothing written since).
	OnStart func() error
	// OnCaughtUp, if set, is called whenever the subscription has emitted
	// everything stored and is about to wait (an HTTP subscription
	// flushes its buffer there).
	OnCaughtUp func() error
	// CoalesceBytes bounds, in bytes, what a subscription that fell
	// behind the shared window holds to catch up: the latest value of
	// each key it missed. Past it, the subscription ends with
	// EventResume. Default 16 MiB.
	CoalesceBytes int64
	// Framing and EmitFrames, if both set, take the live events that the
	// subscription follows in the dataset's shared window: each is
	// encoded once by Framing for every subscription that uses the same
	// Framing value, and EmitFrames gets the frames of n consecutive
	// events (Framing.Append of each, concatenated) in one call, as many
	// as are there when it is called. The bytes are shared: valid only
	// during the call, never to be modified. Other events (snapshots,
	// catching up, coalescing, resets) go to emit.
	Framing    *Framing
	EmitFrames func(frames []byte, n int) error
	// TryWrite, if set with Framing and EmitFrames, lets the dataset's
	// shared writers deliver live frames while the subscription is caught
	// up, without waking its goroutine (direct.go): it writes bufs, in
	// order, as far as the connection takes them without blocking, and
	// returns how many bytes it wrote. What it did not write goes to
	// EmitFrames (with n 0: pieces of frames) before anything else. It is
	// called by one goroutine at a time, never during another callback,
	// and must not keep bufs.
	TryWrite func(bufs [][]byte) (int, error)
}

// A Framing is how a transport encodes an event (a Server-Sent Event, a
// WebSocket message): Append appends e's frame to dst. Give every
// subscription of a transport the same *Framing: the fan-out of a
// dataset encodes each live event once per Framing value in use (at most
// two per dataset; subscriptions with a third get their events one by
// one).
type Framing struct {
	Append func(dst []byte, e *Event) []byte
}

// ErrBadFrom is returned by Subscribe for an unknown From.
var ErrBadFrom = errors.New("hub: from must be snapshot, latest or earliest")

// errResume says a follower lost its position and must reset.
var errResume = errors.New("hub: resume point lost")

// ErrSlowSubscriber is returned by Subscribe after EventResume: the
// subscriber fell further behind than SubscribeOptions.CoalesceBytes.
var ErrSlowSubscriber = errors.New("hub: subscriber too far behind: resume with the last token")

// Subscribe streams a dataset to emit until ctx ends or emit, OnIdle or
// OnCaughtUp fails: with FromSnapshot, the latest value of every key
// (records without a key are not part of a snapshot; deletes applied) as
// of the call, EventSnapshotEnd, then every record written after, each as
// EventRecord or EventDelete, also in partitions added after the call.
//
// Live events are read and encoded once per dataset, by one reader that
// every subscription of the dataset shares (fanout.go), into a window of
// the latest events (Options.SubscribeBuffer). A subscription reads the
// log itself until it has caught up (a snapshot, a token, earliest), then
// follows the window at its own pace. One that the window moves past
// (too slow) is coalesced: it reads what it missed from the log, keeps
// only the latest record of each key (within CoalesceBytes), sends those
// and joins the window again; past the bound it gets EventResume and
// Subscribe returns ErrSlowSubscriber. A slow subscriber thus slows
// neither the others nor the producers. A follower that falls behind
// retention or below the delete horizon (log.CompactedError) gets
// EventReset and a new snapshot. emit must not modify the event, which
// other subscriptions share. It returns ctx's cause, the callback's error,
// ErrSlowSubscriber, or ErrClosed when the hub closes.
func (h *Hub) Subscribe(ctx context.Context, dataset string, opts SubscribeOptions, emit func(*Event) error) error {
	ds, err := h.Dataset(dataset)
	if err != nil {
		return err
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.CoalesceBytes <= 0 {
		opts.CoalesceBytes = 16 << 20
	}
	s := &subscription{h: h, ds: ds, parts: ds.partitions(), opts: opts, emit: emit}
	s.idTag = subscriptionTag(ds)
	s.pos = make([]int64, len(s.parts))
	snapshot := false
	switch {
	case opts.Token != "":
		if !s.parseToken(opts.Token) {
			snapshot = true // after a reset
		}
	case opts.From == "" || opts.From == FromSnapshot:
		snapshot = true
	case opts.From == FromLatest:
		for i, p := range s.parts {
			s.pos[i] = p.HighWatermark()
		}
	case opts.From == FromEarliest:
		for i, p := range s.parts {
			s.pos[i] = p.StartOffset()
		}
	default:
		return fmt.Errorf("%w: %q", ErrBadFrom, opts.From)
	}
	if opts.OnStart != nil {
		if err := opts.OnStart(); err != nil {
			return err
		}
	}
	if snapshot && opts.Token != "" {
		if err := s.send(&Event{Type: EventReset, Token: s.snapshotToken()}); err != nil {
			return err
		}
	}
	for {
		if snapshot {
			if err := s.snapshot(ctx); err != nil {
				if errors.Is(err, errResume) {
					if err := s.send(&Event{Type: EventReset, Token: s.snapshotToken()}); err != nil {
						return err
					}
					continue
				}
				return err
			}
		}
		err := s.follow(ctx)
		if !errors.Is(err, errResume) {
			return err
		}
		if err := s.send(&Event{Type: EventReset, Token: s.snapshotToken()}); err != nil {
			return err
		}
		snapshot = true
	}
}

type subscription struct {
	h     *Hub
	ds    *Dataset
	parts []*Partition
	opts  SubscribeOptions
	emit  func(*Event) error
	idTag string  // the dataset's id, in tokens
	pos   []int64 // per partition: the offset after the last event
	buf   []byte
}

func (s *subscription) send(e *Event) error { return s.emit(e) }

// subscriptionTag is the dataset's part of its tokens: the first 4
// bytes of its id in hex.
func subscriptionTag(ds *Dataset) string { return hex.EncodeToString(ds.id[:4]) }

// token encodes the positions (appendToken).
func (s *subscription) token() string {
	s.buf = appendToken(s.buf[:0], s.idTag, s.pos)
	return string(s.buf)
}

// refresh adds the partitions added to the dataset since, from their
// start.
func (s *subscription) refresh() {
	s.parts = s.ds.partitions()
	for len(s.pos) < len(s.parts) {
		s.pos = append(s.pos, s.parts[len(s.pos)].StartOffset())
	}
}

// snapshotToken is the token of events inside a snapshot: resuming one
// starts over with a reset.
func (s *subscription) snapshotToken() string { return s.idTag + "-snapshot" }

// parseToken sets the positions from a token, and reports whether they
// can be resumed.
func (s *subscription) parseToken(tok string) bool {
	tag, rest, ok := strings.Cut(tok, "-")
	if !ok || tag != s.idTag || rest == "snapshot" {
		return false
	}
	fields := strings.Split(rest, ".")
	if len(fields) > len(s.parts) {
		return false
	}
	for i, p := range s.parts {
		off := p.StartOffset() // a partition added since starts at its beginning
		if i < len(fields) {
			n, err := strconv.ParseInt(fields[i], 10, 64)
			if err != nil {
				return false
			}
			off = n
		}
		if off < p.StartOffset() || off > p.HighWatermark() || p.log.CheckResume(off) != nil {
			return false
		}
		s.pos[i] = off
	}
	return true
}

// snapshot emits the latest value of every key as of now, partition by
// partition, reading each twice: once to find each key's latest offset (a
// map of key hashes, 24 bytes a key), once to emit the records at those
// offsets. Then EventSnapshotEnd, and the positions are where it stopped.
func (s *subscription) snapshot(ctx context.Context) error {
	seed0, seed1 := maphash.MakeSeed(), maphash.MakeSeed()
	tok := s.snapshotToken()
	for i, p := range s.parts {
		start, end := p.StartOffset(), p.HighWatermark()
		latest := map[[2]uint64]int64{}
		hash := func(k []byte) [2]uint64 { return [2]uint64{maphash.Bytes(seed0, k), maphash.Bytes(seed1, k)} }
		if err := s.scan(ctx, p, start, end, func(r *codecs.Record) error {
			if r.Key != nil {
				latest[hash(r.Key)] = r.Offset
			}
			return nil
		}); err != nil {
			return err
		}
		if err := s.scan(ctx, p, start, end, func(r *codecs.Record) error {
			if r.Key == nil || r.Value == nil || latest[hash(r.Key)] != r.Offset {
				return nil
			}
			return s.send(&Event{Type: EventRecord, Token: tok, Partition: p.id, Offset: r.Offset, Time: r.Timestamp,
				Key: r.Key, Value: r.Value, Headers: r.Headers})
		}); err != nil {
			return err
		}
		s.pos[i] = end
	}
	if err := s.send(&Event{Type: EventSnapshotEnd, Token: s.token()}); err != nil {
		return err
	}
	return s.caughtUp()
}

// scan reads the records of p in [from, to).
func (s *subscription) scan(ctx context.Context, p *Partition, from, to int64, fn func(*codecs.Record) error) error {
	it := p.log.NewIterator(from)
	for it.Next() {
		r := it.Record()
		if r.Offset >= to {
			break
		}
		if err := fn(r); err != nil {
			return err
		}
		if r.Offset%1024 == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	if err := it.Err(); err != nil {
		if errors.Is(err, wlog.ErrOutOfRange) {
			return errResume // retention went past the snapshot's start
		}
		return fmt.Errorf("hub: subscription to %s/%d: %w", s.ds.name, p.id, err)
	}
	return nil
}

func (s *subscription) caughtUp() error {
	if s.opts.OnCaughtUp != nil {
		return s.opts.OnCaughtUp()
	}
	return nil
}

// follow emits what is written from the positions on: it reads the log
// until caught up, then follows the dataset's shared window; lapped by
// it, it catches up coalesced and joins again. It returns errResume when
// a position is lost.
func (s *subscription) follow(ctx context.Context) error {
	f := s.h.acquireFanout(s.ds) // before catching up: the window starts at most where that ends
	defer s.h.releaseFanout(f)
	for {
		if err := s.catchUp(ctx); err != nil {
			return err
		}
		seq, b, starts, ok := f.join(s.pos)
		if !ok {
			continue // the window moved on meanwhile: read on
		}
		err := s.followWindow(ctx, f, seq, b, starts)
		if !errors.Is(err, errLapped) {
			return err
		}
		if err := s.coalesce(ctx); err != nil {
			return err
		}
	}
}

// catchUp emits what is stored from the positions on, reading the log
// itself, and returns once it has read up to the high watermarks; it
// returns errResume when a position is lost.
func (s *subscription) catchUp(ctx context.Context) error {
	s.refresh()
	its := make([]*wlog.Iterator, len(s.parts))
	for {
		s.refresh()
		progressed := false
		for i, p := range s.parts {
			if i >= len(its) {
				its = append(its, make([]*wlog.Iterator, i+1-len(its))...)
			}
			if its[i] == nil {
				its[i] = p.log.NewIterator(s.pos[i])
				its[i].ChunkBytes = 256 << 10
			}
			it := its[i]
			if p.StartOffset() > s.pos[i] {
				return errResume
			}
			from := s.pos[i]
			for n := 0; n < 1024 && it.Next(); n++ {
				r := it.Record()
				s.pos[i] = r.Offset + 1
				e := Event{Type: EventRecord, Partition: p.id, Offset: r.Offset, Time: r.Timestamp,
					Key: r.Key, Value: r.Value, Headers: r.Headers}
				if r.Value == nil && r.Key != nil {
					e.Type = EventDelete
				}
				e.Token = s.token()
				if err := s.send(&e); err != nil {
					return err
				}
				progressed = true
			}
			if err := it.Err(); err != nil {
				if errors.Is(err, wlog.ErrOutOfRange) {
					return errResume
				}
				return fmt.Errorf("hub: subscription to %s/%d: %w", s.ds.name, p.id, err)
			}
			// Tombstones removed at or after where this read began may
			// have been skipped by it.
			if p.log.CheckResume(from) != nil {
				return errResume
			}
			s.pos[i] = max(s.pos[i], it.Offset())
		}
		if progressed {
			continue
		}
		caughtUp := true
		for i, p := range s.parts {
			if p.HighWatermark() > s.pos[i] {
				caughtUp = false
			}
		}
		if caughtUp {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}

// followWindow emits the events of the shared window from seq on, where
// the positions before are b and the reader started its partitions at
// starts; events below the subscription's own positions (it read further
// than b) are skipped, and its tokens are the shared ones once its
// positions are b. It returns errLapped when the window moved past it.
func (s *subscription) followWindow(ctx context.Context, f *fanout, seq int64, b, starts []int64) error {
	ahead := false
	extend := func(starts []int64) {
		for len(b) < len(starts) {
			b = append(b, starts[len(b)])
		}
		if len(s.pos) < len(b) {
			for len(s.pos) < len(b) {
				s.pos = append(s.pos, b[len(s.pos)])
			}
			s.parts = s.ds.partitions()[:len(s.pos)] // as many as positions
		}
		ahead = !slices.Equal(s.pos, b)
	}
	extend(starts)
	for i := range b {
		if b[i] > s.pos[i] {
			return errLapped // the reader started a partition after a record this subscription has not had
		}
	}
	fk := -1 // the index of the subscription's framing in the events
	if s.opts.Framing != nil && s.opts.EmitFrames != nil {
		fk = f.addFraming(s.opts.Framing)
	}
	// run is the frames of consecutive events not yet emitted, one
	// range of a chunk.
	var run frameRef
	runN := 0
	emitRun := func() error {
		if runN == 0 {
			return nil
		}
		n := runN
		runN = 0
		return s.opts.EmitFrames(run.c.b[run.off:run.end], n)
	}
	idle := time.NewTimer(s.opts.Heartbeat)
	defer idle.Stop()
	var evs []*fanEvent
	var d *direct // set once the subscription may park
	for {
		evs, more, starts, err := f.next(evs[:0], seq, 1024)
		if err != nil {
			return err
		}
		if len(starts) > len(b) {
			old := len(b)
			extend(starts)
			for i := old; i < len(b); i++ {
				if b[i] > s.pos[i] {
					return errLapped
				}
			}
		}
		for _, e := range evs {
			seq++
			p := e.Partition
			b[p] = e.Offset + 1
			if e.Offset < s.pos[p] {
				continue // had it already
			}
			s.pos[p] = e.Offset + 1
			if ahead {
				ahead = !slices.Equal(s.pos, b)
			}
			if !ahead && fk >= 0 && e.frames[fk].c != nil {
				fr := e.frames[fk]
				if runN > 0 && fr.c == run.c && fr.off == run.end {
					run.end = fr.end
					runN++
					continue
				}
				if err := emitRun(); err != nil {
					return err
				}
				run, runN = fr, 1
				continue
			}
			if err := emitRun(); err != nil {
				return err
			}
			if !ahead {
				err = s.send(&e.Event)
			} else {
				own := e.Event
				own.Token = s.token()
				err = s.send(&own)
			}
			if err != nil {
				return err
			}
		}
		if err := emitRun(); err != nil {
			return err
		}
		clear(evs)
		if len(evs) > 0 {
			continue
		}
		if err := s.caughtUp(); err != nil {
			return err
		}
		if d == nil && fk >= 0 && s.opts.TryWrite != nil {
			d = f.newDirect(fk, s.opts.TryWrite)
		}
		if d != nil && !ahead {
			// Caught up with the shared tokens: the writers take it
			// from here until they hand it back.
			d.park(seq, b)
			idled, closed := false, false
			select {
			case <-d.wake:
			case <-f.done:
			case <-idle.C:
				idled = true
			case <-ctx.Done():
			case <-s.h.stop:
				closed = true
			}
			st := d.unpark()
			if st.seq != seq {
				seq = st.seq
				copy(b, st.pos)
				copy(s.pos, st.pos)
			}
			for _, r := range st.rest {
				if err := s.opts.EmitFrames(r, 0); err != nil {
					return err
				}
			}
			switch {
			case st.err != nil:
				return st.err
			case ctx.Err() != nil:
				return context.Cause(ctx)
			case closed:
				return ErrClosed
			case idled && !st.wrote && s.opts.OnIdle != nil:
				if err := s.opts.OnIdle(); err != nil {
					return err
				}
			}
			if !idled {
				continue // the idle timer goes on
			}
		} else {
			select {
			case <-more:
			case <-idle.C:
				if s.opts.OnIdle != nil {
					if err := s.opts.OnIdle(); err != nil {
						return err
					}
				}
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-s.h.stop:
				return ErrClosed
			}
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(s.opts.Heartbeat)
	}
}

// coalesce emits what the subscription missed up to the high watermarks,
// read from the log: only the latest record of each key in a partition
// (and every record without a key), partition by partition in offset
// order, so that each token resumes without a gap. Holding more than
// CoalesceBytes, it emits EventResume and returns ErrSlowSubscriber.
func (s *subscription) coalesce(ctx context.Context) error {
	s.refresh()
	target := make([]int64, len(s.parts))
	for i, p := range s.parts {
		target[i] = p.HighWatermark()
	}
	var held []*fanEvent
	var bytes int64
	var scratch []byte
	for i, p := range s.parts {
		from := s.pos[i]
		if from >= target[i] {
			continue
		}
		held, bytes = held[:0], 0
		keys := map[string]int{}
		if err := s.scan(ctx, p, from, target[i], func(r *codecs.Record) error {
			e := newFanEvent(nil, p.id, r, "", &scratch, nil)
			if r.Key != nil {
				if j, ok := keys[string(r.Key)]; ok {
					bytes -= held[j].size
					held[j] = nil
				}
				keys[string(r.Key)] = len(held)
			}
			held = append(held, e)
			bytes += e.size + 8
			if bytes > s.opts.CoalesceBytes {
				return ErrSlowSubscriber
			}
			return nil
		}); err != nil {
			if errors.Is(err, ErrSlowSubscriber) {
				if err := s.send(&Event{Type: EventResume, Token: s.token()}); err != nil {
					return err
				}
			}
			return err
		}
		// Records deleted (DeleteRecords, retention) from where it read
		// are a reset, as in catchUp, also when the log still had them.
		if p.log.CheckResume(from) != nil || p.StartOffset() > from {
			return errResume
		}
		for _, e := range held {
			if e == nil {
				continue
			}
			s.pos[i] = e.Offset + 1
			e.Token = s.token()
			if err := s.send(&e.Event); err != nil {
				return err
			}
		}
		clear(held)
		s.pos[i] = max(s.pos[i], target[i])
	}
	return nil
}
