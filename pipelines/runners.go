package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

// --- sources

type sourceRunner struct {
	e           *Engine
	cfg         *SourceConfig
	src         connectors.Source
	stopping    <-chan struct{} // closed when the engine stops its sources
	procs       []namedProc
	dlq         *deadLetters
	log         *slog.Logger
	compression string // of the batches stored; "" for the dataset's
	maxBatch    int    // bytes of one stored record batch: the declared max_message_bytes, or 0
	stats       counters
	ended       atomic.Bool

	recs   []hub.Record          // of one store, reused
	msgs   []*connectors.Message // the messages of recs
	buf    []byte
	keyBuf []byte
	failed []failure
}

func (r *sourceRunner) run(ctx context.Context) error {
	stop := r.stopping
	if stop == nil {
		stop = ctx.Done()
	}
	if ok, err := connect(ctx, r.src, "source "+r.cfg.Name, r.log, stop); !ok {
		return err
	}
	if _, err := r.partitions(ctx); err != nil {
		return err
	}
	for {
		batch, ack, err := r.src.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			if len(batch) == 0 {
				r.ended.Store(true)
				r.log.Info("weir: source ended", "records", r.stats.out.Load())
				return nil
			}
			err = nil
		}
		if ctx.Err() != nil {
			if ack != nil {
				ack(context.WithoutCancel(ctx), ctx.Err())
			}
			return nil
		}
		if err != nil {
			r.stats.failed.Add(1)
			r.log.Error("weir: source read failed; retrying", "err", err)
			if !backoff(int(min(r.stats.failed.Load(), 10)), 100*time.Millisecond, 5*time.Second, ctx.Done()) {
				return nil
			}
			continue
		}
		if len(batch) == 0 {
			if ack != nil {
				ack(ctx, nil)
			}
			continue
		}
		r.stats.addIn(int64(len(batch)))
		if err := r.store(ctx, batch); err != nil {
			if ack != nil {
				ack(context.WithoutCancel(ctx), err)
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ack != nil {
			if err := ack(ctx, nil); err != nil {
				r.log.Warn("weir: source acknowledgement failed", "err", err)
			}
		}
	}
}

func (r *sourceRunner) partitions(ctx context.Context) (int32, error) {
	for attempt := 0; ; attempt++ {
		n, err := r.e.client.Partitions(ctx, r.cfg.To)
		if err == nil {
			return n, nil
		}
		r.log.Error("weir: cannot reach the source's dataset; retrying", "dataset", r.cfg.To, "err", err)
		if !backoff(attempt, 200*time.Millisecond, 10*time.Second, ctx.Done()) {
			return 0, ctx.Err()
		}
	}
}

// store runs the source's processors and writes the batch durably to its
// dataset, failures to its dead-letter dataset. It retries until both are
// stored or ctx ends.
func (r *sourceRunner) store(ctx context.Context, batch []*connectors.Message) error {
	// A source may hand over records it could not read properly (a
	// malformed syslog message) with Err set: they go to the dead-letter
	// dataset with the source's reason.
	failed := r.failed[:0]
	kept := batch[:0]
	for _, m := range batch {
		m.Original = m.Value
		if m.Err != nil {
			failed = append(failed, failure{m: m, stage: "source " + r.cfg.Type, err: m.Err, attempts: 1})
			continue
		}
		kept = append(kept, m)
	}
	nIn, nFailed := len(kept), len(failed)
	good, failed, err := runProcessors(ctx, r.procs, kept, failed)
	settleProcs(r.procs, err == nil)
	if err != nil {
		// A processor failing a whole batch (a rate limit ended by
		// ctx): nothing stored.
		return err
	}
	r.stats.dropped.Add(int64(nIn - len(good) - (len(failed) - nFailed)))
	// The client splits the records into per-partition batches and says
	// what became of each: a record that cannot be stored (too large
	// even alone) goes to the dead-letter dataset, the others are
	// written again until stored (the source is held back meanwhile).
	r.buf, r.keyBuf = r.buf[:0], r.keyBuf[:0]
	r.recs, r.msgs = r.recs[:0], r.msgs[:0]
	for _, m := range good {
		r.buf = m.Sync(r.buf)
		key := m.Key
		if r.cfg.KeyField != "" {
			if v := m.Get(r.cfg.KeyField); v != nil {
				at := len(r.keyBuf)
				r.keyBuf = connectors.AppendText(r.keyBuf, v)
				key = r.keyBuf[at:len(r.keyBuf):len(r.keyBuf)]
			}
		}
		r.recs = append(r.recs, hub.Record{Key: key, Value: m.Value, Headers: m.Headers, Timestamp: m.Time})
		r.msgs = append(r.msgs, m)
	}
	var bytes int64
	var stored int
	opts := hub.ProduceOptions{Compression: r.compression, MaxBatchBytes: r.maxBatch}
	recs, msgs := r.recs, r.msgs
	for attempt := 0; len(recs) > 0; attempt++ {
		rs := r.e.client.Produce(ctx, r.cfg.To, recs, opts)
		var retry error
		kept := 0
		for i := range rs {
			m := msgs[i]
			switch err := rs[i].Err; {
			case err == nil:
				bytes += int64(len(recs[i].Value))
				stored++
				m.Release()
			case hub.RecordAtFault(err):
				// Alone in a batch it would still be refused: a dead
				// letter, not a source held back for ever.
				failed = append(failed, failure{m: m, stage: "source " + r.cfg.Type, attempts: attempt + 1, err: err})
			default:
				retry = err
				recs[kept], msgs[kept] = recs[i], m
				kept++
			}
		}
		recs, msgs = recs[:kept], msgs[:kept]
		if kept == 0 {
			break
		}
		r.stats.failed.Add(1)
		if attempt%10 == 0 {
			r.log.Error("weir: cannot store records; holding the source back", "dataset", r.cfg.To, "records", kept, "err", retry)
		}
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, ctx.Done()) {
			return ctx.Err()
		}
	}
	clear(r.msgs)
	clear(r.recs)
	r.stats.addOut(int64(stored))
	r.stats.bytes.Add(bytes)
	r.failed = failed
	if len(failed) > 0 {
		if err := r.dlq.write(ctx, failed); err != nil {
			return err
		}
		r.stats.dead.Add(int64(len(failed)))
	}
	return nil
}

