package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	whttp "github.com/weirhub/weir/hub/http"
	"github.com/weirhub/weir/internal/httpauth"
	"github.com/weirhub/weir/pipelines"
)

// tapLine is one line of GET /v1/tap/{target}: a sampled record, or (with
// only Dropped set) how many samples the tap has dropped so far.
type tapLine struct {
	Point     string          `json:"point,omitempty"`
	Dataset   string          `json:"dataset,omitempty"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Time      time.Time       `json:"time,omitzero"`
	Key       *string         `json:"key,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	Dropped   int64           `json:"dropped,omitempty"`
}

// tapBuffer is how many records a pipeline tap holds for a slow reader.
const tapBuffer = 1024

// tapHandler serves GET /v1/tap/{target}?limit=N&filter=EXPR as NDJSON:
// a pipeline's (or one sink's) records through pipelines.Engine.Tap, or a
// dataset's new records read from the hub's log at the tap's own pace.
// Neither holds the pipeline or the producers back.
type tapHandler struct {
	h *hub.Hub   // nil when running against an external cluster
	e engineView // nil in weir serve
}

func (th *tapHandler) mount(s *whttp.Server) {
	s.HandleScope("GET /v1/tap/{target}", httpauth.ScopeSubscribe, th)
}

func (th *tapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.PathValue("target")
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "limit: want a count of records", http.StatusBadRequest)
			return
		}
		limit = n
	}
	var filter *pipelines.Expr
	if s := q.Get("filter"); s != "" {
		var err error
		if filter, err = pipelines.CompileExpr(s); err != nil {
			http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	src, err := th.open(r.Context(), target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer src.close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	sent := 0
	var reported int64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for limit == 0 || sent < limit {
		recs, err := src.next(r.Context(), tick.C)
		if err != nil {
			return // the client left, or the hub closed
		}
		for _, rec := range recs {
			if filter != nil && !matches(filter, rec) {
				continue
			}
			if enc.Encode(rec) != nil {
				return
			}
			if sent++; limit > 0 && sent >= limit {
				break
			}
		}
		if d := src.dropped(); d != reported {
			reported = d
			if enc.Encode(tapLine{Dropped: d}) != nil {
				return
			}
		}
		flush()
	}
}

// open finds target among the pipelines' tap points, then the datasets.
func (th *tapHandler) open(ctx context.Context, target string) (tapSource, error) {
	err := fmt.Errorf("nothing to tap at %q", target)
	if th.e != nil {
		var src tapSource
		if src, err = th.pipelineTap(target); err == nil {
			return src, nil
		}
	}
	if th.h != nil {
		if _, derr := th.h.Dataset(target); derr == nil || th.e == nil {
			return th.datasetTap(ctx, target)
		}
	}
	return nil, err
}

func matches(f *pipelines.Expr, rec tapLine) bool {
	m := &connectors.Message{Value: rec.Value, Dataset: rec.Dataset, Partition: rec.Partition, Offset: rec.Offset, Time: rec.Time}
	if rec.Key != nil {
		m.Key = []byte(*rec.Key)
	}
	ok, err := f.Bool(m)
	m.Release()
	return err == nil && ok
}

// tapSource yields sampled records; next waits until some come or tick
// fires (then it returns none, so dropped counts are reported).
type tapSource interface {
	next(ctx context.Context, tick <-chan time.Time) ([]tapLine, error)
	dropped() int64
	close()
}

func toLine(point, dataset string, partition int32, offset int64, t time.Time, key, value []byte) tapLine {
	l := tapLine{Point: point, Dataset: dataset, Partition: partition, Offset: offset, Time: t}
	if key != nil {
		k := string(key)
		l.Key = &k
	}
	if json.Valid(value) {
		l.Value = json.RawMessage(value)
	} else {
		l.Value, _ = json.Marshal(string(value))
	}
	return l
}

type pipelineTap struct{ t *pipelines.Tap }

func (th *tapHandler) pipelineTap(target string) (tapSource, error) {
	t, err := th.e.Tap(target, tapBuffer)
	if err != nil {
		return nil, err
	}
	return &pipelineTap{t: t}, nil
}

func (p *pipelineTap) next(ctx context.Context, tick <-chan time.Time) ([]tapLine, error) {
	var out []tapLine
	add := func(r pipelines.TapRecord) {
		out = append(out, toLine(p.t.Point, r.Dataset, r.Partition, r.Offset, r.Time, r.Key, r.Value))
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-tick:
		return nil, nil
	case r := <-p.t.Records():
		add(r)
	}
	for len(out) < 256 {
		select {
		case r := <-p.t.Records():
			add(r)
		default:
			return out, nil
		}
	}
	return out, nil
}

func (p *pipelineTap) dropped() int64 { return p.t.Dropped() }
func (p *pipelineTap) close()         { p.t.Close() }

// datasetTap reads a dataset from its end as a broadcast consumer with no
// group: nothing is committed and nobody waits for it.
type datasetTap struct {
	name string
	c    hub.Consumer
}

func (th *tapHandler) datasetTap(ctx context.Context, name string) (tapSource, error) {
	if _, err := th.h.Dataset(name); err != nil {
		return nil, err
	}
	c, err := hub.NewLocalClient(th.h).Consume(ctx, hub.ConsumeOptions{Datasets: []string{name}, Broadcast: true,
		Start: hub.StartFrom{Kind: hub.StartLatest}, ClientID: "weir-tap", MaxWait: time.Second, MaxPollBytes: 1 << 20})
	if err != nil {
		return nil, err
	}
	return &datasetTap{name: name, c: c}, nil
}

func (d *datasetTap) next(ctx context.Context, _ <-chan time.Time) ([]tapLine, error) {
	fs, err := d.c.Poll(ctx)
	if err != nil {
		return nil, err
	}
	var out []tapLine
	for _, f := range fs {
		for _, r := range f.Records {
			out = append(out, toLine("datasets."+d.name, f.Dataset, f.Partition, r.Offset, time.UnixMilli(r.Timestamp), r.Key, r.Value))
		}
	}
	return out, nil
}

func (d *datasetTap) dropped() int64 { return 0 }
func (d *datasetTap) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.c.Close(ctx)
}

func defaultHTTPAddr() string {
	if v := os.Getenv("WEIR_HTTP"); v != "" {
		return v
	}
	return "127.0.0.1:9644"
}

func newTapCmd() *cobra.Command {
	var addr, filter, format string
	var limit int
	var hc httpClientFlags
	cmd := &cobra.Command{
		Use:   "tap PIPELINE[.SINK] | DATASET",
		Short: "Watch a live sample of the records in a pipeline or a dataset of a running weir",
		Long: `Prints the records passing a point of a running weir run or weir serve, read from
its --http-listen address: PIPELINE shows what the pipeline's processors pass on,
PIPELINE.SINK what is routed to that sink, DATASET the records arriving in it.
A tap never slows the pipeline down: when it falls behind, samples are dropped and
the count is printed on stderr.`,
		Example: `  weir run pipeline.yaml --http-listen 9644 &
  weir tap archive --limit 10                       # after the processors
  weir tap archive.errors --filter 'status >= 500'  # what goes to the errors sink
  weir tap access --format text --http 127.0.0.1:9644`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "text" {
				return fmt.Errorf("--format %q: want json or text", format)
			}
			full, err := whttp.ListenAddr(addr)
			if err != nil {
				return err
			}
			q := url.Values{}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if filter != "" {
				q.Set("filter", filter)
			}
			client, scheme, err := hc.client(0)
			if err != nil {
				return err
			}
			u := scheme + "://" + full + "/v1/tap/" + url.PathEscape(args[0]) + "?" + q.Encode()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("tap: %w (is weir running with --http-listen %s?)", err, full)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return fmt.Errorf("tap %s: %s", args[0], strings.TrimSpace(string(b)))
			}
			return printTap(ctx, resp.Body, cmd.OutOrStdout(), cmd.ErrOrStderr(), format, limit)
		},
	}
	cmd.Flags().StringVar(&addr, "http", defaultHTTPAddr(), "the --http-listen address of the running weir (env WEIR_HTTP)")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many records (0: until interrupted)")
	cmd.Flags().StringVar(&filter, "filter", "", "only records for which this expression is true (as in the filter processor)")
	cmd.Flags().StringVar(&format, "format", "json", "json (one object per line) or text")
	hc.add(cmd.Flags())
	return cmd
}

func printTap(ctx context.Context, body io.Reader, out, errOut io.Writer, format string, limit int) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	n := 0
	for sc.Scan() {
		var l tapLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("tap: a line the server sent is not JSON: %v", err)
		}
		if l.Point == "" {
			fmt.Fprintf(errOut, "weir tap: %d samples dropped so far (the tap fell behind; the pipeline did not wait)\n", l.Dropped)
			continue
		}
		if format == "json" {
			fmt.Fprintf(out, "%s\n", sc.Bytes())
		} else {
			key := ""
			if l.Key != nil {
				key = " key=" + strconv.Quote(*l.Key)
			}
			fmt.Fprintf(out, "%s %s %s/%d@%d%s %s\n", l.Time.UTC().Format(time.RFC3339Nano), l.Point, l.Dataset, l.Partition, l.Offset, key, l.Value)
		}
		n++
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("tap: %w", err)
	}
	if limit > 0 && n < limit && ctx.Err() == nil {
		return fmt.Errorf("tap: the stream ended after %d of %d records", n, limit)
	}
	return nil
}
