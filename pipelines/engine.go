package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/hub/kafkaclient"
)

// Options tune an Engine. Zero fields take the defaults their comments
// state.
type Options struct {
	// Registry of components. Default connectors.Default.
	Registry *connectors.Registry
	// Logger receives the engine's events. Default: discard.
	Logger *slog.Logger
	// Hub is an open embedded hub to run against; the engine neither
	// opens nor closes one then. Default: open the file's hub.data_dir.
	Hub *hub.Hub
	// Client reaches the hub; default an in-process client for an
	// embedded hub, a Kafka client for hub.kafka.
	Client hub.Client
	// UntilDrained makes Run return once every finite source has ended
	// and every pipeline has caught up with its datasets.
	UntilDrained bool
	// DrainTimeout bounds how long Run waits for in-flight work when it
	// stops. Default 30s.
	DrainTimeout time.Duration
	// Observer, if set, is told of every sink write, for metrics.
	// Default none.
	Observer Observer
}

// Observer is told of what the engine does, for metrics; an adapter to a
// metrics library implements it (cmd/weir has the Prometheus one). Its
// methods are called from every pipeline's goroutines at once and must be
// quick.
type Observer interface {
	// SinkWrite reports one Write call of a sink (component
	// "pipelines.P.to.S") of records records that took took; err is
	// what it returned (it may be retried). oldest is the earliest
	// timestamp of the records written: now minus oldest is the
	// end-to-end delay of the write's oldest record.
	SinkWrite(component string, records int, oldest time.Time, took time.Duration, err error)
}

// Engine runs a pipeline file: its sources ingesting into datasets and its
// pipelines fanning datasets out to sinks.
type Engine struct {
	cfg    *Config
	opts   Options
	hub    *hub.Hub
	ownHub bool
	client hub.Client

	sources   []*sourceRunner
	pipelines []*pipelineRunner
}