// --- pipelines

type pipelineRunner struct {
	e     *Engine
	cfg   *PipelineConfig
	procs []namedProc
	sinks []*sinkRunner
	dlq   *deadLetters
	log   *slog.Logger
	stats counters

	// client is what sinks, dead letters and retries write through: the
	// engine's, or txc with processing: exactly_once.
	client hub.Client
	txc    *txnClient
	// ext is the sink whose cluster keeps the transaction and the
	// source positions (exactly_once with a kafka sink), else nil.
	ext      connectors.TxnSink
	consumer hub.Consumer
	polled   atomic.Int64 // polls that returned nothing, since the last records
	inHand   atomic.Int64 // records polled and not yet committed
	// sinkFailed are the records of a poll that some sink failed.
	sinkFailed map[*connectors.Message]struct{}
	msgs       []connectors.Message
	ptrs       []*connectors.Message
	syncBuf    []byte
	failed     []failure
	live       []*connectors.Message
	chunk      []*connectors.Message
	commit     map[hub.TopicPartition]int64
	// With sinks that hold records (connectors.Holder), the offsets the
	// polls delivered (pending) are committed only up to what the
	// holders still hold; committed is what was.
	holders   []connectors.Holder
	pending   map[hub.TopicPartition]int64
	committed map[hub.TopicPartition]int64
	// revoked are the partitions the group took away (onRevoked) since
	// the runner last forgot their pending offsets; the consumer's
	// callback may run in a goroutine of its own (a Kafka client's).
	revokeMu sync.Mutex
	revoked  []hub.TopicPartition
	taps     tapSet // weir tap's samples of what the processors pass on
}

type sinkRunner struct {
	rewind  bool // the sink lost held records (connectors.ErrRedeliver)
	cfg     *SinkConfig
	sink    connectors.Sink
	idx     int
	log     *slog.Logger
	stats   counters
	sub     []*connectors.Message
	fails   []failure
	retries []failure // for a retry dataset (retry mode topics)
	stopped bool      // the last delivery gave up because of a stop

	name string   // pipelines.P.to.S, for the Observer
	obs  Observer // nil: none
}

// caughtUp reports whether the pipeline's last polls found nothing new.
func (p *pipelineRunner) caughtUp() bool { return p.polled.Load() >= 2 }

