package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/internal/atomicfile"
)

// Transactions (Kafka's): a transactional id names one producer across its
// restarts. InitProducerID gives it a producer id and a new epoch, fencing
// older incarnations; AddPartitionsToTxn and AddOffsetsToTxn say what the
// current transaction touches; EndTxn writes a commit or abort marker to
// each of its partitions and, on commit, applies the group offsets sent
// with TxnOffsetCommit. A transaction open longer than its timeout is
// aborted with the epoch bumped, so its producer is fenced.
//
// The coordinator's state is kept in DATA/transactions/state.log, one JSON
// line per change of a transactional id, fsynced before the change is
// answered. It is replayed at open: a transaction that was preparing its
// commit or abort is completed, an open one keeps its start time and times
// out as it would have.

// Transaction states, as Kafka's DescribeTransactions names them.
const (
	TxnEmpty          = "Empty"
	TxnOngoing        = "Ongoing"
	TxnPrepareCommit  = "PrepareCommit"
	TxnPrepareAbort   = "PrepareAbort"
	TxnCompleteCommit = "CompleteCommit"
	TxnCompleteAbort  = "CompleteAbort"
)

// DefaultTxnTimeout is the timeout of a transactional id initialised
// without one; MaxTxnTimeout is the longest accepted (Kafka's
// transaction.max.timeout.ms).
const (
	DefaultTxnTimeout = time.Minute
	MaxTxnTimeout     = 15 * time.Minute
)

// TxnOffset is one offset committed within a transaction.
type TxnOffset struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Epoch     int32  `json:"epoch"`
	Metadata  string `json:"metadata,omitempty"`
}

// TxnDescription is one transactional id's state (DescribeTransactions).
type TxnDescription struct {
	ID         string           `json:"id"`
	ProducerID int64            `json:"pid"`
	Epoch      int16            `json:"epoch"`
	State      string           `json:"state"`
	TimeoutMs  int64            `json:"timeout_ms"`
	StartMs    int64            `json:"start_ms,omitempty"` // when the open transaction began
	Partitions []TopicPartition `json:"partitions,omitempty"`
	Groups     []string         `json:"groups,omitempty"`
	Offsets    []TxnOffset      `json:"offsets,omitempty"` // staged by TxnOffsetCommit, committed with the transaction
}

type txnEntry struct {
	mu     sync.Mutex
	d      TxnDescription
	busy   bool // a commit or abort is writing markers
	checks int  // check-backs of the open transaction that got no decision
}

type txnCoordinator struct {
	h     *Hub
	mu    sync.Mutex // guards byID, byPID
	byID  map[string]*txnEntry
	byPID map[int64]*txnEntry

	fileMu sync.Mutex
	f      *os.File
	path   string
	lines  int
}

