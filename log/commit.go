package log

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// groupCommit is SyncAlways's group commit: appenders write into the page
// cache (combined into large writes, see stage) and then wait, in
// WaitDurable, for a sync that started after their write. One sync loop at
// a time runs syncs back to back while anyone waits: it drains the stage,
// takes a snapshot of what the active segment holds, fdatasyncs it and
// publishes it, and the appenders it covers are acknowledged together. While one fdatasync runs, the appenders it
// released write their next batches, which the loop's next sync, started
// as soon as the previous one returns, takes in one go.
//
// Waiters sleep on one of two conditions by the parity of the generation
// (the number of the sync) that covers them: the sync running when they
// arrive if its snapshot holds their records, else the next one. A sync
// wakes only its own generation, so the appenders still waiting for the
// next sync are not woken for nothing, and nothing is allocated per
// append.
//
// The loop runs on the goroutine of the first waiter that finds none
// running. Once that waiter's own records are durable and others still
// wait, it hands the loop to a goroutine of its own, which runs it until no
// one waits: one appender syncs on its own goroutine, many share one
// syncer, and an idle log has no goroutine.
//
// Where the time goes, and what did not pay (logbench -always, 128 MiB
// runs, 16 KiB appends, on the development machine: 2 cores, ext4 without
// a journal on a virtio disk; each variant alternated with this code in
// one hold of the benchmark lock). With 64 appenders a round is about
// 1 MB: the gather, while the appenders released by a sync write their
// next batches into the page cache (CRC-32C, a copy into the stage, which
// they no longer make, the pwrite), took 0.30-0.58 ms, the drain and snapshot 0.002-0.08 ms, the
// fdatasync 0.67-0.84 ms; with 8, 0.03-0.05 ms and 0.23-0.30 ms. Nothing
// is in flight on the disk during the gather, but none of these filled it:
//
//   - Two fdatasyncs in flight, each loop gathering half of the last
//     round's appenders, so that one half writes while the other's sync
//     runs: the gap fell to 0-0.2 ms, but a sync of half the bytes took as
//     long as one of all of them (0.68-0.94 ms): 494-619 MB/s against
//     633-840 MB/s at 64 appenders, 230-276 against 302-336 at 8. The
//     disk alone says the same: two write-then-fdatasync loops of half a
//     round each carried no more than one loop of whole rounds (keep
//     mode, 530 KB each: 1099-1243 MB/s; one of 1 MB: 1279-1314). Without
//     the halving (a second sync only for a waiter no running sync covers)
//     it stayed one round of 62: 615-678 MB/s against 633-840.
//   - Writeback started (sync_file_range SYNC_FILE_RANGE_WRITE) during
//     the gather, by the loop, for each 256 KiB written: the fdatasyncs
//     were 10-20% shorter and the gather as much longer, the submission
//     taking CPU that the appenders need (median 0.47x dd against 0.48x
//     in 8 alternations at 64 appenders); by the writer, after each write
//     of the stage: 0.36-0.44x against 0.35-0.39x at 64, 0.14-0.16x
//     against 0.16-0.18x at 8.
//   - A condition per stage, so that the end of a write wakes only its own
//     appenders and one of the next stage's: 558-841 MB/s against 704-872
//     at 64, within the noise at 8.
//   - A sync of the round's range only (sync_file_range with both waits
//     over the bytes written since the last sync, then a one-byte O_DSYNC
//     rewrite of the last one for the metadata and the device flush), so
//     that the writeback of a window's zeros (see prewrite.go), which an
//     fdatasync waits for, is not: syncs of 0.32-0.40 ms against
//     0.24-0.38 at 8 appenders, 0.16-0.19x dd against 0.21-0.26x (4
//     alternations); 0.40-0.49x against 0.52-0.54x at 64.
//
// What would pay is the disk's own: a segment file whose blocks were all
// written and synced before the appends overwrite them (a test build
// filled each new segment's file with 200 MiB and synced it before use,
// untimed, as a segment file recycled after retention would be, its pages
// still cached): fdatasyncs of 0.14-0.17 ms against 0.23-0.29 at 8
// appenders, 0.28-0.34 against 0.61-0.79 at 64, and 0.25-0.30x dd against
// 0.15-0.22x at 8, 0.76-0.99x against 0.37-0.49x at 64 (4 alternations,
// load 1.8). Writing zeros ahead for large rounds too (prewriteRoundMax
// unbounded) still loses at 64 appenders: the zeros cost the disk as
// much as the data (402-599 MB/s against 692-877 with 16 MiB windows).
// A log whose retention deletes segments now gets that in its steady
// state: its new segments take the deleted ones' files (see recycle.go).
//
// Against its floor (logbench -always -floor -warmup: a loop of
// write-then-fdatasync of one round's bytes, nothing written during a
// sync), in one run of 4 rounds: with recycled files 0.35x/0.74x dd at
// 8/64 appenders against 0.39x/1.12x for the loop into written blocks; a
// growing log 0.19x/0.42x against 0.19x/0.47x into reserved blocks. The
// gather and the sync are each longer than the loop's (at 64 appenders
// 0.48-0.51 ms and 0.61-0.66 ms against 0.34-0.36 and 0.48-0.51).
// Gathering half the last round, or none, did not pay with recycled files
// either (medians of 0.59-0.76x and 0.64-0.66x against 0.74-0.75x, two
// runs of two rounds each).
type groupCommit struct {
	mu        sync.Mutex
	gen       [2]sync.Cond // waiters of an even and an odd generation
	wanted    int64        // the largest offset a waiter waits for
	synced    int64        // offsets below are durable and published
	started   uint64       // generations started: the running sync's, if syncing
	syncing   bool         // a sync is running
	covering  int64        // offsets below are covered by the running sync
	waiting   [2]int       // waiters of an even and an odd generation, woken ones until they run
	target    int          // waiters to gather for the next sync (see gather)
	kick      sync.Cond    // signalled for a gathering loop
	writing   atomic.Int64 // SyncAlways appends between their start and their write
	appends   atomic.Int64 // SyncAlways appends written
	mark      int64        // appends when the last sync took its snapshot
	gathering atomic.Bool  // the loop waits on kick
	looping   bool         // a sync loop runs
	idle      sync.Cond    // signalled when the loop stops
	closing   bool         // Close has begun: no loop starts
	err       error        // sticky: every waiter gets it
}