func (p *pipelineRunner) run(ctx context.Context, stop <-chan struct{}) error {
	if p.txc != nil {
		if !p.startTxn(ctx, stop) {
			return nil
		}
		defer p.txc.tx.Close()
	}
	for _, s := range p.sinks {
		if ok, err := connect(ctx, s.sink, "sink "+s.cfg.Name, s.log, stop); !ok {
			return err
		}
		if h, ok := s.sink.(connectors.Holder); ok {
			p.holders = append(p.holders, h)
		}
	}
	start := hub.StartFrom{Kind: hub.StartEarliest}
	if p.cfg.Start == "latest" {
		start.Kind = hub.StartLatest
	}
	var minBytes, maxBytes int64
	period := time.Duration(0)
	for _, s := range p.sinks {
		minBytes = max(minBytes, s.cfg.Batching.Bytes)
		if period == 0 || s.cfg.Batching.Period < period {
			period = s.cfg.Batching.Period
		}
	}
	// One poll holds what the biggest sink batch wants, plus room for
	// whole batches past it (a fetch returns whole batches, so a limit
	// equal to the minimum would rarely be met): this, not the backlog,
	// bounds the pipeline's memory.
	maxBytes = minBytes + 1<<20
	opts := hub.ConsumeOptions{Datasets: p.cfg.From, Group: p.cfg.Group, Broadcast: p.cfg.Broadcast, Start: start,
		ClientID: "weir-" + p.cfg.Name, MinBytes: int32(min(minBytes, 64<<20)), MaxPollBytes: int32(min(maxBytes, 256<<20)), MaxWait: max(period, time.Millisecond),
		SkipCorrupt: p.cfg.OnCorrupt == OnCorruptDeadLetter, ReadCommitted: p.txc != nil}
	if len(p.holders) > 0 && !p.cfg.Broadcast {
		opts.OnRevoked, opts.OnLost = p.onRevoked, p.onRevoked
	}
	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer cancelPoll()
	go func() {
		select {
		case <-stop:
			cancelPoll()
		case <-pollCtx.Done():
		}
	}()
	var err error
	for attempt := 0; ; attempt++ {
		p.consumer, err = p.e.client.Consume(pollCtx, opts)
		if err == nil {
			break
		}
		p.log.Error("weir: cannot start consuming; retrying", "datasets", p.cfg.From, "err", err)
		if !backoff(attempt, 200*time.Millisecond, 10*time.Second, stop) {
			return nil
		}
	}
	defer func() { p.consumer.Close(context.WithoutCancel(ctx)) }() // the one of the last rewind
	p.commit = map[hub.TopicPartition]int64{}
	p.pending, p.committed = map[hub.TopicPartition]int64{}, map[hub.TopicPartition]int64{}
	defer p.flushHolders(ctx, stop)
	p.sinkFailed = map[*connectors.Message]struct{}{}
	for fails := 0; ; {
		fetches, err := p.consumer.Poll(pollCtx)
		if pollCtx.Err() != nil {
			return nil
		}
		var cbe *hub.CorruptBatchError
		if err != nil && p.cfg.OnCorrupt == OnCorruptDeadLetter && errors.As(err, &cbe) && cbe.Batch.LastOffset >= cbe.Batch.BaseOffset {
			// The consumer has moved past the batch: dead-letter the
			// range, then commit past it.
			if err := p.deadLetterCorrupt(ctx, cbe, stop); err != nil {
				if ctx.Err() != nil || isStopped(stop) {
					return nil
				}
				return err
			}
			continue
		}
		if err != nil {
			fails++
			p.stats.failed.Add(1)
			if corruptData(err) {
				// Retrying cannot read past it: say so plainly. A run
				// that must drain cannot, and fails instead of hanging.
				if fails == 1 || fails%10 == 0 {
					p.log.Error("weir: a dataset holds a corrupt record batch; the pipeline cannot read past it",
						"err", err, "group", p.cfg.Group, "tries", fails, "check", "weir log verify on the partition's directory",
						"to_skip_it", "on_corrupt: dead_letter")
				}
				if p.e.opts.UntilDrained && fails >= 3 {
					return fmt.Errorf("cannot drain: a dataset holds a corrupt record batch: %w", err)
				}
			} else {
				p.log.Error("weir: poll failed; retrying", "err", err)
			}
			if !backoff(min(fails, 10), 100*time.Millisecond, 5*time.Second, stop) {
				return nil
			}
			continue
		}
		fails = 0
		p.noteSkipped()
		if len(fetches) == 0 {
			if s, ok := p.consumer.(settler); ok && !s.Settled() {
				// Not assigned its partitions yet: nothing read is not
				// nothing to read.
				p.polled.Store(0)
			} else {
				p.polled.Add(1)
			}
			p.updateLag()
			if len(p.holders) > 0 && p.txc == nil {
				// Files finished by time release their records.
				p.holdBack()
				if err := p.commitPlain(ctx, stop); err != nil {
					return nil // stopped
				}
			}
			continue
		}
		p.polled.Store(0)
		if err := p.handle(ctx, fetches, stop); errors.Is(err, errRewind) {
			if !p.rewindConsumer(pollCtx, opts, stop) {
				return nil
			}
		} else if err != nil {
			if ctx.Err() != nil || isStopped(stop) {
				return nil // not committed: read again next time
			}
			return err
		}
		p.updateLag()
	}
}

