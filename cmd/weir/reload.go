package main

// Reload of a running `weir run`: the file runs as one engine per source
// and per pipeline over one hub, so that a reload (SIGHUP, POST /-/reload)
// drains and restarts only the ones whose configuration changed and leaves
// the others running. An invalid new file is refused with its problems and
// the old configuration keeps running.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/hub"
	whttp "github.com/weirhub/weir/hub/http"
	"github.com/weirhub/weir/pipelines"
)

// engineView is what the command, the metrics and weir tap need of a
// running pipeline file: one engine, or a reloadable set of them.
type engineView interface {
	Hub() *hub.Hub
	Stats() []pipelines.Stats
	SourceLags() map[string]int64
	Tap(point string, buffer int) (*pipelines.Tap, error)
	TapPoints() []string
}

var (
	_ engineView = (*pipelines.Engine)(nil)
	_ engineView = (*runSet)(nil)
)

// runner is a running pipeline file.
type runner interface {
	engineView
	Run(ctx context.Context) error
	MemoryBudget() int64
}

// newRunner runs a file as one engine with --until-drained (a batch run
// has nothing to reload), else as a reloadable set of engines.
func newRunner(path string, cfg *pipelines.Config, opts pipelines.Options, obs hub.Observer) (runner, error) {
	if opts.UntilDrained {
		// A batch run has nothing to reload: SIGHUP stops it gracefully,
		// as SIGTERM does (see runSignals).
		return pipelines.New(cfg, opts)
	}
	return newRunSet(path, cfg, opts, obs)
}

// runSignals are the signals that stop weir run gracefully: with
// --until-drained SIGHUP too; otherwise SIGHUP reloads the file.
func runSignals(untilDrained bool) []os.Signal {
	if untilDrained {
		return stopSignals
	}
	return []os.Signal{syscall.SIGINT, syscall.SIGTERM}
}

// runUnit is one source or pipeline running in its own engine.
type runUnit struct {
	key    string // sources.NAME or pipelines.NAME
	fp     string // its configuration, for comparison on reload
	e      *pipelines.Engine
	cancel context.CancelFunc
	done   chan error
}

// runSet runs a pipeline file as reloadable units.
type runSet struct {
	path   string
	opts   pipelines.Options
	logger *slog.Logger
	hub    *hub.Hub // owned: opened for the file's embedded hub
	shared string   // fingerprint of hub:, the hub section (a change needs a restart)
	common string   // fingerprint of datasets: (a change restarts every unit)

	mu     sync.Mutex
	cfg    *pipelines.Config // what runs
	fps    map[string]string
	units  []*runUnit // sources first, in the file's order
	failed chan error // a unit's Run failed
	reload chan chan error
}

// MemoryBudget sums the budgets of the units running now.
func (s *runSet) MemoryBudget() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, u := range s.units {
		n += u.e.MemoryBudget()
	}
	return n
}

// embeddedHubOptions are the options of the hub a pipeline file (read
// from path) runs on when its hub: section names no external cluster.
func embeddedHubOptions(path string, cfg *pipelines.Config, opts pipelines.Options, obs hub.Observer) (hub.Options, error) {
	ho, err := cfg.HubOptions(opts.Logger)
	if err != nil {
		return ho, fmt.Errorf("%s: %w", path, err)
	}
	ho.Observer = obs
	return ho, nil
}

// newRunSet builds every unit of cfg (read from path) with opts.
func newRunSet(path string, cfg *pipelines.Config, opts pipelines.Options, obs hub.Observer) (*runSet, error) {
	shared, common, fps, err := fingerprints(path)
	if err != nil {
		return nil, err
	}
	s := &runSet{path: path, opts: opts, logger: opts.Logger, shared: shared, common: common,
		failed: make(chan error, 1), reload: make(chan chan error)}
	if !cfg.Hub.External() {
		ho, err := embeddedHubOptions(path, cfg, opts, obs)
		if err != nil {
			return nil, err
		}
		h, err := hub.Open(ho)
		if err != nil {
			return nil, fmt.Errorf("opening the hub in %s: %w", cfg.Hub.DataDir, err)
		}
		s.hub = h
		s.opts.Hub = h
	}
	units, err := s.build(cfg, common, fps, nil)
	if err != nil {
		if s.hub != nil {
			s.hub.Close()
		}
		return nil, err
	}
	s.units, s.cfg, s.fps = units, cfg, fps
	return s, nil
}