func (g *groupCommit) init() {
	g.gen[0].L = &g.mu
	g.gen[1].L = &g.mu
	g.idle.L = &g.mu
	g.kick.L = &g.mu
}

// wrote is called by each SyncAlways append once written (or failed).
func (g *groupCommit) wrote() {
	g.appends.Add(1)
	g.writing.Add(-1)
	if g.gathering.Load() {
		g.mu.Lock()
		g.kickGather()
		g.mu.Unlock()
	}
}

// gather waits, before a sync, for the appenders the last sync released to
// write their next batches, so that one sync takes them all: until as many
// appends were written since the last sync's snapshot, or as many wait, as
// took part in the last round (those acknowledged and those that waited
// for the next sync), or until no one is left who could join: no append
// being written and every acknowledged waiter gone back to its caller. Without it, the appenders acknowledged by one sync write while
// the next runs and wait for the one after: two halves that alternate,
// each paying a whole fdatasync for half the data. Called with g.mu held.
func (g *groupCommit) gather() {
	if g.target <= 1 || g.gathered() {
		return
	}
	g.gathering.Store(true)
	for !g.gathered() {
		g.kick.Wait()
	}
	g.gathering.Store(false)
}

// gathered reports whether gather is done waiting. Called with g.mu held.
func (g *groupCommit) gathered() bool {
	next := (g.started + 1) & 1
	return g.closing || g.err != nil || g.waiting[next] >= g.target || int(g.appends.Load()-g.mark) >= g.target ||
		g.waiting[next^1] == 0 && g.writing.Load() == 0
}

// kickGather wakes a gathering loop that is done waiting. Called with
// g.mu held.
func (g *groupCommit) kickGather() {
	if g.gathering.Load() && g.gathered() {
		g.kick.Signal()
	}
}

// stop keeps new sync loops from starting and waits for the running one
// to finish. Called by Close, which syncs what is left itself.
func (g *groupCommit) stop() {
	g.mu.Lock()
	g.closing = true
	g.kick.Broadcast() // a gathering loop stops gathering
	for g.looping {
		g.idle.Wait()
	}
	g.mu.Unlock()
}