// corruptData reports whether a poll failed on stored bytes that do not
// decode, which no retry can fix.
func corruptData(err error) bool {
	return errors.Is(err, hub.ErrCorruptBatch) || errors.Is(err, codecs.ErrCorrupt)
}

// deadLetterCorrupt sends one record describing a stored batch the
// consumer could not decode to the dead-letter dataset, counts its
// offsets and commits past it (on_corrupt: dead_letter). Records before
// the batch were committed by the polls that returned them.
func (p *pipelineRunner) deadLetterCorrupt(ctx context.Context, cbe *hub.CorruptBatchError, stop <-chan struct{}) error {
	b := cbe.Batch
	n := b.LastOffset - b.BaseOffset + 1
	p.log.Error("weir: a dataset holds a corrupt record batch; its range goes to the dead-letter dataset and the pipeline reads on",
		"dataset", cbe.Dataset, "partition", cbe.Partition, "base_offset", b.BaseOffset, "last_offset", b.LastOffset,
		"offsets", n, "group", p.cfg.Group, "err", cbe, "dead_letter", p.dlq.dataset)
	desc, err := json.Marshal(struct {
		Dataset    string `json:"dataset"`
		Partition  int32  `json:"partition"`
		BaseOffset int64  `json:"base_offset"`
		LastOffset int64  `json:"last_offset"`
		Reason     string `json:"reason"`
	}{cbe.Dataset, cbe.Partition, b.BaseOffset, b.LastOffset, cbe.Error()})
	if err != nil {
		return fmt.Errorf("describing a corrupt batch: %w", err)
	}
	m := &connectors.Message{Value: desc, Time: time.Now(), Dataset: cbe.Dataset, Partition: cbe.Partition, Offset: b.BaseOffset}
	if err := p.dlq.write(ctx, []failure{{m: m, stage: "read", err: cbe, attempts: 1}}); err != nil {
		return err
	}
	p.stats.dead.Add(1)
	p.stats.corrupt.Add(n)
	commit := map[hub.TopicPartition]int64{{Topic: cbe.Dataset, Partition: cbe.Partition}: b.LastOffset + 1}
	for attempt := 0; ; attempt++ {
		var err error
		if p.txc != nil {
			// The dead letter was written in the open transaction.
			if err = p.commitTxn(ctx, commit); err != nil {
				if ferr := p.abortTxn(ctx); ferr != nil {
					return ferr
				}
				if !rebalanced(err) {
					return err // polled again: the consumer meets the batch again
				}
			}
		} else {
			err = p.consumer.Commit(ctx, commit)
		}
		if err == nil || rebalanced(err) {
			// After a rebalance the partition's new owner meets the
			// batch again and dead-letters it again (at least once).
			return nil
		}
		p.log.Error("weir: commit failed; retrying", "err", err)
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, stop) {
			return err
		}
	}
}

func isStopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// settler is a Consumer that can be waiting for the group to assign it
// its partitions (over Kafka, a member joining while a dead one still
// holds them waits for that one's session to expire).
type settler interface {
	Settled() bool
}

// skipReporter is a Consumer that reports the records it jumped over
// because its position fell below a partition's log start.
type skipReporter interface {
	TakeSkipped() map[hub.TopicPartition]int64
}

// noteSkipped logs and counts the records retention deleted before the
// pipeline read them: nothing is skipped in silence.
func (p *pipelineRunner) noteSkipped() {
	sr, ok := p.consumer.(skipReporter)
	if !ok {
		return
	}
	for tp, n := range sr.TakeSkipped() {
		p.stats.skipped.Add(n)
		p.log.Warn("weir: retention deleted records before the pipeline read them; they are skipped",
			"dataset", tp.Topic, "partition", tp.Partition, "group", p.cfg.Group, "records", n)
	}
}

func (p *pipelineRunner) updateLag() {
	lag := p.inHand.Load()
	for _, l := range p.consumer.Lag() {
		lag += l
	}
	p.stats.lag.Store(lag)
}

