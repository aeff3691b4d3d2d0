package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/weirhub/weir/pipelines"
	_ "github.com/weirhub/weir/sinks"
	_ "github.com/weirhub/weir/sources"
)

// profileEnv names a directory where Weir's side writes a CPU profile
// (the -profile flag).
const profileEnv = "SHIPBENCH_PROFILE"

// runWeir is the Weir side of a comparison, in a child process: it runs
// the pipeline file at path with the engine `weir run` uses, until the
// sink named sink has delivered want records, and reports from the
// engine's start to that moment. The file source tails for ever, so the
// run cannot end by itself (--until-drained waits for finite sources);
// the engine is then stopped gracefully, outside the measurement.
func runWeir(name, path, sink string, want, bytes int64, stall time.Duration) {
	cfg, err := pipelines.LoadFile(path, pipelines.LoadOptions{})
	check(err)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := pipelines.New(cfg, pipelines.Options{Logger: logger})
	check(err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if dir := os.Getenv(profileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, strings.NewReplacer(" ", "", ">", "", "/", "_").Replace(name)+".pprof"))
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	m := startMeter()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	var out, dead, failed, last int64
	lastMove := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for out < want {
		select {
		case err := <-done:
			check(fmt.Errorf("%s: the engine stopped after %d of %d records: %v", name, out, want, err))
		case <-tick.C:
		}
		out, dead, failed = 0, 0, 0
		for _, s := range e.Stats() {
			if strings.HasSuffix(s.Name, ".to."+sink) {
				out, failed = s.Out, s.Failed
			}
			dead += s.Dead
		}
		if dead > 0 {
			check(fmt.Errorf("%s: %d records went to a dead-letter dataset", name, dead))
		}
		if out != last {
			last, lastMove = out, time.Now()
		} else if time.Since(lastMove) > stall {
			check(fmt.Errorf("%s: no progress for %v at %d of %d records (%d failed writes); stats %+v", name, stall, out, want, failed, e.Stats()))
		}
	}
	r := m.stop(name, out, bytes)
	pprof.StopCPUProfile()
	if failed > 0 {
		r.Note = fmt.Sprintf("%d failed writes, retried", failed)
	}
	cancel()
	if err := <-done; err != nil {
		check(fmt.Errorf("%s: stopping the engine: %w", name, err))
	}
	report(r)
}