// advance records that the offsets below next are durable and published
// (by a sealer, Sync or Close) and wakes the waiters they cover.
func (g *groupCommit) advance(next int64) {
	g.mu.Lock()
	if next > g.synced {
		g.synced = next
		g.gen[0].Broadcast()
		g.gen[1].Broadcast()
	}
	g.mu.Unlock()
}

// fail makes err every later waiter's answer, unless it is covered
// already, and wakes them all.
func (g *groupCommit) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.kick.Broadcast()
	g.gen[0].Broadcast()
	g.gen[1].Broadcast()
	g.mu.Unlock()
}

// WaitDurable blocks until every offset below next is on disk and visible
// to readers. Concurrent callers share fdatasyncs (group commit, see
// groupCommit): a sync acknowledges every append written before it
// started, and appenders keep writing while it runs. It returns at once
// unless the sync policy is SyncAlways.
func (l *Log) WaitDurable(next int64) error {
	if l.opts.Sync != SyncAlways {
		return nil
	}
	g := &l.gc
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.synced < next {
		if g.err != nil {
			return g.err
		}
		g.wanted = max(g.wanted, next)
		if !g.looping && !g.closing {
			g.looping = true
			l.syncLoop(next)
			continue
		}
		gen := g.started + 1
		if g.syncing && next <= g.covering {
			gen = g.started
		}
		g.waiting[gen&1]++
		g.kickGather()
		g.gen[gen&1].Wait()
		g.waiting[gen&1]--
		g.kickGather()
	}
	return nil
}

// syncLoop runs syncs while anyone waits, with g.mu held on entry and on
// return. Called by a waiter for offset mine; once mine is durable and
// others wait, it goes on on a goroutine of its own (mine 0).
func (l *Log) syncLoop(mine int64) {
	g := &l.gc
	for g.err == nil && !g.closing && g.wanted > g.synced {
		if mine > 0 && g.synced >= mine {
			go func() {
				g.mu.Lock()
				l.syncLoop(0)
				g.mu.Unlock()
			}()
			return
		}
		g.gather()
		if g.err != nil || g.closing {
			break
		}
		g.mark = g.appends.Load() // the snapshot holds at least these
		g.mu.Unlock()
		s, snap, pending, err := l.syncTarget()
		g.mu.Lock()
		if err != nil {
			g.err = err
			break
		}
		g.started++
		gen := g.started
		g.syncing, g.covering = true, snap.next
		g.mu.Unlock()
		err = l.syncSegment(s, snap, pending)
		g.mu.Lock()
		g.syncing = false
		if err != nil {
			g.err = err
		} else {
			g.synced = max(g.synced, snap.next)
		}
		g.target = g.waiting[0] + g.waiting[1]
		g.gen[gen&1].Broadcast()
	}
	if g.err != nil {
		g.gen[0].Broadcast()
		g.gen[1].Broadcast()
	}
	g.looping = false
	g.idle.Broadcast()
}

// syncTarget returns the active segment, referenced (Close must not close
// its file under the sync), what it holds now, and the segments rolled
// before it that are not yet durable. If the segment's window of zeros is
// short, it starts writing more (see prewrite.go).
func (l *Log) syncTarget() (*segment, pubState, []*segment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return nil, pubState{}, nil, l.failed
	}
	if l.closed.Load() {
		return nil, pubState{}, nil, ErrClosed
	}
	l.drain() // what the snapshot holds is written
	s := l.active
	s.acquire()
	var pending []*segment
	if len(l.pending) > 0 {
		pending = slices.Clone(l.pending)
	}
	if p, ok := l.claimPrewrite(s); ok {
		s.acquire() // for the writer of the zeros
		go l.writePrewrite(p)
	}
	return s, l.snapshot(s), pending, nil
}

// syncSegment waits until the segments rolled before s are durable (they
// are published first, in roll order), fdatasyncs s and publishes snap,
// what it held before the sync. It releases s.
func (l *Log) syncSegment(s *segment, snap pubState, pending []*segment) error {
	defer s.release()
	for _, p := range pending {
		<-p.durable
		if p.sealErr != nil {
			return p.sealErr
		}
	}
	if err := l.fdatasync(s); err != nil {
		err = fmt.Errorf("%w: fdatasync %s: %v", ErrFailed, s.path, err)
		l.mu.Lock()
		if l.failed == nil {
			l.failed = err
		}
		l.mu.Unlock()
		return err
	}
	l.publish(s, snap)
	return nil
}