// handle takes one poll's records through processors and sinks, writes
// failures to the dead-letter dataset and commits. It retries until done,
// or returns the error when ctx ends (nothing committed then).
func (p *pipelineRunner) handle(ctx context.Context, fetches []hub.Fetch, stop <-chan struct{}) error {
	n := 0
	for _, f := range fetches {
		n += len(f.Records)
	}
	if cap(p.msgs) < n {
		p.msgs = make([]connectors.Message, n)
		p.ptrs = make([]*connectors.Message, n)
	}
	msgs, ptrs := p.msgs[:n], p.ptrs[:n]
	p.forgetRevoked()
	clear(p.commit)
	i := 0
	var inBytes int64
	for _, f := range fetches {
		for j := range f.Records {
			r := &f.Records[j]
			msgs[i] = connectors.Message{Key: r.Key, Value: r.Value, Original: r.Value, Headers: r.Headers,
				Time: time.UnixMilli(r.Timestamp), Dataset: f.Dataset, Partition: f.Partition, Offset: r.Offset}
			ptrs[i] = &msgs[i]
			inBytes += int64(len(r.Value))
			i++
		}
		if len(f.Records) > 0 {
			p.commit[hub.TopicPartition{Topic: f.Dataset, Partition: f.Partition}] = f.Records[len(f.Records)-1].Offset + 1
		}
	}
	p.stats.addIn(int64(n))
	// Until committed, the records in hand are lag too: the stats line
	// and the group agree, even while a sink is down.
	p.inHand.Store(int64(n))
	defer p.inHand.Store(0)
	p.updateLag()
	defer func() {
		for _, m := range ptrs {
			m.Release()
		}
	}()
	if !p.waitRetryDue(ptrs, stop) { // a retry pipeline waits until due
		return context.Canceled
	}
	live, err := p.process(ctx, ptrs, stop)
	if err != nil {
		return err
	}
	p.taps.offer(live)
	procFailed := len(p.failed)
	for attempt := 0; ; attempt++ {
		// With exactly_once, a transaction that fails stops the sinks
		// (as a stop would) and the whole poll is written again in the
		// next one.
		var doomed <-chan struct{}
		if p.txc != nil {
			doomed = p.txc.tx.Doomed()
		}
		sinkStop, release := eitherStop(stop, doomed)
		err := p.deliver(ctx, live, procFailed, sinkStop)
		release()
		if errors.Is(err, errRewind) {
			if p.txc != nil {
				if ferr := p.abortTxn(ctx); ferr != nil {
					return ferr
				}
			}
			return err
		}
		if err == nil && len(p.holders) > 0 {
			for tp, next := range p.commit {
				p.pending[tp] = max(p.pending[tp], next)
			}
			if tps := p.forgetRevoked(); len(tps) > 0 {
				// Not with the clients here (they revoke only inside Poll
				// or Close, or while no poll's records are in hand), but
				// should a revocation overlap this delivery, what its
				// records opened is dropped too, and none of it committed.
				p.log.Warn("weir: partitions were revoked while their records were being delivered; what the sinks hold of them is dropped")
				p.releaseHolders(tps)
			}
			p.holdBack()
		}
		switch {
		case err == nil && p.txc == nil:
			err = p.commitPlain(ctx, stop)
		case err == nil:
			if err = p.commitTxn(ctx, p.commit); err != nil {
				if ferr := p.abortTxn(ctx); ferr != nil {
					return ferr
				}
			}
		case p.txc != nil:
			if ferr := p.abortTxn(ctx); ferr != nil {
				return ferr
			}
		}
		if err == nil {
			p.stats.dead.Add(int64(len(p.failed)))
			p.stats.dropped.Add(int64(n - len(live) - procFailed))
			p.stats.addOut(int64(len(live) - len(p.sinkFailed)))
			p.stats.bytes.Add(inBytes)
			return nil
		}
		if ctx.Err() != nil || isStopped(stop) {
			return context.Canceled
		}
		if p.txc == nil {
			return err
		}
		if rebalanced(err) {
			// The partitions moved on: their new owner reads these
			// records again, in a transaction of its own.
			p.log.Info("weir: offsets refused after a rebalance; the transaction is aborted and the records redelivered", "err", err)
			return nil
		}
		p.stats.failed.Add(1)
		p.log.Warn("weir: the transaction failed and was aborted; writing the records again", "err", err, "tries", attempt+1)
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, stop) {
			return context.Canceled
		}
	}
}