// unitKeys lists a file's units, sources first, in the file's order.
func unitKeys(cfg *pipelines.Config) []string {
	var keys []string
	for _, sc := range cfg.Sources {
		keys = append(keys, "sources."+sc.Name)
	}
	for _, pc := range cfg.Pipelines {
		keys = append(keys, "pipelines."+pc.Name)
	}
	return keys
}

// subConfig is cfg with only the unit key: every dataset, one source or
// one pipeline.
func subConfig(cfg *pipelines.Config, key string) *pipelines.Config {
	c := *cfg
	c.Sources, c.Pipelines, c.Tests = nil, nil, nil
	kind, name, _ := strings.Cut(key, ".")
	if kind == "sources" {
		for _, sc := range cfg.Sources {
			if sc.Name == name {
				c.Sources = append(c.Sources, sc)
			}
		}
	} else {
		for _, pc := range cfg.Pipelines {
			if pc.Name == name {
				c.Pipelines = append(c.Pipelines, pc)
			}
		}
	}
	return &c
}

// build creates an engine for each unit of cfg not in keep.
func (s *runSet) build(cfg *pipelines.Config, common string, fps map[string]string, keep map[string]*runUnit) ([]*runUnit, error) {
	var out []*runUnit
	for _, key := range unitKeys(cfg) {
		if u := keep[key]; u != nil {
			out = append(out, u)
			continue
		}
		e, err := pipelines.New(subConfig(cfg, key), s.opts)
		if err != nil {
			for _, u := range out {
				if keep[u.key] == nil {
					closeUnbuilt(u.e)
				}
			}
			return nil, err
		}
		out = append(out, &runUnit{key: key, fp: common + fps[key], e: e})
	}
	return out, nil
}

// closeRunner stops a runner that never ran: its components and the hub
// it opened are closed.
func closeRunner(r runner) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
}

// closeUnbuilt closes the components of an engine that never ran.
func closeUnbuilt(e *pipelines.Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Run(ctx)
}

func (s *runSet) start(u *runUnit) {
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan error, 1)
	go func() {
		err := u.e.Run(ctx)
		u.done <- err
		if err != nil && ctx.Err() == nil {
			select {
			case s.failed <- fmt.Errorf("%s: %w", u.key, err):
			default:
			}
		}
	}()
}

// stop drains a unit and waits for it.
func (s *runSet) stop(u *runUnit) error {
	u.cancel()
	return <-u.done
}

// Run runs every unit until ctx ends or one fails, reloading on SIGHUP
// and on Reload; then it stops the sources, then the pipelines, and closes
// the hub.
func (s *runSet) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s.mu.Lock()
	for _, u := range s.units {
		s.start(u)
	}
	s.mu.Unlock()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-s.failed:
			break loop
		case <-hup:
			if err := s.doReload(); err != nil {
				s.logger.Error("weir: reload refused; the running configuration keeps running", "file", s.path, "err", err)
			}
		case reply := <-s.reload:
			reply <- s.doReload()
		}
	}
	s.mu.Lock()
	units := slices.Clone(s.units)
	s.mu.Unlock()
	s.logger.Info("weir: stopping: sources first, then pipelines finish their batches")
	for _, u := range units { // sources come first
		if err := s.stop(u); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = fmt.Errorf("%s: %w", u.key, err)
		}
	}
	if s.hub != nil {
		if err := s.hub.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("closing the hub: %w", err)
		}
	}
	return runErr
}