func openTxnCoordinator(h *Hub) (*txnCoordinator, error) {
	dir := filepath.Join(h.opts.DataDir, "transactions")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	c := &txnCoordinator{h: h, byID: map[string]*txnEntry{}, byPID: map[int64]*txnEntry{}, path: filepath.Join(dir, "state.log")}
	b, err := os.ReadFile(c.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hub: reading the transaction log: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		var d TxnDescription
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil || d.ID == "" {
			// Only the last line can be torn by a crash: its change was
			// never answered.
			h.opts.Logger.Warn("hub: ignoring a torn line of the transaction log", "path", c.path, "line", n)
			break
		}
		if old := c.byID[d.ID]; old != nil && old.d.ProducerID != d.ProducerID {
			delete(c.byPID, old.d.ProducerID)
		}
		e := &txnEntry{d: d}
		c.byID[d.ID] = e
		c.byPID[d.ProducerID] = e
	}
	if err := c.rewrite(); err != nil {
		return nil, err
	}
	// Finish what was being finished when the hub stopped.
	for _, e := range c.byID {
		if e.d.State == TxnPrepareCommit || e.d.State == TxnPrepareAbort {
			if err := c.complete(e); err != nil {
				c.close()
				return nil, err
			}
		}
	}
	if err := c.reconcile(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// reconcile matches the open transactions the partitions found in their
// logs with the coordinator's state, which syncs only decisions: a
// partition of a transaction still open rejoins it; one of a transaction
// recorded as committed gets its commit marker; any other (its
// transaction unknown, aborted or of an older epoch) gets an abort marker.
func (c *txnCoordinator) reconcile() error {
	for _, ds := range c.h.Datasets() {
		for _, p := range ds.partitions() {
			type open struct {
				pid   int64
				epoch int16
			}
			var opens []open
			p.mu.Lock()
			for pid, st := range p.producers {
				if st.TxnOpen {
					opens = append(opens, open{pid, st.Epoch})
				}
			}
			p.mu.Unlock()
			tp := TopicPartition{Topic: ds.name, Partition: p.id}
			for _, o := range opens {
				commit := false
				c.mu.Lock()
				e := c.byPID[o.pid]
				c.mu.Unlock()
				if e != nil && e.d.Epoch == o.epoch {
					switch {
					case e.d.State == TxnOngoing:
						if !slices.Contains(e.d.Partitions, tp) {
							e.d.Partitions = append(e.d.Partitions, tp)
							if err := c.persist(&e.d, true); err != nil {
								return err
							}
						}
						continue
					case e.d.State == TxnCompleteCommit && slices.Contains(e.d.Partitions, tp):
						commit = true
					}
				}
				c.h.opts.Logger.Info("hub: ending a transaction found open in a partition at open", "dataset", ds.name,
					"partition", p.id, "producer_id", o.pid, "commit", commit)
				if err := p.WriteMarker(o.pid, o.epoch, commit); err != nil {
					return fmt.Errorf("hub: ending the open transaction of producer %d in %s/%d: %w", o.pid, ds.name, p.id, err)
				}
			}
		}
	}
	return nil
}

// rewrite writes the current state as a fresh log and reopens it for
// appending.
func (c *txnCoordinator) rewrite() error {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	var buf bytes.Buffer
	c.mu.Lock()
	ids := make([]string, 0, len(c.byID))
	for id := range c.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := c.byID[id]
		b, _ := json.Marshal(&e.d)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if err := atomicfile.Write(c.path, buf.Bytes()); err != nil {
		return fmt.Errorf("hub: writing the transaction log: %w", err)
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("hub: opening the transaction log: %w", err)
	}
	c.f, c.lines = f, len(ids)
	return nil
}

// persist records d, the new state of one transactional id; with sync it
// is on disk before persist returns. Only what cannot be rebuilt is
// synced: a new epoch (fencing) and a decision to commit or abort. The
// partitions of an open transaction are found again in the partitions'
// own state (reconcile), and a completion lost in a crash is redone from
// the decision.
func (c *txnCoordinator) persist(d *TxnDescription, sync bool) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("hub: encoding transaction state: %w", err)
	}
	b = append(b, '\n')
	c.fileMu.Lock()
	if c.f == nil {
		c.fileMu.Unlock()
		return ErrClosed
	}
	_, err = c.f.Write(b)
	if err == nil && sync {
		err = c.f.Sync()
	}
	c.lines++
	compact := c.lines > 10000
	c.fileMu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: writing the transaction log: %v", ErrStorage, err)
	}
	if compact {
		c.mu.Lock()
		n := len(c.byID)
		c.mu.Unlock()
		if c.lines > 4*n {
			if err := c.rewrite(); err != nil {
				c.h.opts.Logger.Warn("hub: compacting the transaction log failed", "err", err)
			}
		}
	}
	return nil
}

func (c *txnCoordinator) close() {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

func (c *txnCoordinator) now() int64 { return c.h.opts.Now().UnixMilli() }

// lookup returns the entry of id checked against the caller's producer id
// and epoch, locked.
func (c *txnCoordinator) lookup(id string, pid int64, epoch int16) (*txnEntry, error) {
	c.mu.Lock()
	e := c.byID[id]
	c.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrTransactionalIDNotFound, id)
	}
	e.mu.Lock()
	switch {
	case e.d.ProducerID != pid:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: transactional id %q belongs to producer %d, not %d", ErrInvalidProducerIDMapping, id, e.d.ProducerID, pid)
	case epoch < e.d.Epoch:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: transactional id %q is at epoch %d, the caller at %d", ErrProducerFenced, id, e.d.Epoch, epoch)
	case epoch > e.d.Epoch:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: epoch %d is ahead of %d", ErrInvalidProducerEpoch, epoch, e.d.Epoch)
	case e.busy:
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %q is ending its transaction", ErrConcurrentTransactions, id)
	}
	return e, nil
}

