package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/pipelines"
)

// load reads and checks a pipeline file: structure and processors (their
// expressions, patterns and routes), every problem in one pass.
func load(path string) (*pipelines.Config, error) {
	cfg, err := pipelines.LoadFile(path, pipelines.LoadOptions{})
	if err != nil {
		var es pipelines.Errors
		if errors.As(err, &es) {
			return nil, &exitError{code: 1, err: fmt.Errorf("%s has %d problem(s):\n%w", path, len(es), err)}
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return cfg, nil
}

func newRunCmd() *cobra.Command {
	var untilDrained, showSummary bool
	var statsEvery time.Duration
	var logLevel, cpuProfile, memProfile, httpListen, memLimit string
	var subscribeBuffer, subscribeCoalesce string
	var subscribeProcs, subscribeNice int
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a pipeline file: its sources, datasets and pipelines",
		Long: `Runs the sources and pipelines of FILE against the embedded hub in hub.data_dir
(or an external cluster with hub.kafka), printing a throughput line every few seconds.
Only records go to stdout (the stdout sink): logs, throughput lines and the summary go
to stderr, so "weir run p.yaml | jq" works. The summary table is printed at exit with
--summary, and always at the end of --until-drained runs.
A file with problems is refused, with every problem listed as file:line:col.
SIGTERM or SIGINT stops it gracefully: sources stop, pipelines finish and commit the
batch in hand; anything not committed is read again on the next start.
SIGHUP (or POST /-/reload on --http-listen) re-reads FILE: the sources and pipelines whose
configuration changed are drained and restarted, the others keep running; a file with
problems is refused with them listed, and the running configuration goes on. With
--until-drained there is nothing to reload: SIGHUP stops it gracefully, as SIGTERM does.`,
		Example: `  weir run examples/quickstart.yaml
  weir run pipeline.yaml --until-drained     # exit once finite sources are done and all is delivered`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load(args[0])
			if err != nil {
				return err
			}
			if err := subscribeFlags(cmd.Flags(), cfg, subscribeBuffer, subscribeCoalesce); err != nil {
				return err
			}
			if err := subscribeCPUFlags(cmd.Flags(), cfg, subscribeProcs, subscribeNice); err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				pprof.StartCPUProfile(f)
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			if memProfile != "" {
				f, err := os.Create(memProfile)
				if err != nil {
					return err
				}
				defer func() { pprof.Lookup("allocs").WriteTo(f, 0); f.Close() }()
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormatOf(cmd))
			if err != nil {
				return err
			}
			if httpListen == "" {
				httpListen = cfg.HTTP.Listen
			}
			front := newRunFront(httpListen, cfg.HTTP)
			e, err := newRunner(args[0], cfg, pipelines.Options{Logger: logger, UntilDrained: untilDrained, Observer: front.pipelineObserver()}, front.hubObserver())
			if err != nil {
				return err
			}
			limit, err := memoryLimit(memLimit, os.Getenv("GOMEMLIMIT") != "", e.MemoryBudget())
			if err != nil {
				closeRunner(e)
				return err
			}
			if limit > 0 {
				debug.SetMemoryLimit(limit)
				logger.Debug("weir: soft memory limit", "bytes", limit)
			}
			ctx, stop := stopContextOn(cmd.Context(), runSignals(untilDrained)...)
			defer stop()
			front.attach(e)
			if cfg.Hub.Listen != "" && e.Hub() != nil {
				srv := kafka.NewServer(e.Hub(), kafka.Options{Advertise: cfg.Hub.Advertise, Logger: logger, Observer: front.observer()})
				ln, err := srv.Listen(cfg.Hub.Listen)
				if err != nil {
					return err
				}
				go srv.Serve(ln)
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					srv.Shutdown(sctx)
				}()
				logger.Info("weir: serving Kafka clients too", "listen", ln.Addr().String())
				front.kafkaServing(srv)
			}
			if err := front.start(e, logger); err != nil {
				closeRunner(e)
				return err
			}
			defer front.stop()
			var wg sync.WaitGroup
			statsDone := make(chan struct{})
			if statsEvery > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					printStats(cmd.ErrOrStderr(), e, statsEvery, statsDone)
				}()
			}
			front.setRunning(true)
			runErr := e.Run(ctx)
			front.setRunning(false)
			close(statsDone)
			wg.Wait()
			stats := e.Stats()
			if showSummary || untilDrained {
				summary(cmd.ErrOrStderr(), stats)
			}
			if runErr == nil && untilDrained {
				runErr = drainedErr(stats)
			}
			return runErr
		},
	}
	cmd.Flags().BoolVar(&untilDrained, "until-drained", false, "exit once every finite source has ended and every pipeline has caught up; exit 1 if records were lost to retention on the way")
	cmd.Flags().BoolVar(&showSummary, "summary", false, "print a table of every component's counters on stderr at exit (always with --until-drained)")
	cmd.Flags().DurationVar(&statsEvery, "stats-every", 2*time.Second, "print a throughput line this often (0: never)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&httpListen, "http-listen", "", "serve /metrics, /healthz, /readyz and, with the embedded hub, dataset subscriptions (GET /v1/datasets/NAME/subscribe) on this address (a bare port binds 127.0.0.1; default: the file's http.listen)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the run to this file")
	addSubscribeFlags(cmd.Flags(), &subscribeBuffer, &subscribeCoalesce)
	addSubscribeCPUFlags(cmd.Flags(), &subscribeProcs, &subscribeNice)
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a Go allocation profile of the run to this file at its end")
	cmd.Flags().StringVar(&memLimit, "memory-limit", "auto", "soft memory limit of the process (Go's GOMEMLIMIT): a size such as 256MiB, none, or auto: when "+
		"some component's memory is bounded by its configuration (the parquet sink's memory_bytes), those budgets plus each pipeline's poll plus 16MiB, unless GOMEMLIMIT is set; "+
		"the garbage collector then works harder near the limit instead of letting the heap double (it is soft: a process that needs more still gets it)")
	return cmd
}

// subscribeFlags puts --subscribe-buffer and --subscribe-coalesce, when
// given, over the file's http.subscribe_buffer and subscribe_coalesce.
func subscribeFlags(f *pflag.FlagSet, cfg *pipelines.Config, buffer, coalesce string) error {
	var err error
	if f.Changed("subscribe-buffer") {
		if cfg.HTTP.SubscribeBuffer, err = parseSubscribeSize("--subscribe-buffer", buffer); err != nil {
			return err
		}
	}
	if f.Changed("subscribe-coalesce") {
		cfg.HTTP.SubscribeCoalesce, err = parseSubscribeSize("--subscribe-coalesce", coalesce)
	}
	return err
}

// subscribeCPUFlags puts --subscribe-procs and --subscribe-nice, when
// given, over the file's http.subscribe_procs and subscribe_nice, checked
// as serve checks them.
func subscribeCPUFlags(f *pflag.FlagSet, cfg *pipelines.Config, procs, nice int) error {
	if f.Changed("subscribe-procs") {
		p, _, err := httpConfig{SubscribeProcs: procs}.subscribeCPU()
		if err != nil {
			return err
		}
		cfg.HTTP.SubscribeProcs = p
	}
	if f.Changed("subscribe-nice") {
		_, n, err := httpConfig{SubscribeNice: &nice}.subscribeCPU()
		if err != nil {
			return err
		}
		cfg.HTTP.SubscribeNice = n
	}
	return nil
}

// memBase is what auto adds to the configured budgets for the rest of
// the process (the hub, buffers no setting bounds).
const memBase = 16 << 20

// memoryLimit is the soft memory limit of --memory-limit (0: none): see
// the flag's help. envSet says GOMEMLIMIT is set; budget is the runner's.
// Without a limit the heap grows to twice what is live before a
// collection, which for the parquet sink's row groups is most of the
// process's peak RSS.
func memoryLimit(flag string, envSet bool, budget int64) (int64, error) {
	switch flag {
	case "auto":
		if envSet || budget == 0 {
			return 0, nil
		}
		return budget + memBase, nil
	case "none", "0":
		return 0, nil
	}
	n, err := humanize.ParseBytes(flag)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a size such as 256MiB, none or auto", flag)
	}
	return int64(n), nil
}