// Reload asks the running set to re-read its file; it returns what the
// reload did not accept.
func (s *runSet) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.reload <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// doReload re-reads the file: changed and removed units are drained and
// stopped, changed and new ones built and started; the rest run on.
func (s *runSet) doReload() error {
	cfg, err := load(s.path)
	if err != nil {
		return err
	}
	shared, common, fps, err := fingerprints(s.path)
	if err != nil {
		return err
	}
	if shared != s.shared {
		return fmt.Errorf("%s: the hub section changed; that needs a restart of weir run", s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]*runUnit{}
	var stopped, kept []string
	wanted := map[string]bool{}
	for _, k := range unitKeys(cfg) {
		wanted[k] = true
	}
	for _, u := range s.units {
		if wanted[u.key] && u.fp == common+fps[u.key] {
			keep[u.key] = u
			kept = append(kept, u.key)
		}
	}
	// The file passed lint and checks; changed units are stopped before
	// their new selves are built, as a source with state (a file tail's
	// checkpoints) must not run twice.
	for _, u := range s.units {
		if keep[u.key] == nil {
			if err := s.stop(u); err != nil && !errors.Is(err, context.Canceled) {
				s.logger.Warn("weir: a unit stopped for reload with an error", "unit", u.key, "err", err)
			}
			stopped = append(stopped, u.key)
		}
	}
	units, err := s.build(cfg, common, fps, keep)
	if err != nil {
		// Put the old configuration back.
		old, oerr := s.build(s.cfg, s.common, s.fps, keep)
		if oerr != nil {
			return fmt.Errorf("%w; and restarting the old configuration failed too: %v", err, oerr)
		}
		for _, u := range old {
			if keep[u.key] == nil {
				s.start(u)
			}
		}
		s.units = old
		return err
	}
	var started []string
	for _, u := range units {
		if keep[u.key] == nil {
			s.start(u)
			started = append(started, u.key)
		}
	}
	s.units, s.common, s.cfg, s.fps = units, common, cfg, fps
	s.logger.Info("weir: reloaded", "file", s.path, "stopped", strings.Join(stopped, ","),
		"started", strings.Join(started, ","), "unchanged", strings.Join(kept, ","))
	return nil
}

// fingerprints reads the file's sections as canonical YAML: hub (which
// cannot change without a restart), datasets (whose change restarts every
// unit), and each source and pipeline.
func fingerprints(path string) (shared, common string, units map[string]string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", "", nil, fmt.Errorf("%s: %w", path, err)
	}
	units = map[string]string{}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", "", units, nil
	}
	canon := func(n *yaml.Node) string {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.Encode(n)
		enc.Close()
		return buf.String()
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i].Value, top.Content[i+1]
		switch k {
		case "hub":
			shared = canon(v)
		case "datasets":
			common = canon(v)
		case "sources", "pipelines":
			if v.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				units[k+"."+v.Content[j].Value] = canon(v.Content[j+1])
			}
		}
	}
	return shared, common, units, nil
}

func (s *runSet) Hub() *hub.Hub { return s.hub }

func (s *runSet) snapshot() []*runUnit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.units)
}

// Stats returns every unit's component counters; a restarted unit's
// counters start again from zero.
func (s *runSet) Stats() []pipelines.Stats {
	var out []pipelines.Stats
	for _, u := range s.snapshot() {
		out = append(out, u.e.Stats()...)
	}
	return out
}

func (s *runSet) SourceLags() map[string]int64 {
	out := map[string]int64{}
	for _, u := range s.snapshot() {
		for k, v := range u.e.SourceLags() {
			out[k] = v
		}
	}
	return out
}

func (s *runSet) TapPoints() []string {
	var out []string
	for _, u := range s.snapshot() {
		out = append(out, u.e.TapPoints()...)
	}
	return out
}

func (s *runSet) Tap(point string, buffer int) (*pipelines.Tap, error) {
	for _, u := range s.snapshot() {
		if t, err := u.e.Tap(point, buffer); err == nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("pipelines: nothing to tap at %q (taps: %s)", point, strings.Join(s.TapPoints(), ", "))
}

// mountReload adds POST /-/reload when the view reloads.
func mountReload(srv *whttp.Server, v engineView) {
	rs, ok := v.(*runSet)
	if !ok {
		return
	}
	srv.Handle("POST /-/reload", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := rs.Reload(r.Context()); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprintf(w, "reload refused; the running configuration keeps running:\n%v\n", err)
			return
		}
		fmt.Fprintln(w, "reloaded")
	}))
}