// New builds every component of cfg, opening the embedded hub (and
// creating the declared datasets) unless opts give a hub or client.
func New(cfg *Config, opts Options) (*Engine, error) {
	if opts.Registry == nil {
		opts.Registry = connectors.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	e := &Engine{cfg: cfg, opts: opts, hub: opts.Hub, client: opts.Client}
	if e.client == nil {
		if cfg.Hub.External() {
			kc, err := kafkaclient.New(kafkaclient.Options{Conn: *cfg.Hub.Kafka, Logger: opts.Logger})
			if err != nil {
				return nil, err
			}
			e.client = kc
		} else {
			if e.hub == nil {
				ho, err := cfg.HubOptions(opts.Logger)
				if err != nil {
					return nil, err
				}
				h, err := hub.Open(ho)
				if err != nil {
					return nil, fmt.Errorf("opening the hub in %s: %w", cfg.Hub.DataDir, err)
				}
				e.hub, e.ownHub = h, true
			}
			e.client = hub.NewLocalClient(e.hub)
		}
	}
	if err := e.ensureDatasets(); err != nil {
		e.closeHub()
		return nil, err
	}
	if err := e.build(); err != nil {
		e.closeHub()
		return nil, err
	}
	return e, nil
}

// HubOptions are the options of the embedded hub that cfg's hub: section
// describes when it names no external cluster: data_dir, auto_create,
// fsync, cold_store (opened here) and cold_upload_rate, and the http:
// section's subscribe_buffer, subscribe_procs and subscribe_nice. New opens its hub with them when
// Options.Hub is nil; a caller that opens the hub itself should too, so
// that no key of the file is ignored.
func (cfg *Config) HubOptions(logger *slog.Logger) (hub.Options, error) {
	ho := hub.Options{DataDir: cfg.Hub.DataDir, DisableAutoCreate: !cfg.Hub.AutoCreate,
		Defaults: hub.DatasetConfig{Fsync: cfg.Hub.Fsync}, Logger: logger, SubscribeBuffer: cfg.HTTP.SubscribeBuffer,
		SubscribeProcs: cfg.HTTP.SubscribeProcs, SubscribeNice: cfg.HTTP.SubscribeNice,
		ColdUploadBytesPerSecond: cfg.Hub.ColdUploadRate}
	if cfg.Hub.ColdStore != "" {
		cs, err := hub.OpenColdStore(cfg.Hub.ColdStore)
		if err != nil {
			return ho, fmt.Errorf("hub.cold_store: %w", err)
		}
		ho.ColdStore = cs
	}
	return ho, nil
}

// Hub is the embedded hub, or nil when running against a cluster.
func (e *Engine) Hub() *hub.Hub { return e.hub }

func (e *Engine) closeHub() {
	if e.ownHub {
		e.hub.Close()
	}
	if kc, ok := e.client.(*kafkaclient.Client); ok {
		kc.Close()
	}
}

// ensureDatasets creates the declared datasets that do not exist.
func (e *Engine) ensureDatasets() error {
	for _, d := range e.cfg.Datasets {
		if e.hub == nil {
			kc, ok := e.client.(*kafkaclient.Client)
			if !ok {
				continue
			}
			if err := kc.EnsureTopic(context.Background(), d.topic()); err != nil {
				return err
			}
			continue
		}
		cfg := hub.DatasetConfig{Partitions: d.Partitions, Fsync: d.Fsync, RetentionTime: d.RetentionTime,
			RetentionBytes: d.RetentionBytes, SegmentBytes: d.SegmentBytes, MaxMessageBytes: int(d.MaxMessage), Compression: d.Compression,
			CleanupPolicy: d.CleanupPolicy, DeleteRetention: d.DeleteRetention, MinCleanableRatio: d.MinCleanableRatio,
			RemoteStorage: d.RemoteStorage, LocalRetentionTime: d.LocalRetentionTime, LocalRetentionBytes: d.LocalRetentionBytes}

		if _, err := e.hub.Dataset(d.Name); err == nil {
			if d.Implicit {
				continue
			}
			// The file's settings apply to the existing dataset: the safe
			// ones at once, the others reported.
			changed, refused, err := e.hub.UpdateDataset(d.Name, cfg)
			if err != nil {
				return fmt.Errorf("%s:%d:%d: dataset %s: applying its settings: %w", e.cfg.File, d.pos.line, d.pos.col, d.Name, err)
			}
			if len(changed) > 0 {
				e.opts.Logger.Info("weir: dataset settings changed to the file's", "dataset", d.Name, "changes", changed)
			}
			for _, r := range refused {
				e.opts.Logger.Warn("weir: dataset setting not applied", "dataset", d.Name, "at", fmt.Sprintf("%s:%d:%d", e.cfg.File, d.pos.line, d.pos.col), "why", r)
			}
			continue
		}
		if _, err := e.hub.CreateDataset(d.Name, cfg); err != nil && !errors.Is(err, hub.ErrDatasetExists) {
			return fmt.Errorf("creating dataset %s: %w", d.Name, err)
		}
	}
	return nil
}

func (e *Engine) dataset(name string) *DatasetConfig {
	for _, d := range e.cfg.Datasets {
		if d.Name == name {
			return d
		}
	}
	return &DatasetConfig{Name: name, Partitions: 1, Compression: "producer"}
}

// deadValueLimit is the most bytes of a dead letter's value in dataset:
// its max_message_bytes (Kafka's 1 MiB by default) less room for the key
// and the headers.
func (e *Engine) deadValueLimit(dataset string) int {
	limit := int(e.dataset(dataset).MaxMessage)
	if limit <= 0 {
		limit = 1 << 20
	}
	return max(limit-64<<10, limit/2)
}

// maxRecordBytes is the largest value that surely fits a record batch of
// maxBatch bytes alone: less the batch header (61 bytes), the record's
// own framing, and room for a key and headers.
func maxRecordBytes(maxBatch int) int {
	return max(maxBatch-61-64-4<<10, maxBatch/2)
}

func (e *Engine) stateDir(kind, name string) string {
	base := e.cfg.Hub.DataDir
	if e.hub != nil {
		base = e.hub.DataDir()
	}
	if base == "" {
		base = "./data"
	}
	return filepath.Join(base, "state", kind, name)
}

// build constructs processors, sinks and sources.
func (e *Engine) build() error {
	var errs Errors
	fail := func(p pos, err error) {
		var ce connectors.ConfigError
		if errors.As(err, &ce) {
			errs = append(errs, Error{File: e.cfg.File, Line: ce.Line, Column: ce.Column, Msg: ce.Msg})
			return
		}
		errs = append(errs, Error{File: e.cfg.File, Line: p.line, Column: p.col, Msg: err.Error()})
	}
	for _, pc := range withRetryPipelines(e.cfg.Pipelines) {
		pr := &pipelineRunner{e: e, cfg: pc, log: e.opts.Logger.With("pipeline", pc.Name), client: e.client}
		if pc.Processing == ProcessingExactlyOnce {
			if _, ok := e.client.(hub.Transactor); !ok {
				fail(pc.pos, fmt.Errorf("pipeline %s: processing: exactly_once needs a hub client with transactions", pc.Name))
				continue
			}
			pr.txc = &txnClient{Client: e.client}
			pr.client = pr.txc
		}
		var names []string
		for _, sc := range pc.To {
			names = append(names, sc.Name)
		}
		for i, proc := range pc.Processors {
			p, err := e.opts.Registry.NewProcessor(proc.Type, proc.Conf, connectors.Resources{Client: e.client,
				Logger: pr.log.With("processor", proc.Type), Name: fmt.Sprintf("pipelines.%s.processors[%d]", pc.Name, i), Sinks: names})
			if err != nil {
				fail(proc.pos, fmt.Errorf("processor %s: %w", proc.Type, err))
				continue
			}
			pr.procs = append(pr.procs, namedProc{proc.Type, p, &procCounters{}})
		}
		for i, sc := range pc.To {
			name := fmt.Sprintf("pipelines.%s.to.%s", pc.Name, sc.Name)
			s, err := e.opts.Registry.NewSink(sc.Type, sc.Component, connectors.Resources{Client: pr.client,
				Logger: pr.log.With("sink", sc.Name), Name: name, StateDir: e.stateDir("sinks", pc.Name+"."+sc.Name), Sinks: names})
			if err != nil {
				fail(sc.pos, fmt.Errorf("sink %s: %w", sc.Name, err))
				continue
			}
			pr.sinks = append(pr.sinks, &sinkRunner{cfg: sc, sink: s, idx: i, log: pr.log.With("sink", sc.Name), name: name, obs: e.opts.Observer})
		}
		if pr.txc != nil {
			for _, sr := range pr.sinks {
				if ts, ok := sr.sink.(connectors.TxnSink); ok {
					// The sink's cluster keeps the transaction (lint lets
					// it be the only sink); dead letters go to the hub.
					pr.ext, pr.client = ts, e.client
				}
			}
			if pr.ext != nil && e.hub == nil {
				fail(pc.pos, fmt.Errorf("pipeline %s: processing: exactly_once with a kafka sink needs the in-process hub (hub.data_dir), not hub.kafka", pc.Name))
				continue
			}
		}
		pr.dlq = &deadLetters{client: pr.client, dataset: pc.DeadLetter, origin: "pipeline " + pc.Name, log: pr.log,
			maxValue: e.deadValueLimit(pc.DeadLetter)}
		e.pipelines = append(e.pipelines, pr)
	}
	for _, sc := range e.cfg.Sources {
		sr := &sourceRunner{e: e, cfg: sc, log: e.opts.Logger.With("source", sc.Name)}
		for i, proc := range sc.Processors {
			p, err := e.opts.Registry.NewProcessor(proc.Type, proc.Conf, connectors.Resources{Client: e.client,
				Logger: sr.log.With("processor", proc.Type), Name: fmt.Sprintf("sources.%s.processors[%d]", sc.Name, i)})
			if err != nil {
				fail(proc.pos, fmt.Errorf("processor %s: %w", proc.Type, err))
				continue
			}
			sr.procs = append(sr.procs, namedProc{proc.Type, p, &procCounters{}})
		}
		maxBatch := int(e.dataset(sc.To).MaxMessage)
		if maxBatch <= 0 {
			// Kafka's default, which an external cluster likely has too.
			maxBatch = 1 << 20
		}
		src, err := e.opts.Registry.NewSource(sc.Type, sc.Component, connectors.Resources{Client: e.client,
			Logger: sr.log, Name: "sources." + sc.Name, StateDir: e.stateDir("sources", sc.Name),
			MaxRecordBytes: maxRecordBytes(maxBatch)})
		if err != nil {
			fail(sc.pos, fmt.Errorf("source %s: %w", sc.Name, err))
			continue
		}
		sr.src = src
		if c := e.dataset(sc.To).Compression; c != "producer" {
			sr.compression = c // else the dataset's own, lz4 where it keeps the producer's
		}
		sr.maxBatch = int(e.dataset(sc.To).MaxMessage) // 0: the dataset's own
		sr.dlq = &deadLetters{client: e.client, dataset: sc.DeadLetter, origin: "source " + sc.Name, log: sr.log,
			maxValue: e.deadValueLimit(sc.DeadLetter)}
		e.sources = append(e.sources, sr)
	}
	if len(errs) > 0 {
		e.closeComponents(context.Background())
		return errs
	}
	return nil
}

func (e *Engine) closeComponents(ctx context.Context) {
	for _, s := range e.sources {
		if s.src != nil {
			s.src.Close(ctx)
		}
	}
	for _, p := range e.pipelines {
		for _, s := range p.sinks {
			s.sink.Close(ctx)
		}
	}
}

// MemoryBudget is the memory the engine's configuration bounds: each
// pipeline's poll (its largest sink batch plus 1 MiB, as Run sizes it)
// and the budgets its sinks declare (connectors.Budgeter); 0 when no sink
// declares one, since then most of the memory is not bounded by a
// setting. It leaves out what no setting bounds (code, the hub's
// indexes, goroutines).
func (e *Engine) MemoryBudget() int64 {
	var n int64
	declared := false
	for _, p := range e.pipelines {
		var batch int64
		for _, s := range p.sinks {
			batch = max(batch, s.cfg.Batching.Bytes)
			if b, ok := s.sink.(connectors.Budgeter); ok {
				n += b.MemoryBudget()
				declared = true
			}
		}
		n += batch + 1<<20
	}
	if !declared {
		return 0
	}
	return n
}

// Run runs the sources and pipelines until ctx ends (or, with
// UntilDrained, until all is drained), then stops them gracefully:
// sources first, so that what they read is stored and acknowledged, then
// pipelines, which finish the batch in hand and commit it. Nothing
// acknowledged is lost: what was not committed is read again next time.
func (e *Engine) Run(ctx context.Context) error {
	defer e.closeHub()
	srcCtx, stopSources := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSources()
	stopPipelines := make(chan struct{})
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var pipeWG, srcWG sync.WaitGroup
	errs := make(chan error, len(e.sources)+len(e.pipelines))
	for _, p := range e.pipelines {
		pipeWG.Add(1)
		go func() {
			defer pipeWG.Done()
			if err := p.run(workCtx, stopPipelines); err != nil {
				errs <- fmt.Errorf("pipeline %s: %w", p.cfg.Name, err)
			}
		}()
	}
	// Sources whose input cannot be read again drain on a stop rather
	// than being cancelled; drainCtx ends them if that takes too long.
	drainCtx, stopDraining := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDraining()
	for _, s := range e.sources {
		srcWG.Add(1)
		runCtx := srcCtx
		if _, ok := s.src.(connectors.Drainer); ok {
			runCtx = drainCtx
		}
		s.stopping = srcCtx.Done()
		go func() {
			defer srcWG.Done()
			if err := s.run(runCtx); err != nil {
				errs <- fmt.Errorf("source %s: %w", s.cfg.Name, err)
			}
		}()
	}
	var runErr error
	drained := make(chan struct{})
	if e.opts.UntilDrained {
		go e.watchDrain(ctx, drained)
	}
	select {
	case <-ctx.Done():
	case <-drained:
	case runErr = <-errs:
	}
	e.opts.Logger.Info("weir: stopping: sources first, then pipelines finish their batches")
	stopSources()
	for _, s := range e.sources {
		if d, ok := s.src.(connectors.Drainer); ok {
			d.Drain()
		}
	}
	srcDone := make(chan struct{})
	go func() { srcWG.Wait(); close(srcDone) }()
	select {
	case <-srcDone:
	case <-time.After(e.opts.DrainTimeout):
		e.opts.Logger.Warn("weir: sources did not drain in time; what they still held is lost", "timeout", e.opts.DrainTimeout)
		stopDraining()
		<-srcDone
	}
	close(stopPipelines)
	done := make(chan struct{})
	go func() { pipeWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.opts.DrainTimeout):
		e.opts.Logger.Warn("weir: pipelines did not finish in time; their uncommitted records will be read again", "timeout", e.opts.DrainTimeout)
		cancelWork()
		<-done
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), e.opts.DrainTimeout)
	defer cancel()
	e.closeComponents(closeCtx)
	select {
	case err := <-errs:
		if runErr == nil {
			runErr = err
		}
	default:
	}
	return runErr
}