// printStats prints one throughput line per interval: records per second
// in and out of each source and pipeline, dead letters and lag.
func printStats(w io.Writer, e engineView, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := map[string]pipelines.Stats{}
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		now := time.Now()
		secs := now.Sub(last).Seconds()
		last = now
		var parts []string
		for _, s := range e.Stats() {
			p := prev[s.Name]
			prev[s.Name] = s
			if strings.Count(s.Name, ".") > 1 {
				continue // sinks: in the summary
			}
			rate := float64(s.Out-p.Out) / secs
			part := fmt.Sprintf("%s %s rec/s %s/s", s.Name, humanize.SIWithDigits(rate, 1, ""), humanize.Bytes(uint64(float64(s.Bytes-p.Bytes)/secs)))
			if s.Dropped > 0 {
				part += fmt.Sprintf(" dropped %d", s.Dropped)
			}
			if s.Dead > 0 {
				part += fmt.Sprintf(" dead %d", s.Dead)
			}
			if s.Retried > 0 {
				part += fmt.Sprintf(" retried %d", s.Retried)
			}
			if s.Skipped > 0 {
				part += fmt.Sprintf(" SKIPPED %d", s.Skipped)
			}
			if s.Corrupt > 0 {
				part += fmt.Sprintf(" CORRUPT %d", s.Corrupt)
			}
			if strings.HasPrefix(s.Name, "pipelines.") {
				part += fmt.Sprintf(" lag %d", s.Lag)
			}
			parts = append(parts, part)
		}
		fmt.Fprintf(w, "%s  %s\n", now.Format("15:04:05"), strings.Join(parts, " | "))
	}
}

