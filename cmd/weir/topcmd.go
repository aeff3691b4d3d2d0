package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/dustin/go-humanize"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	whttp "github.com/weirhub/weir/hub/http"
)

// topSample is one scrape of a weir's /metrics, reduced to what weir top
// shows.
type topSample struct {
	at       time.Time
	comps    map[string]*topComp
	datasets map[string]*topDataset
	groups   map[string]*topGroup
}

type topComp struct {
	kind                  string
	in, out, dead, failed float64
	lag                   float64
	hasLag                bool
}

type topDataset struct {
	produced, fetchedBytes, records, disk float64
}

type topGroup struct {
	lag, members float64
}

// scrapeTop reads url (a /metrics endpoint) into a sample.
func scrapeTop(ctx context.Context, client *http.Client, url string) (*topSample, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	s := &topSample{at: time.Now(), comps: map[string]*topComp{}, datasets: map[string]*topDataset{}, groups: map[string]*topGroup{}}
	each := func(name string, fn func(labels map[string]string, v float64)) {
		f := fams[name]
		if f == nil {
			return
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			fn(labels, metricValue(m))
		}
	}
	comp := func(l map[string]string) *topComp {
		c := s.comps[l["component"]]
		if c == nil {
			c = &topComp{kind: l["kind"]}
			s.comps[l["component"]] = c
		}
		return c
	}
	each("weir_component_received_records_total", func(l map[string]string, v float64) { comp(l).in = v })
	each("weir_component_sent_records_total", func(l map[string]string, v float64) { comp(l).out = v })
	each("weir_component_dead_lettered_records_total", func(l map[string]string, v float64) { comp(l).dead = v })
	each("weir_component_failures_total", func(l map[string]string, v float64) { comp(l).failed = v })
	each("weir_source_lag", func(l map[string]string, v float64) {
		if c := s.comps[l["component"]]; c != nil {
			c.lag, c.hasLag = v, true
		}
	})
	each("weir_pipeline_lag", func(l map[string]string, v float64) {
		if c := s.comps[l["component"]]; c != nil {
			c.lag, c.hasLag = v, true
		}
	})
	ds := func(l map[string]string) *topDataset {
		d := s.datasets[l["dataset"]]
		if d == nil {
			d = &topDataset{}
			s.datasets[l["dataset"]] = d
		}
		return d
	}
	each("weir_dataset_produced_records_total", func(l map[string]string, v float64) { ds(l).produced = v })
	each("weir_dataset_fetched_bytes_total", func(l map[string]string, v float64) { ds(l).fetchedBytes = v })
	each("weir_dataset_records", func(l map[string]string, v float64) { ds(l).records = v })
	each("weir_dataset_disk_bytes", func(l map[string]string, v float64) { ds(l).disk += v })
	grp := func(l map[string]string) *topGroup {
		g := s.groups[l["group"]]
		if g == nil {
			g = &topGroup{}
			s.groups[l["group"]] = g
		}
		return g
	}
	each("weir_group_lag", func(l map[string]string, v float64) { grp(l).lag += v })
	each("weir_group_members", func(l map[string]string, v float64) { grp(l).members = v })
	return s, nil
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// renderTop draws a sample as text; rates come from the previous sample
// (none on the first).
func renderTop(addr string, prev, cur *topSample, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "weir top — %s — refreshed every second — q quits\n\n", addr)
	if err != nil {
		fmt.Fprintf(&b, "  scrape failed: %v\n\n", err)
	}
	if cur == nil {
		b.WriteString("  waiting for the first scrape...\n")
		return b.String()
	}
	secs := 0.0
	if prev != nil {
		secs = cur.at.Sub(prev.at).Seconds()
	}
	rate := func(now, before float64) string {
		if secs <= 0 {
			return "-"
		}
		return strings.TrimSpace(humanize.SIWithDigits(max(now-before, 0)/secs, 1, ""))
	}
	count := func(v float64) string { return strings.TrimSpace(humanize.SIWithDigits(v, 1, "")) }
	if len(cur.comps) > 0 {
		fmt.Fprintf(&b, "%-40s %-8s %10s %10s %10s %10s %10s\n", "COMPONENT", "KIND", "IN/S", "OUT/S", "LAG", "ERRORS", "DEAD")
		for _, name := range sortedKeys(cur.comps) {
			c := cur.comps[name]
			p := &topComp{}
			if prev != nil && prev.comps[name] != nil {
				p = prev.comps[name]
			}
			in := rate(c.in, p.in)
			if c.kind == "sink" {
				in = ""
			}
			lag := ""
			if c.hasLag {
				lag = count(c.lag)
			}
			fmt.Fprintf(&b, "%-40s %-8s %10s %10s %10s %10s %10s\n", name, c.kind, in, rate(c.out, p.out), lag, count(c.failed), count(c.dead))
		}
		b.WriteString("\n")
	}
	if len(cur.datasets) > 0 {
		fmt.Fprintf(&b, "%-40s %12s %12s %12s %12s\n", "DATASET", "PRODUCED/S", "FETCHED/S", "RECORDS", "DISK")
		for _, name := range sortedKeys(cur.datasets) {
			d := cur.datasets[name]
			p := &topDataset{}
			if prev != nil && prev.datasets[name] != nil {
				p = prev.datasets[name]
			}
			fetched := "-"
			if secs > 0 {
				fetched = humanize.Bytes(uint64(max(d.fetchedBytes-p.fetchedBytes, 0)/secs)) + "/s"
			}
			fmt.Fprintf(&b, "%-40s %12s %12s %12s %12s\n", name, rate(d.produced, p.produced), fetched, count(d.records), humanize.IBytes(uint64(d.disk)))
		}
		b.WriteString("\n")
	}
	if len(cur.groups) > 0 {
		fmt.Fprintf(&b, "%-40s %12s %12s\n", "GROUP", "LAG", "MEMBERS")
		for _, name := range sortedKeys(cur.groups) {
			g := cur.groups[name]
			fmt.Fprintf(&b, "%-40s %12s %12.0f\n", name, count(g.lag), g.members)
		}
	}
	return b.String()
}