// watchDrain closes drained once every finite source has ended and no
// pipeline has anything left to read.
func (e *Engine) watchDrain(ctx context.Context, drained chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		all := true
		for _, s := range e.sources {
			if !s.ended.Load() {
				all = false
			}
		}
		for _, p := range e.pipelines {
			if p.stats.lag.Load() != 0 || !p.caughtUp() {
				all = false
			}
		}
		if all {
			idle++
		} else {
			idle = 0
		}
		if idle >= 3 {
			close(drained)
			return
		}
	}
}

// --- stats

// Stats are one component's counters. Each record is counted once in
// Out, Dropped or Dead (a pipeline's record once per sink that failed it
// in Dead).
type Stats struct {
	Name    string // sources.web, pipelines.archive, pipelines.archive.to.file, pipelines.archive.processors[0].filter
	In      int64  // records received
	Out     int64  // records passed on: stored (sources), delivered (sinks), delivered to every sink (pipelines)
	Dropped int64  // records a processor left out on purpose (a filter)
	Dead    int64  // records sent to the dead-letter dataset
	Retried int64  // records written again after a transient failure
	Failed  int64  // failed reads, writes, polls and commits (each retried)
	Skipped int64  // records deleted by retention before the pipeline read them (pipelines)
	// Corrupt is the offsets of stored batches that could not be decoded,
	// dead-lettered as one record per batch (pipelines with on_corrupt:
	// dead_letter): with In, Dropped and Skipped it accounts for every
	// offset the group committed past.
	Corrupt int64
	Bytes   int64 // bytes passed on
	Lag     int64 // records in the hub not yet committed: the group's lag (pipelines)
	// Flowing is the time records flowed: from the first record received
	// to the last passed on, idle time before and after left out. Out
	// divided by it is the component's rate.
	Flowing time.Duration
}