// deliver writes the processed records to every sink at once (each
// retries on its own), their retries to the retry datasets and the
// failures to the dead-letter dataset. It returns context.Canceled when
// stop closed before all was written.
func (p *pipelineRunner) deliver(ctx context.Context, live []*connectors.Message, procFailed int, stop <-chan struct{}) error {
	p.failed = p.failed[:procFailed]
	var wg sync.WaitGroup
	for _, s := range p.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deliver(ctx, live, stop)
		}()
	}
	wg.Wait()
	for _, s := range p.sinks {
		if s.rewind {
			return errRewind
		}
	}
	if ctx.Err() != nil || isStopped(stop) && p.undelivered() {
		return context.Canceled
	}
	clear(p.sinkFailed)
	for _, s := range p.sinks {
		if err := p.sendRetries(ctx, s, stop); err != nil {
			return err
		}
	}
	for _, s := range p.sinks {
		p.failed = append(p.failed, s.fails...)
		for _, f := range s.fails {
			p.sinkFailed[f.m] = struct{}{}
		}
	}
	dlqStop := stop // a transaction that failed stops the write
	if p.txc == nil {
		dlqStop = nil // dead letters are written until ctx ends
	}
	return p.dlq.writeUntil(ctx, p.failed, dlqStop)
}

// errRewind says a Holder sink lost records it held: the poll is not
// committed and the consumer starts again from the committed offsets.
var errRewind = errors.New("pipelines: a sink lost records it held; reading again from the committed offsets")

// holdBack sets p.commit to what may be committed with Holder sinks: for
// every partition delivered so far (p.pending), the offset after its last
// record delivered, or the lowest offset a holder still holds if that is
// lower; only what moved forward since the last commit.
func (p *pipelineRunner) holdBack() {
	clear(p.commit)
	if len(p.pending) > 0 {
		// Partitions that moved to another member are theirs to commit.
		owned := map[hub.TopicPartition]bool{}
		for _, tp := range p.consumer.Assignment() {
			owned[tp] = true
		}
		for tp := range p.pending {
			if !owned[tp] {
				delete(p.pending, tp)
				delete(p.committed, tp)
			}
		}
	}
	for tp, next := range p.pending {
		p.commit[tp] = next
	}
	for _, h := range p.holders {
		h.Held(func(dataset string, partition int32, offset int64) {
			tp := hub.TopicPartition{Topic: dataset, Partition: partition}
			if next, ok := p.commit[tp]; ok && offset < next {
				p.commit[tp] = offset
			}
		})
	}
	// A revocation that ran meanwhile (from another goroutine) may have
	// dropped held records after Held's look, or before: either way
	// nothing of those partitions is committed.
	p.forgetRevoked()
	for tp, next := range p.commit {
		if done, ok := p.committed[tp]; ok && next <= done {
			delete(p.commit, tp)
		}
	}
}

// onRevoked is the consumer's OnRevoked and OnLost with Holder sinks:
// before the partitions move to another member, the holders drop what they hold of
// them (connectors.Releaser) and the runner forgets their offsets
// delivered but not committed, so that the new owner reads those records
// again from the committed offsets and nobody publishes them twice. The
// in-process consumer calls it from Poll or Close, in the runner's
// goroutine; the Kafka client from its own goroutine, but only while a
// Poll has allowed the rebalance (no records in hand, hence no Write in
// progress) or from Close. The runner may be committing meanwhile:
// revoked is noted before the holders drop anything, and holdBack reads
// it after Held, so a commit never covers dropped records.
func (p *pipelineRunner) onRevoked(_ context.Context, tps []hub.TopicPartition) {
	p.revokeMu.Lock()
	p.revoked = append(p.revoked, tps...)
	p.revokeMu.Unlock()
	p.releaseHolders(tps)
}

func (p *pipelineRunner) releaseHolders(tps []hub.TopicPartition) {
	for _, h := range p.holders {
		if r, ok := h.(connectors.Releaser); ok {
			r.Release(tps)
		}
	}
}

// forgetRevoked forgets the pending and committed offsets, and the
// commit, of the partitions revoked since the last call, and returns
// them.
func (p *pipelineRunner) forgetRevoked() []hub.TopicPartition {
	p.revokeMu.Lock()
	tps := p.revoked
	p.revoked = nil
	p.revokeMu.Unlock()
	for _, tp := range tps {
		delete(p.pending, tp)
		delete(p.committed, tp)
		delete(p.commit, tp)
	}
	return tps
}

// noteCommitted records p.commit as committed (with Holder sinks).
func (p *pipelineRunner) noteCommitted() {
	for tp, next := range p.commit {
		p.committed[tp] = next
	}
}