// InitTransactionalProducer is InitProducerID for a transactional id: the
// id's producer id with the next epoch (a new producer id when the epoch
// is exhausted or the id is new). An open transaction of an older
// incarnation is aborted first. A caller passing its current producer id
// and epoch (KIP-360) must match the id's; -1, -1 is a fresh start.
func (h *Hub) InitTransactionalProducer(id string, timeout time.Duration, producerID int64, epoch int16) (int64, int16, error) {
	if timeout <= 0 || timeout > MaxTxnTimeout {
		return -1, -1, fmt.Errorf("%w: %v (at most %v)", ErrInvalidTxnTimeout, timeout, MaxTxnTimeout)
	}
	c := h.txns
	c.mu.Lock()
	e := c.byID[id]
	if e == nil {
		e = &txnEntry{d: TxnDescription{ID: id, ProducerID: -1, Epoch: -1, State: TxnEmpty}}
		c.byID[id] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	if e.busy {
		e.mu.Unlock()
		return -1, -1, fmt.Errorf("%w: %q is ending its transaction", ErrConcurrentTransactions, id)
	}
	if producerID >= 0 && e.d.ProducerID >= 0 && (producerID != e.d.ProducerID || epoch < e.d.Epoch-1 || epoch > e.d.Epoch) {
		e.mu.Unlock()
		return -1, -1, fmt.Errorf("%w: transactional id %q is producer %d epoch %d", ErrProducerFenced, id, e.d.ProducerID, e.d.Epoch)
	}
	if e.d.State == TxnOngoing {
		// Fence the old incarnation: abort its transaction at the next
		// epoch.
		if err := c.end(e, false, true); err != nil {
			return -1, -1, err // end unlocked e
		}
		e.mu.Lock()
	}
	d := e.d
	oldPID := d.ProducerID
	if d.ProducerID < 0 || d.Epoch >= math.MaxInt16-1 {
		pid, err := h.producerIDs.allocate()
		if err != nil {
			e.mu.Unlock()
			return -1, -1, err
		}
		d.ProducerID, d.Epoch = pid, 0
	} else {
		d.Epoch++
	}
	if d.State != TxnCompleteCommit && d.State != TxnCompleteAbort {
		d.State = TxnEmpty
	}
	d.TimeoutMs, d.StartMs, d.Partitions, d.Groups, d.Offsets = timeout.Milliseconds(), 0, nil, nil, nil
	if err := c.persist(&d, true); err != nil {
		e.mu.Unlock()
		return -1, -1, err
	}
	e.d = d
	e.mu.Unlock()
	c.mu.Lock()
	if oldPID != d.ProducerID {
		delete(c.byPID, oldPID)
		c.byPID[d.ProducerID] = e
	}
	c.mu.Unlock()
	return d.ProducerID, d.Epoch, nil
}

// begin moves e (locked) to Ongoing if it is not; it reports whether it
// changed.
func (c *txnCoordinator) begin(e *txnEntry) error {
	switch e.d.State {
	case TxnOngoing:
		return nil
	case TxnEmpty, TxnCompleteCommit, TxnCompleteAbort:
		e.d.State, e.d.StartMs, e.d.Partitions, e.d.Groups, e.d.Offsets = TxnOngoing, c.now(), nil, nil, nil
		e.checks = 0
		return nil
	}
	return fmt.Errorf("%w: %q is %s", ErrInvalidTxnState, e.d.ID, e.d.State)
}

// AddPartitionsToTxn adds partitions to the producer's open transaction,
// beginning one if none is open. Every partition must exist.
func (h *Hub) AddPartitionsToTxn(id string, pid int64, epoch int16, tps []TopicPartition) error {
	for _, tp := range tps {
		ds, err := h.Dataset(tp.Topic)
		if err == nil {
			_, err = ds.Partition(tp.Partition)
		}
		if err != nil {
			return err
		}
	}
	c := h.txns
	e, err := c.lookup(id, pid, epoch)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	prev := e.d
	prev.Partitions = slices.Clone(prev.Partitions)
	if err := c.begin(e); err != nil {
		return err
	}
	changed := prev.State != e.d.State
	for _, tp := range tps {
		if !slices.Contains(e.d.Partitions, tp) {
			e.d.Partitions = append(e.d.Partitions, tp)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.persist(&e.d, false); err != nil {
		e.d = prev
		return err
	}
	return nil
}

// AddOffsetsToTxn adds a consumer group to the producer's transaction: its
// offsets sent with TxnOffsetCommit are committed with the transaction.
func (h *Hub) AddOffsetsToTxn(id string, pid int64, epoch int16, group string) error {
	if group == "" {
		return ErrInvalidGroupID
	}
	c := h.txns
	e, err := c.lookup(id, pid, epoch)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	prev := e.d
	if err := c.begin(e); err != nil {
		return err
	}
	if slices.Contains(e.d.Groups, group) && prev.State == e.d.State {
		return nil
	}
	if !slices.Contains(e.d.Groups, group) {
		e.d.Groups = append(slices.Clone(e.d.Groups), group)
	}
	if err := c.persist(&e.d, false); err != nil {
		e.d = prev
		return err
	}
	return nil
}

// TxnOffsetCommit stages group offsets in the producer's transaction; they
// are committed with it and dropped if it aborts.
func (h *Hub) TxnOffsetCommit(id string, pid int64, epoch int16, group string, offsets map[TopicPartition]CommittedOffset) error {
	c := h.txns
	e, err := c.lookup(id, pid, epoch)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	if e.d.State != TxnOngoing || !slices.Contains(e.d.Groups, group) {
		return fmt.Errorf("%w: group %q was not added to the transaction of %q", ErrInvalidTxnState, group, id)
	}
	prev := slices.Clone(e.d.Offsets)
	for tp, o := range offsets {
		to := TxnOffset{Group: group, Topic: tp.Topic, Partition: tp.Partition, Offset: o.Offset, Epoch: o.LeaderEpoch, Metadata: o.Metadata}
		i := slices.IndexFunc(e.d.Offsets, func(x TxnOffset) bool {
			return x.Group == group && x.Topic == tp.Topic && x.Partition == tp.Partition
		})
		if i >= 0 {
			e.d.Offsets[i] = to
		} else {
			e.d.Offsets = append(e.d.Offsets, to)
		}
	}
	// Kept with the transaction, so that a restart of the hub does not
	// lose them while it stays open (synced with the decision).
	if err := c.persist(&e.d, false); err != nil {
		e.d.Offsets = prev
		return err
	}
	return nil
}

// EndTxn commits or aborts the producer's transaction. Ending a
// transaction that has just ended the same way is answered as a success
// (a retry).
func (h *Hub) EndTxn(id string, pid int64, epoch int16, commit bool) error {
	c := h.txns
	e, err := c.lookup(id, pid, epoch)
	if err != nil {
		return err
	}
	switch e.d.State {
	case TxnOngoing:
		return c.end(e, commit, false)
	case TxnCompleteCommit:
		if commit {
			e.mu.Unlock()
			return nil
		}
	case TxnCompleteAbort:
		if !commit {
			e.mu.Unlock()
			return nil
		}
	}
	st := e.d.State
	e.mu.Unlock()
	return fmt.Errorf("%w: %q is %s", ErrInvalidTxnState, id, st)
}

// end ends e's open transaction; e is locked and is unlocked on return.
// bump moves to the next epoch first, fencing the producer (a timeout, or
// a new incarnation).
func (c *txnCoordinator) end(e *txnEntry, commit, bump bool) error {
	prev := e.d
	d := e.d
	if bump {
		d.Epoch++
	}
	d.State = TxnPrepareAbort
	if commit {
		d.State = TxnPrepareCommit
	} else {
		d.Offsets = nil
	}
	if err := c.persist(&d, c.syncDecision(&d)); err != nil {
		e.mu.Unlock()
		return err
	}
	e.d, e.busy = d, true
	e.mu.Unlock()
	err := c.complete(e)
	if err != nil {
		e.mu.Lock()
		e.busy = false
		e.d = prev
		e.d.Epoch = d.Epoch
		e.mu.Unlock()
	}
	return err
}

// syncDecision reports whether a commit or abort decision must be synced
// before it is acted on: when a dataset of the transaction syncs every
// write (fsync "always"). Otherwise the decision is as durable as the
// records it decides on: written at once (a crash of the process loses
// nothing), on disk with the next sync.
func (c *txnCoordinator) syncDecision(d *TxnDescription) bool {
	if len(d.Partitions) <= 1 && len(d.Offsets) == 0 {
		// One partition and no offsets: its marker is the decision. A
		// crash before the marker is durable leaves the transaction open
		// in the partition, to be aborted (EndTxn was not answered); after
		// it, nothing is open to abort and the commit stands.
		return false
	}
	for _, tp := range d.Partitions {
		if ds, err := c.h.Dataset(tp.Topic); err == nil && ds.Config().Fsync == "always" {
			return true
		}
	}
	return len(d.Offsets) > 0 // committed offsets are always synced
}

// complete writes the markers of a prepared transaction, applies its
// offsets on commit and records it as complete. Its state must be
// PrepareCommit or PrepareAbort; e is not locked, and busy is set (or the
// hub is opening).
func (c *txnCoordinator) complete(e *txnEntry) error {
	e.mu.Lock()
	d := e.d
	e.mu.Unlock()
	commit := d.State == TxnPrepareCommit
	var errs []error
	for _, tp := range d.Partitions {
		ds, err := c.h.Dataset(tp.Topic)
		if errors.Is(err, ErrUnknownDataset) {
			continue // deleted since: nothing to mark
		}
		var p *Partition
		if err == nil {
			p, err = ds.Partition(tp.Partition)
		}
		if err == nil {
			err = p.WriteMarker(d.ProducerID, d.Epoch, commit)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", tp.Topic, tp.Partition, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hub: writing the markers of transaction %q: %w", d.ID, err)
	}
	if commit && len(d.Offsets) > 0 {
		byGroup := map[string]map[TopicPartition]CommittedOffset{}
		for _, o := range d.Offsets {
			m := byGroup[o.Group]
			if m == nil {
				m = map[TopicPartition]CommittedOffset{}
				byGroup[o.Group] = m
			}
			m[TopicPartition{Topic: o.Topic, Partition: o.Partition}] = CommittedOffset{Offset: o.Offset, LeaderEpoch: o.Epoch,
				Metadata: o.Metadata, CommitTime: c.h.opts.Now()}
		}
		for g, m := range byGroup {
			if err := c.h.offsets.commit(g, m); err != nil {
				return fmt.Errorf("hub: committing the offsets of transaction %q: %w", d.ID, err)
			}
		}
	}
	d.State = TxnCompleteAbort
	if commit {
		d.State = TxnCompleteCommit
	}
	d.Offsets, d.StartMs = nil, 0
	if err := c.persist(&d, false); err != nil {
		return err
	}
	e.mu.Lock()
	e.d, e.busy = d, false
	e.mu.Unlock()
	return nil
}

// checkTxnProduce checks the transactional batches of a produce: their
// producer must have an open transaction holding the partition, at its
// current epoch. p.mu is held (a marker cannot slip in between).
func (p *Partition) checkTxnProduce(hs []codecs.Header) error {
	for i := range hs {
		h := &hs[i]
		if !h.IsTransactional() {
			continue
		}
		c := p.ds.h.txns
		c.mu.Lock()
		e := c.byPID[h.ProducerID]
		c.mu.Unlock()
		if e == nil {
			return fmt.Errorf("%w: producer %d has no transactional id", ErrInvalidTxnState, h.ProducerID)
		}
		e.mu.Lock()
		d := &e.d
		var err error
		switch {
		case h.ProducerEpoch < d.Epoch:
			err = fmt.Errorf("%w: producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, d.Epoch)
		case h.ProducerEpoch > d.Epoch, d.State != TxnOngoing || e.busy,
			!slices.Contains(d.Partitions, TopicPartition{Topic: p.ds.name, Partition: p.id}):
			err = fmt.Errorf("%w: %s/%d is not in an open transaction of producer %d epoch %d", ErrInvalidTxnState, p.ds.name, p.id, h.ProducerID, h.ProducerEpoch)
		}
		e.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// abortExpired aborts, at the next epoch, every transaction open for longer
// than its timeout. It returns how many it aborted.
func (c *txnCoordinator) abortExpired() int {
	now := c.now()
	c.mu.Lock()
	var due []*txnEntry
	for _, e := range c.byID {
		due = append(due, e)
	}
	c.mu.Unlock()
	n := 0
	for _, e := range due {
		e.mu.Lock()
		if e.busy || e.d.State != TxnOngoing || now-e.d.StartMs < e.d.TimeoutMs {
			e.mu.Unlock()
			continue
		}
		id := e.d.ID
		commit := false
		if url := c.h.checkURL(id); url != "" {
			// Check-back: ask the producer's side what became of it.
			d := e.d
			e.checks++
			checks := e.checks
			e.mu.Unlock()
			answer, err := c.checkBack(url, &d, checks)
			e.mu.Lock()
			if e.busy || e.d.State != TxnOngoing || e.d.Epoch != d.Epoch || e.d.ProducerID != d.ProducerID {
				e.mu.Unlock() // ended meanwhile
				continue
			}
			switch {
			case err == nil && answer == "commit":
				commit = true
			case err == nil && answer == "abort":
			case checks < c.h.opts.TxnCheckLimit:
				// unknown, or no answer: ask again after another timeout.
				c.h.opts.Logger.Warn("hub: transaction check-back undecided; asking again later", "transactional_id", id,
					"answer", answer, "err", err, "attempt", checks)
				e.d.StartMs = now
				e.mu.Unlock()
				continue
			default:
				c.h.opts.Logger.Warn("hub: transaction check-back undecided too often; aborting", "transactional_id", id, "attempts", checks)
			}
		}
		if err := c.end(e, commit, true); err != nil {
			c.h.opts.Logger.Error("hub: ending a timed-out transaction failed", "transactional_id", id, "commit", commit, "err", err)
			continue
		}
		c.h.opts.Logger.Info("hub: ended a transaction that passed its timeout", "transactional_id", id, "commit", commit)
		n++
	}
	return n
}

// checkURL is the check-back endpoint for a transactional id: the hub's
// TxnCheckURL when the id starts with TxnCheckPrefix.
func (h *Hub) checkURL(id string) string {
	if h.opts.TxnCheckURL == "" || !strings.HasPrefix(id, h.opts.TxnCheckPrefix) {
		return ""
	}
	return h.opts.TxnCheckURL
}

// checkRequest is what a check-back POSTs: the transaction that timed out.
type checkRequest struct {
	TransactionalID string           `json:"transactional_id"`
	ProducerID      int64            `json:"producer_id"`
	ProducerEpoch   int16            `json:"producer_epoch"`
	StartMs         int64            `json:"start_ms"`
	Partitions      []checkPartition `json:"partitions"`
	Attempt         int              `json:"attempt"`
}

type checkPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

// checkBack POSTs a timed-out transaction to url and returns the answer:
// "commit", "abort" or "unknown", given as the body (plain or JSON
// {"action": ...}).
func (c *txnCoordinator) checkBack(url string, d *TxnDescription, attempt int) (string, error) {
	req := checkRequest{TransactionalID: d.ID, ProducerID: d.ProducerID, ProducerEpoch: d.Epoch, StartMs: d.StartMs, Attempt: attempt}
	for _, tp := range d.Partitions {
		req.Partitions = append(req.Partitions, checkPartition(tp))
	}
	body, _ := json.Marshal(&req)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("hub: transaction check-back: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return "", fmt.Errorf("hub: transaction check-back: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("hub: transaction check-back: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("hub: transaction check-back: %s answered %s", url, resp.Status)
	}
	answer := strings.TrimSpace(string(b))
	var js struct {
		Action string `json:"action"`
	}
	if json.Unmarshal(b, &js) == nil && js.Action != "" {
		answer = js.Action
	}
	switch answer = strings.ToLower(answer); answer {
	case "commit", "abort", "unknown":
		return answer, nil
	}
	return "", fmt.Errorf("hub: transaction check-back: %s answered %q, not commit, abort or unknown", url, answer)
}

// txnChecker aborts timed-out transactions.
func (h *Hub) txnChecker() {
	defer h.bg.Done()
	t := time.NewTicker(h.opts.TxnCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.txns.abortExpired()
		}
	}
}

// AbortExpiredTransactions aborts every transaction past its timeout now;
// the hub also does so every TxnCheckInterval. It returns how many.
func (h *Hub) AbortExpiredTransactions() int { return h.txns.abortExpired() }

// DescribeTransactions returns the state of the given transactional ids;
// unknown ones are absent.
func (h *Hub) DescribeTransactions(ids []string) map[string]TxnDescription {
	out := map[string]TxnDescription{}
	for _, id := range ids {
		h.txns.mu.Lock()
		e := h.txns.byID[id]
		h.txns.mu.Unlock()
		if e != nil {
			e.mu.Lock()
			d := e.d
			d.Partitions = slices.Clone(d.Partitions)
			e.mu.Unlock()
			out[id] = d
		}
	}
	return out
}

// ListTransactions returns every transactional id, sorted.
func (h *Hub) ListTransactions() []TxnDescription {
	h.txns.mu.Lock()
	ids := make([]string, 0, len(h.txns.byID))
	for id := range h.txns.byID {
		ids = append(ids, id)
	}
	h.txns.mu.Unlock()
	sort.Strings(ids)
	m := h.DescribeTransactions(ids)
	out := make([]TxnDescription, 0, len(m))
	for _, id := range ids {
		if d, ok := m[id]; ok {
			out = append(out, d)
		}
	}
	return out
}