type counters struct {
	in, out, dropped, dead, retried, failed, skipped, corrupt, bytes, lag atomic.Int64
	firstIn, lastOut                                                      atomic.Int64 // unix nanoseconds
}

// addIn counts n records received.
func (c *counters) addIn(n int64) {
	c.in.Add(n)
	if n > 0 && c.firstIn.Load() == 0 {
		c.firstIn.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// addOut counts n records passed on.
func (c *counters) addOut(n int64) {
	c.out.Add(n)
	if n > 0 {
		c.lastOut.Store(time.Now().UnixNano())
	}
}

func (c *counters) snapshot(name string) Stats {
	s := Stats{Name: name, In: c.in.Load(), Out: c.out.Load(), Dropped: c.dropped.Load(), Dead: c.dead.Load(),
		Retried: c.retried.Load(), Failed: c.failed.Load(), Skipped: c.skipped.Load(), Corrupt: c.corrupt.Load(), Bytes: c.bytes.Load(), Lag: c.lag.Load()}
	if first, last := c.firstIn.Load(), c.lastOut.Load(); first > 0 && last > first {
		s.Flowing = time.Duration(last - first)
	}
	return s
}

// Stats returns every component's counters: sources, pipelines and their
// sinks. It is safe to call while Run runs.
func (e *Engine) Stats() []Stats {
	var out []Stats
	procs := func(prefix string, ps []namedProc) {
		for i, p := range ps {
			out = append(out, p.stats.snapshot(fmt.Sprintf("%s.processors[%d].%s", prefix, i, p.name)))
		}
	}
	for _, s := range e.sources {
		out = append(out, s.stats.snapshot("sources."+s.cfg.Name))
		procs("sources."+s.cfg.Name, s.procs)
	}
	for _, p := range e.pipelines {
		out = append(out, p.stats.snapshot("pipelines."+p.cfg.Name))
		procs("pipelines."+p.cfg.Name, p.procs)
		for _, s := range p.sinks {
			out = append(out, s.stats.snapshot("pipelines."+p.cfg.Name+".to."+s.cfg.Name))
		}
	}
	return out
}

// --- shared pieces

type namedProc struct {
	name string
	connectors.Processor
	stats *procCounters // In, Out, Dropped, Dead of this processor
}

// runProcessors passes a batch through processors; messages that fail are
// taken out into failed, with the stage that failed them. Each
// processor's counts wait in its pending counters until settleProcs keeps
// them (the attempt stands) or forgets them (the batch is retried), so a
// record is counted once.
func runProcessors(ctx context.Context, procs []namedProc, batch []*connectors.Message, failed []failure) ([]*connectors.Message, []failure, error) {
	for _, p := range procs {
		in := len(batch)
		out, err := p.Process(ctx, batch)
		if err != nil {
			return nil, failed, fmt.Errorf("processor %s: %w", p.name, err)
		}
		kept := out[:0]
		dead := 0
		for _, m := range out {
			if m.Err != nil {
				failed = append(failed, failure{m: m, stage: "processor " + p.name, err: m.Err, attempts: 1})
				dead++
				continue
			}
			kept = append(kept, m)
		}
		batch = kept
		if p.stats != nil {
			p.stats.pending[0] += int64(in)
			p.stats.pending[1] += int64(len(kept))
			p.stats.pending[2] += int64(max(in-len(out), 0))
			p.stats.pending[3] += int64(dead)
		}
	}
	return batch, failed, nil
}

// procCounters are a processor's counters, with what the attempt in
// progress counted (pending: in, out, dropped, dead) until it stands.
type procCounters struct {
	counters
	pending [4]int64
}

// settleProcs adds what the attempt counted (keep) or forgets it.
func settleProcs(procs []namedProc, keep bool) {
	for _, p := range procs {
		if p.stats == nil {
			continue
		}
		if keep {
			p.stats.addIn(p.stats.pending[0])
			p.stats.addOut(p.stats.pending[1])
			p.stats.dropped.Add(p.stats.pending[2])
			p.stats.dead.Add(p.stats.pending[3])
		}
		p.stats.pending = [4]int64{}
	}
}

type failure struct {
	m        *connectors.Message
	stage    string
	err      error
	attempts int
}

// backoff sleeps before retry n (from 0) with exponential growth and
// jitter; it returns false if done closes first.
func backoff(n int, base, maxWait time.Duration, done <-chan struct{}) bool {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 10 * time.Second
	}
	d := base << min(n, 20)
	if d > maxWait || d <= 0 {
		d = maxWait
	}
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // jitter: [d/2, d]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// deadLetters writes failed records to a dead-letter dataset, with
// headers that say why.
type deadLetters struct {
	client  hub.Client
	dataset string
	origin  string
	log     *slog.Logger
	recs    []hub.Record
	// maxValue is the most bytes of a dead letter's value: a longer one
	// is cut (weir.truncated: true), so that a record refused for its
	// size can still be dead-lettered.
	maxValue int
}

// Header names on dead letters.
const (
	HeaderError    = "weir.error"
	HeaderStage    = "weir.stage"
	HeaderAttempts = "weir.attempts"
	HeaderSource   = "weir.source"
	HeaderOrigin   = "weir.origin"
	HeaderFailedAt = "weir.failed_at"
	// HeaderTruncated marks a dead letter whose value was cut to fit the
	// dead-letter dataset; weir.error gives the original size.
	HeaderTruncated = "weir.truncated"
)

// write stores the failures durably, retrying until it succeeds or ctx
// ends.
func (d *deadLetters) write(ctx context.Context, fs []failure) error {
	return d.writeUntil(ctx, fs, nil)
}

// writeUntil is write that also gives up when stop closes (nil: never),
// returning context.Canceled.
func (d *deadLetters) writeUntil(ctx context.Context, fs []failure, stop <-chan struct{}) error {
	if len(fs) == 0 {
		return nil
	}
	d.recs = d.recs[:0]
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	for _, f := range fs {
		m := f.m
		value := m.Original
		if value == nil {
			value = m.Value
		}
		hs := append([]codecs.RecordHeader(nil), m.Headers...)
		reason := f.err.Error()
		if d.maxValue > 0 && len(value) > d.maxValue {
			reason = fmt.Sprintf("%s (the value, %d bytes, is cut to its first %d here)", reason, len(value), d.maxValue)
			value = value[:d.maxValue]
			hs = append(hs, codecs.RecordHeader{Key: []byte(HeaderTruncated), Value: []byte("true")})
		}
		hs = append(hs,
			codecs.RecordHeader{Key: []byte(HeaderError), Value: []byte(reason)},
			codecs.RecordHeader{Key: []byte(HeaderStage), Value: []byte(f.stage)},
			codecs.RecordHeader{Key: []byte(HeaderAttempts), Value: fmt.Appendf(nil, "%d", f.attempts)},
			codecs.RecordHeader{Key: []byte(HeaderOrigin), Value: []byte(d.origin)},
			codecs.RecordHeader{Key: []byte(HeaderFailedAt), Value: now})
		if m.Dataset != "" {
			hs = append(hs, codecs.RecordHeader{Key: []byte(HeaderSource), Value: []byte(m.Origin())})
		}
		d.recs = append(d.recs, hub.Record{Key: m.Key, Value: value, Headers: hs, Timestamp: m.Time})
	}
	recs := d.recs
	for attempt := 0; ; attempt++ {
		// Only the records not stored yet are written again.
		rs := d.client.Produce(ctx, d.dataset, recs, hub.ProduceOptions{})
		err := rs.FirstErr()
		kept := recs[:0]
		for i := range rs {
			if rs[i].Err != nil {
				kept = append(kept, recs[i])
			}
		}
		recs = kept
		if err == nil {
			d.log.Warn("weir: records sent to the dead-letter dataset", "dataset", d.dataset, "records", len(fs),
				"first_reason", fs[0].err.Error(), "stage", fs[0].stage)
			return nil
		}
		if attempt%10 == 0 {
			d.log.Error("weir: cannot write to the dead-letter dataset; holding back", "dataset", d.dataset, "err", err)
		}
		done := stop
		if done == nil {
			done = ctx.Done()
		}
		if !backoff(attempt, 100*time.Millisecond, 5*time.Second, done) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return context.Canceled
		}
	}
}

// connect retries a component's Connect until it succeeds or done
// closes; a permanent error (a listener that cannot bind) it returns at
// once, failing the run.
func connect(ctx context.Context, c any, what string, log *slog.Logger, done <-chan struct{}) (bool, error) {
	cn, ok := c.(connectors.Connector)
	if !ok {
		return true, nil
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cn.Connect(cctx)
		cancel()
		if err == nil {
			if attempt > 0 {
				log.Info("weir: connected", "component", what)
			}
			return true, nil
		}
		if errors.Is(err, connectors.ErrPermanent) {
			return false, fmt.Errorf("cannot start: %w", err)
		}
		if attempt%5 == 0 {
			log.Error("weir: cannot connect; retrying", "component", what, "err", err)
		}
		if !backoff(attempt, 200*time.Millisecond, 10*time.Second, done) {
			return false, nil
		}
	}
}