// rewindConsumer starts consuming again from the committed offsets,
// after a Holder lost records. It returns false when stopped.
func (p *pipelineRunner) rewindConsumer(ctx context.Context, opts hub.ConsumeOptions, stop <-chan struct{}) bool {
	p.log.Warn("weir: a sink lost records it held (see its error); reading again from the committed offsets")
	p.consumer.Close(context.WithoutCancel(ctx))
	clear(p.pending)
	clear(p.committed)
	clear(p.commit)
	for attempt := 0; ; attempt++ {
		c, err := p.e.client.Consume(ctx, opts)
		if err == nil {
			p.consumer = c
			return true
		}
		p.log.Error("weir: cannot start consuming again; retrying", "datasets", p.cfg.From, "err", err)
		if !backoff(attempt, 200*time.Millisecond, 10*time.Second, stop) || ctx.Err() != nil {
			return false // the deferred Close closes the old one again
		}
	}
}

// flushHolders, on a graceful stop, makes what Holder sinks hold durable
// and commits every offset delivered (with processing: exactly_once the
// held offsets are read again next time instead).
func (p *pipelineRunner) flushHolders(ctx context.Context, stop <-chan struct{}) {
	if len(p.holders) == 0 || ctx.Err() != nil || p.txc != nil || !isStopped(stop) {
		return
	}
	for _, h := range p.holders {
		if err := h.Flush(ctx); err != nil {
			p.log.Error("weir: a sink could not finish what it held; its records will be read again next time", "err", err)
			return
		}
	}
	p.holdBack()
	if err := p.commitPlain(ctx, stop); err != nil {
		p.log.Error("weir: final commit failed; records will be read again next time", "err", err)
	}
}

// commitPlain commits the poll's offsets (at least once), retrying until
// it succeeds, the partitions moved to another member, or stop closes.
func (p *pipelineRunner) commitPlain(ctx context.Context, stop <-chan struct{}) error {
	if len(p.holders) > 0 && len(p.commit) == 0 {
		return nil // nothing released since the last commit
	}
	for attempt := 0; ; attempt++ {
		err := p.consumer.Commit(ctx, p.commit)
		if err == nil {
			p.noteCommitted()
			return nil
		}
		if rebalanced(err) {
			// The partitions moved on: their new owner reads these
			// records again (at least once).
			p.log.Info("weir: commit refused after a rebalance; records will be redelivered", "err", err)
			return nil
		}
		p.log.Error("weir: commit failed; retrying", "err", err)
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, stop) {
			return err
		}
	}
}

// processChunk is how many records go through the processors at a time:
// their parsed forms stay small enough for the CPU caches, and each chunk
// is written back to bytes (Sync) and its parsed memory released before
// the next.
const processChunk = 256

// process runs the processors over the poll's records, chunk by chunk,
// retrying the whole poll if a processor fails it. It returns the records
// that go on to the sinks; failures are left in p.failed.
func (p *pipelineRunner) process(ctx context.Context, ptrs []*connectors.Message, stop <-chan struct{}) ([]*connectors.Message, error) {
	for attempt := 0; ; attempt++ {
		p.live, p.failed, p.syncBuf = p.live[:0], p.failed[:0], p.syncBuf[:0]
		var err error
		for start := 0; start < len(ptrs) && err == nil; start += processChunk {
			chunk := append(p.chunk[:0], ptrs[start:min(start+processChunk, len(ptrs))]...)
			for _, m := range chunk {
				// Processors see a fresh record on every attempt.
				m.Release()
				m.Value, m.Err, m.Routes = m.Original, nil, 0
			}
			var out []*connectors.Message
			out, p.failed, err = runProcessors(ctx, p.procs, chunk, p.failed)
			if err != nil {
				break
			}
			// Write edits back to bytes, into one buffer for the poll: a
			// buffer that grows reallocates, and earlier records keep
			// pointing at the old array, which stays valid.
			for _, m := range out {
				p.syncBuf = m.Sync(p.syncBuf)
				m.Release()
			}
			p.live = append(p.live, out...)
			p.chunk = chunk
		}
		settleProcs(p.procs, err == nil)
		if err == nil {
			return p.live, nil
		}
		p.stats.failed.Add(1)
		p.log.Error("weir: processing failed; retrying the batch", "err", err)
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, stop) {
			return nil, err
		}
	}
}

// undelivered reports whether a sink gave up because of the stop.
func (p *pipelineRunner) undelivered() bool {
	for _, s := range p.sinks {
		if s.stopped {
			return true
		}
	}
	return false
}