// topModel is weir top's bubbletea model: a scrape every interval.
type topModel struct {
	addr, url string
	client    *http.Client
	interval  time.Duration
	prev, cur *topSample
	err       error
}

type topMsg struct {
	s   *topSample
	err error
}

func (m topModel) scrape() tea.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), max(m.interval, time.Second))
	defer cancel()
	s, err := scrapeTop(ctx, m.client, m.url)
	return topMsg{s, err}
}

func (m topModel) Init() tea.Cmd { return m.scrape }

func (m topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "esc", "ctrl+c":
			return m, tea.Quit
		}
	case topMsg:
		m.err = msg.err
		if msg.s != nil {
			m.prev, m.cur = m.cur, msg.s
		}
		return m, tea.Tick(m.interval, func(time.Time) tea.Msg { return m.scrape() })
	}
	return m, nil
}

func (m topModel) View() string { return renderTop(m.addr, m.prev, m.cur, m.err) }

func newTopCmd() *cobra.Command {
	var addr string
	var interval time.Duration
	var once bool
	var hc httpClientFlags
	cmd := &cobra.Command{
		Use:   "top",
		Short: "A live view of a running weir: components and datasets, records/s, lag, errors, dead letters",
		Long: `Shows, refreshed every second, what a running weir run or weir serve reports on its
--http-listen /metrics: per component (source, pipeline, sink) records per second in
and out, lag, errors and dead letters; per dataset records produced per second, bytes
fetched per second, records stored and disk; per consumer group its lag. q quits.
With --once it prints two samples' worth (rates over --interval) as text and exits.`,
		Example: `  weir run pipeline.yaml --http-listen 9645 &
  weir top --http 9645
  weir top --http 127.0.0.1:9644 --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			full, err := whttp.ListenAddr(addr)
			if err != nil {
				return err
			}
			client, scheme, err := hc.client(5 * time.Second)
			if err != nil {
				return err
			}
			m := topModel{addr: full, url: scheme + "://" + full + "/metrics", client: client,
				interval: max(interval, 100*time.Millisecond)}
			if once {
				ctx := cmd.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				first, err := scrapeTop(ctx, m.client, m.url)
				if err != nil {
					return fmt.Errorf("top: %w (is weir running with --http-listen %s?)", err, full)
				}
				time.Sleep(m.interval)
				second, err := scrapeTop(ctx, m.client, m.url)
				if err != nil {
					return fmt.Errorf("top: %w", err)
				}
				fmt.Fprint(cmd.OutOrStdout(), renderTop(full, first, second, nil))
				return nil
			}
			p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(cmd.Context()))
			_, err = p.Run()
			if err != nil && !strings.Contains(err.Error(), "context canceled") {
				return fmt.Errorf("top: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "http", defaultHTTPAddr(), "the --http-listen address of the running weir (env WEIR_HTTP)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between refreshes")
	cmd.Flags().BoolVar(&once, "once", false, "print one view as text and exit (no terminal needed)")
	hc.add(cmd.Flags())
	return cmd
}
