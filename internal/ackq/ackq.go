// Package ackq tracks the batches a source hands over in order and the
// runtime acknowledges in any order, and says which positions may be
// committed: those of the longest acknowledged prefix, so that a commit
// never skips a batch still in flight. It is the one implementation of
// that algorithm for the sources that commit positions (dataset, kafka);
// Redpanda Connect's checkpoint.Capped has the same shape.
//
// # The rules
//
//   - Batches are added in the order they are handed over, each with the
//     next positions of its partitions (the offset after its last record).
//   - Done marks a batch acknowledged. The acknowledged batches at the
//     head of the queue leave it; their positions are merged (a later
//     batch's position for a partition replaces an earlier one's) and
//     returned as ready to commit.
//   - A failed batch poisons the tracker: from then on nothing is ready to
//     commit, so what follows the failure is read again at the next start.
//   - Revoke starts a new generation: batches added before it (their
//     partitions may belong to another reader now) are never ready.
//   - At most the tracker's capacity of batches are outstanding: Acquire
//     waits for a slot, Done (or Release, for a slot not used) frees it.
//
// A Tracker is safe for concurrent use.
package ackq

import (
	"context"
	"sync"
)

// Tracker tracks outstanding batches whose positions, per key K (a
// partition), are values V (an offset, or an offset with its epoch).
type Tracker[K comparable, V any] struct {
	slots chan struct{}

	mu       sync.Mutex
	pending  []*Batch[K, V] // in the order added
	gen      int
	poisoned bool
}

// Batch is one batch handed over, as Add returned it.
type Batch[K comparable, V any] struct {
	t         *Tracker[K, V]
	positions map[K]V
	gen       int
	done      bool
}

// New returns a tracker allowing capacity outstanding batches (at least
// one).
func New[K comparable, V any](capacity int) *Tracker[K, V] {
	return &Tracker[K, V]{slots: make(chan struct{}, max(capacity, 1))}
}

// Acquire takes a slot for the next batch, waiting while the tracker's
// capacity of batches are outstanding, or returns ctx's error.
func (t *Tracker[K, V]) Acquire(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives back a slot that Acquire took but no batch used.
func (t *Tracker[K, V]) Release() { <-t.slots }

// Add records a batch handed over, after the ones added before, with the
// next position of each of its partitions; it holds the slot Acquire took
// until Done.
func (t *Tracker[K, V]) Add(positions map[K]V) *Batch[K, V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &Batch[K, V]{t: t, positions: positions, gen: t.gen}
	t.pending = append(t.pending, b)
	return b
}

// Done acknowledges the batch: err nil if it was processed, else why not
// (which poisons the tracker). It returns the positions now ready to
// commit (nil if none), whether this call poisoned the tracker, and ok
// false if the batch was acknowledged before (the call did nothing).
func (b *Batch[K, V]) Done(err error) (ready map[K]V, poisoned, ok bool) {
	t := b.t
	t.mu.Lock()
	if b.done {
		t.mu.Unlock()
		return nil, false, false
	}
	b.done = true
	if err != nil && !t.poisoned {
		t.poisoned, poisoned = true, true
	}
	n := 0
	for n < len(t.pending) && t.pending[n].done {
		p := t.pending[n]
		n++
		if p.gen != t.gen || t.poisoned {
			continue
		}
		if ready == nil {
			ready = make(map[K]V, len(p.positions))
		}
		for k, v := range p.positions {
			ready[k] = v // later batches are further on
		}
	}
	clear(t.pending[:n])
	t.pending = t.pending[n:]
	if len(t.pending) == 0 {
		t.pending = nil
	}
	t.mu.Unlock()
	<-t.slots
	return ready, poisoned, true
}

// Revoke starts a new generation: no batch added so far will be ready.
// Call it when partitions are taken away.
func (t *Tracker[K, V]) Revoke() {
	t.mu.Lock()
	t.gen++
	t.mu.Unlock()
}

// Pending is the number of batches added and not yet out of the queue
// (not acknowledged, or acknowledged behind one that is not).
func (t *Tracker[K, V]) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// Poisoned reports whether a batch failed.
func (t *Tracker[K, V]) Poisoned() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.poisoned
}