// deliver writes the messages routed to the sink, in chunks of its
// batching, retrying as its retry policy says. Messages that fail for good
// are left in s.fails.
func (s *sinkRunner) deliver(ctx context.Context, msgs []*connectors.Message, stop <-chan struct{}) {
	s.fails, s.retries, s.stopped, s.rewind = s.fails[:0], s.retries[:0], false, false
	s.sub = s.sub[:0]
	bit := uint64(1) << s.idx
	for _, m := range msgs {
		if m.Routes == 0 || m.Routes&bit != 0 {
			s.sub = append(s.sub, m)
		}
	}
	s.stats.addIn(int64(len(s.sub)))
	for start := 0; start < len(s.sub); {
		end, size := start, int64(0)
		for end < len(s.sub) && (end == start || (end-start < s.cfg.Batching.Count && size+int64(len(s.sub[end].Value)) <= s.cfg.Batching.Bytes)) {
			size += int64(len(s.sub[end].Value))
			end++
		}
		if !s.writeChunk(ctx, s.sub[start:end], stop) {
			s.stopped = true
			return
		}
		if s.rewind {
			return // all is delivered again
		}
		s.stats.bytes.Add(size)
		start = end
	}
}

// writeChunk writes one chunk, retrying transient failures with capped
// exponential backoff: without limit by default, holding the pipeline
// back, or up to retry.attempts tries. Permanent failures go to s.fails at
// once, and so do transient ones past retry.attempts. It returns false
// when it gave up because of the stop.
func (s *sinkRunner) writeChunk(ctx context.Context, chunk []*connectors.Message, stop <-chan struct{}) bool {
	pending := chunk
	retry := s.cfg.Retry
	topics := retry.Mode == "topics" // transient failures go to a retry dataset
	attempt := 0                     // counted against retry.Attempts (0: no limit)
	for wait := 0; ; wait++ {
		attempt++
		start := time.Now()
		err := s.sink.Write(ctx, pending)
		if s.obs != nil {
			oldest := pending[0].Time
			for _, m := range pending[1:] {
				if m.Time.Before(oldest) {
					oldest = m.Time
				}
			}
			s.obs.SinkWrite(s.name, len(pending), oldest, time.Since(start), err)
		}
		if err == nil {
			s.stats.addOut(int64(len(pending)))
			return true
		}
		s.stats.failed.Add(1)
		if errors.Is(err, connectors.ErrRedeliver) {
			s.log.Error("weir: sink lost records it held; the pipeline reads them again", "err", err)
			s.rewind = true
			return true
		}
		exhausted := retry.Attempts > 0 && attempt >= retry.Attempts
		var again []*connectors.Message
		var we *connectors.WriteError
		switch {
		case errors.As(err, &we):
			failed := 0
			for _, f := range we.Failures {
				if f.Index < 0 || f.Index >= len(pending) {
					continue
				}
				failed++
				if f.Retryable && !errors.Is(f.Err, connectors.ErrPermanent) && !exhausted {
					if topics {
						s.later(pending[f.Index], f.Err)
					} else {
						again = append(again, pending[f.Index])
					}
					continue
				}
				s.fail(pending[f.Index], f.Err, attempt)
			}
			s.stats.addOut(int64(len(pending) - failed))
			if len(again) > 0 && wait%5 == 0 {
				s.log.Warn("weir: sink refused records for now; retrying them", "records", len(again), "tries", wait+1, "first_err", err)
			}
		case errors.Is(err, connectors.ErrPermanent):
			for _, m := range pending {
				s.fail(m, err, attempt)
			}
		case errors.Is(err, connectors.ErrUnavailable):
			// An unreachable sink never runs out of attempts: the
			// pipeline waits, nothing is committed or dropped.
			if wait%5 == 0 {
				s.log.Error("weir: sink unavailable; holding the pipeline back", "err", err, "tries", wait+1)
			}
			attempt--
			again = pending
		case exhausted:
			for _, m := range pending {
				s.fail(m, err, attempt)
			}
			s.log.Warn("weir: sink write failed for good; records go to the dead-letter dataset", "records", len(pending), "attempts", attempt, "err", err)
		case topics:
			for _, m := range pending {
				s.later(m, err)
			}
		default:
			if wait%5 == 0 {
				s.log.Warn("weir: sink write failed; holding the pipeline back and retrying", "records", len(pending), "tries", wait+1, "err", err)
			}
			again = pending
		}
		if len(again) == 0 {
			return true
		}
		s.stats.retried.Add(int64(len(again)))
		pending = again
		if !backoff(wait, retry.Backoff, retry.MaxBackoff, stop) {
			return false
		}
	}
}

// fail leaves m to the dead-letter dataset with err.
func (s *sinkRunner) fail(m *connectors.Message, err error, attempts int) {
	s.fails = append(s.fails, failure{m: m, stage: "sink " + s.cfg.Name, err: err, attempts: attempts})
	s.stats.dead.Add(1)
}