// summary prints every component's counters. RECORDS/S is over the time
// records flowed through the component, not the life of the process.
func summary(w io.Writer, stats []pipelines.Stats) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "COMPONENT\tIN\tOUT\tDROPPED\tDEAD\tRETRIED\tSKIPPED\tBYTES\tRECORDS/S\t\n")
	for _, s := range stats {
		rate := "-"
		if s.Flowing > 0 {
			rate = fmt.Sprintf("%.0f", float64(s.Out)/s.Flowing.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", s.Name, s.In, s.Out, s.Dropped, s.Dead, s.Retried, s.Skipped,
			humanize.IBytes(uint64(s.Bytes)), rate)
	}
	tw.Flush()
	fmt.Fprintln(w, "OUT: stored or delivered; DROPPED: left out by a processor; DEAD: sent to the dead-letter dataset;")
	fmt.Fprintln(w, "RETRIED: written again after a transient failure; SKIPPED: deleted by retention before the pipeline read them.")
	for _, s := range stats {
		if s.Corrupt > 0 { // only pipelines with on_corrupt: dead_letter
			fmt.Fprintf(w, "%s: %d offsets of corrupt record batches went to the dead-letter dataset, one record per batch (counted in DEAD)\n", s.Name, s.Corrupt)
		}
	}
}

// drainedErr is the error of an --until-drained run that lost records to
// retention on the way: it did not drain what it was given.
func drainedErr(stats []pipelines.Stats) error {
	var msgs []string
	for _, s := range stats {
		if s.Skipped > 0 { // only pipelines skip
			msgs = append(msgs, fmt.Sprintf("%s: %d records were deleted by retention before it read them", s.Name, s.Skipped))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &exitError{code: 1, err: fmt.Errorf("not drained: %s (keep datasets longer with retention.time, or read them faster)", strings.Join(msgs, "; "))}
}

func commonNames(k connectors.Kind) string {
	if k == connectors.SinkKind {
		return "name, batching and retry"
	}
	return "to, key, processors and dead_letter"
}

func newLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check pipeline files; exit 1 listing every problem as file:line:col",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, path := range args {
				if _, err := load(path); err != nil {
					bad++
					fmt.Fprintln(cmd.OutOrStdout(), err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d files have problems", bad, len(args))}
			}
			return nil
		},
	}
}

func newTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE...",
		Short: "Run the tests: section of pipeline files (given input records, expect output records)",
		Example: `  # in the file:
  tests:
    drops-debug:
      pipeline: archive
      input: ['{"level":"debug"}', '{"level":"info"}']
      output: ['{"level":"info","env":"prod"}']`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed, total := 0, 0
			w := cmd.OutOrStdout()
			for _, path := range args {
				cfg, err := load(path)
				if err != nil {
					return err
				}
				if len(cfg.Tests) == 0 {
					fmt.Fprintf(w, "%s: no tests\n", path)
					continue
				}
				for _, r := range pipelines.RunTests(cfg, nil) {
					total++
					if len(r.Failures) == 0 {
						fmt.Fprintf(w, "PASS %s: %s\n", path, r.Name)
						continue
					}
					failed++
					fmt.Fprintf(w, "FAIL %s: %s\n", path, r.Name)
					for _, f := range r.Failures {
						fmt.Fprintf(w, "    %s\n", f)
					}
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d tests failed", failed, total)}
			}
			fmt.Fprintf(w, "%d tests passed\n", total)
			return nil
		},
	}
}

func newListCmd() *cobra.Command {
	var schema, docs bool
	cmd := &cobra.Command{
		Use:   "list [sources|processors|sinks|file] [NAME]",
		Short: "List components and the sections of a pipeline file with their fields; --json-schema and --docs for editors and docs",
		Example: `  weir list
  weir list sinks file
  weir list file                               # top-level keys; group, start, broadcast, batching, retry, dead_letter
  weir list --json-schema > weir.schema.json   # for editors (yaml-language-server)`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			if schema {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(pipelines.JSONSchema(nil))
			}
			kinds := []connectors.Kind{connectors.SourceKind, connectors.ProcessorKind, connectors.SinkKind}
			if len(args) > 0 && args[0] == "file" {
				fmt.Fprint(w, pipelines.FileMarkdown())
				return nil
			}
			if len(args) > 0 {
				k, ok := map[string]connectors.Kind{"sources": connectors.SourceKind, "source": connectors.SourceKind,
					"processors": connectors.ProcessorKind, "processor": connectors.ProcessorKind,
					"sinks": connectors.SinkKind, "sink": connectors.SinkKind}[args[0]]
				if !ok {
					return fmt.Errorf("%q: list sources, processors, sinks or file", args[0])
				}
				kinds = []connectors.Kind{k}
				if len(args) == 2 {
					if err := knownComponent(k, args[1]); err != nil {
						return err
					}
				}
			}
			for _, k := range kinds {
				specs := connectors.Default.Specs(k)
				sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
				if !docs && len(args) < 2 {
					fmt.Fprintf(w, "%sS\n", strings.ToUpper(k.String()))
				}
				for _, s := range specs {
					if s.Name == "memory" {
						continue // test components
					}
					if len(args) == 2 && s.Name != args[1] {
						continue
					}
					if docs || len(args) == 2 {
						fmt.Fprint(w, s.Markdown())
						continue
					}
					fmt.Fprintf(w, "  %-12s %s\n", s.Name, s.Summary)
				}
				if docs || len(args) == 2 {
					// The fields every source or sink takes (batching,
					// retry...), after the component's own.
					fmt.Fprint(w, pipelines.CommonFieldsMarkdown(k))
				} else if k != connectors.ProcessorKind {
					fmt.Fprintf(w, "  (every %s also takes %s: weir list %ss NAME)\n", k, commonNames(k), k)
				}
				if !docs && len(args) < 2 {
					fmt.Fprintln(w)
				}
			}
			switch {
			case len(args) > 0:
			case docs:
				fmt.Fprint(w, pipelines.FileMarkdown())
			default:
				fmt.Fprintf(w, "PIPELINE FILE (weir list file)\n%s", pipelines.FileSummary())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&schema, "json-schema", false, "print the JSON Schema of pipeline files")
	cmd.Flags().BoolVar(&docs, "docs", false, "print Markdown documentation of every component")
	return cmd
}
