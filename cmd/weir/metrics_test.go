package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var httpServingRE = regexp.MustCompile(`"http: serving" listen=(\S+)`)

// httpAddr is the address `weir serve|run --http-listen` logged.
func httpAddr(t *testing.T, p *weirProcess) string {
	t.Helper()
	for range 100 {
		if m := httpServingRE.FindStringSubmatch(p.output()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no http listener in the log:\n%s", p.output())
	return ""
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

// scrape fetches /metrics and parses it with Prometheus' own parser.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	status, body := httpGet(t, "http://"+addr+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams, body
}

// metricSum adds the values of a family's series whose labels include
// want.
func metricSum(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, found
}

// promtoolCheck runs `promtool check metrics` (Debian package prometheus)
// over an exposition; it fails the test on any complaint. Without
// promtool the check is skipped, except in CI where it fails.
func promtoolCheck(t *testing.T, exposition []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing: scripts/test-deps.sh installs the Debian package prometheus")
		}
		t.Log("promtool not installed (Debian package prometheus, make test-deps): its lint is skipped")
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestServeMetricsAndHealth starts `weir serve --http-listen`, produces
// and consumes with franz-go, and checks /healthz, /readyz and /metrics:
// the exposition parses with Prometheus' parser and passes promtool, the
// produced counter says exactly what was produced, request counters moved,
// and the group lag equals what `weir groups describe` reports.
func TestServeMetricsAndHealth(t *testing.T) {
	p := startServe(t, t.TempDir(), "--http-listen", "127.0.0.1:0", "--partitions", "2", "--partition-metrics", "--fsync", "always")
	addr := httpAddr(t, p)

	status, body := httpGet(t, "http://"+addr+"/healthz")
	if status != 200 || !bytes.Contains(body, []byte(`"ok"`)) {
		t.Fatalf("/healthz = %d %s", status, body)
	}
	status, body = httpGet(t, "http://"+addr+"/readyz")
	var ready struct {
		Ready    bool              `json:"ready"`
		Checks   []string          `json:"checks"`
		NotReady map[string]string `json:"not_ready"`
	}
	if err := json.Unmarshal(body, &ready); err != nil || status != 200 || !ready.Ready ||
		strings.Join(ready.Checks, ",") != "hub,kafka" {
		t.Fatalf("/readyz = %d %s (%v)", status, body, err)
	}

	fams, _ := scrape(t, addr)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "weir_kafka_connections"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	const dataset, group, n, more = "metrics-ds", "metrics-group", 500, 37
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod := mustClient(t, p.addr, kgo.DefaultProduceTopic(dataset), kgo.AllowAutoTopicCreation())
	produce := func(from, to int) {
		t.Helper()
		var rs []*kgo.Record
		for i := from; i < to; i++ {
			rs = append(rs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, n)

	// A group consumes and commits everything, then more is produced:
	// the lag is exactly `more`.
	cons := mustClient(t, p.addr, kgo.ConsumerGroup(group), kgo.ConsumeTopics(dataset),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	got := 0
	for got < n && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("consume: %v", errs)
		}
		got += fs.NumRecords()
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	cons.Close()
	produce(n, n+more)
	// A request for a partition that does not exist is answered with
	// an error code, which is counted.
	lo := kmsg.NewPtrListOffsetsRequest()
	lot := kmsg.NewListOffsetsRequestTopic()
	lot.Topic = dataset
	lop := kmsg.NewListOffsetsRequestTopicPartition()
	lop.Partition, lop.Timestamp = 99, -1
	lot.Partitions = append(lot.Partitions, lop)
	lo.Topics = append(lo.Topics, lot)
	if resp, err := prod.Broker(0).Request(ctx, lo); err != nil {
		t.Fatal(err)
	} else if code := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode; code != 3 {
		t.Fatalf("ListOffsets of partition 99: error code %d, want 3", code)
	}

	// Requests are counted once their responses are written, just after
	// the client may have read them: scrape until the last one shows.
	fams, exposition := scrape(t, addr)
	for i := 0; i < 50; i++ {
		lo, _ := metricSum(fams, "weir_kafka_requests_total", map[string]string{"api": "ListOffsets"})
		pr, _ := metricSum(fams, "weir_kafka_requests_total", map[string]string{"api": "Produce"})
		// The consumer sent ListOffsets before: wait for the refused one's error too.
		le, _ := metricSum(fams, "weir_kafka_errors_total", map[string]string{"api": "ListOffsets", "code": "UNKNOWN_TOPIC_OR_PARTITION"})
		if lo >= 1 && pr >= 2 && le >= 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
		fams, exposition = scrape(t, addr)
	}
	promtoolCheck(t, exposition)
	want := func(name string, labels map[string]string, v float64) {
		t.Helper()
		got, ok := metricSum(fams, name, labels)
		if !ok || got != v {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, v)
		}
	}
	atLeast := func(name string, labels map[string]string, v float64) {
		t.Helper()
		got, ok := metricSum(fams, name, labels)
		if !ok || got < v {
			t.Errorf("%s%v = %v (present %v), want at least %v", name, labels, got, ok, v)
		}
	}
	ds := map[string]string{"dataset": dataset}
	want("weir_dataset_produced_records_total", ds, n+more)
	want("weir_partition_produced_records_total", ds, n+more)
	want("weir_dataset_records", ds, n+more)
	want("weir_partition_end_offset", ds, n+more)
	want("weir_dataset_partitions", ds, 2)
	atLeast("weir_dataset_produced_bytes_total", ds, n*8)
	atLeast("weir_dataset_fetched_bytes_total", ds, n*8)
	atLeast("weir_dataset_disk_bytes", map[string]string{"dataset": dataset, "tier": "local"}, n*8)
	atLeast("weir_dataset_segments", ds, 2)
	atLeast("weir_dataset_fsync_duration_seconds", ds, 2)
	atLeast("weir_dataset_fsyncs_total", ds, 2)
	atLeast("weir_kafka_requests_total", map[string]string{"api": "Produce"}, 2)
	atLeast("weir_kafka_requests_total", map[string]string{"api": "Fetch"}, 1)
	atLeast("weir_kafka_request_duration_seconds", map[string]string{"api": "Metadata"}, 1)
	atLeast("weir_kafka_requests_total", map[string]string{"api": "OffsetCommit"}, 1)
	want("weir_group_committed_offset", map[string]string{"group": group, "dataset": dataset}, n)
	want("weir_group_lag", map[string]string{"group": group, "dataset": dataset}, more)
	atLeast("weir_kafka_connections", nil, 1)
	want("weir_kafka_errors_total", map[string]string{"api": "ListOffsets", "code": "UNKNOWN_TOPIC_OR_PARTITION"}, 1)

	out, err := run(t, "groups", "describe", group, "--brokers", p.addr)
	if err != nil {
		t.Fatalf("groups describe: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`total lag (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(more) {
		t.Fatalf("weir groups describe says %q; /metrics says lag %d", out, more)
	}
}

// TestHTTPListenPortOnlyIsLoopback: a bare port binds 127.0.0.1, not every
// interface.
func TestHTTPListenPortOnlyIsLoopback(t *testing.T) {
	port := freePort(t)
	p := startServe(t, t.TempDir(), "--http-listen", strconv.Itoa(port))
	if got, want := httpAddr(t, p), fmt.Sprintf("127.0.0.1:%d", port); got != want {
		t.Fatalf("--http-listen %d bound %s, want %s", port, got, want)
	}
}

// TestHTTPListenBindFailureStopsServe: a listener that cannot bind is a
// startup error, not a warning.
func TestHTTPListenBindFailureStopsServe(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cmd := weirCmd(t, nil, "serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http-listen", busy.Addr().String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "http: listening on "+busy.Addr().String()) {
			t.Fatalf("weir serve with a busy --http-listen: exit %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("weir serve kept running with a busy --http-listen:\n%s", out.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestLogFormatJSON: --log-format json writes one JSON object per line,
// with slog's time, level and msg keys.
func TestLogFormatJSON(t *testing.T) {
	cmd := weirCmd(t, nil, "serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--log-format", "json")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for i := 0; i < 200 && !strings.Contains(out.String(), `"msg":"weir: hub serving"`); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weir serve: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("weir serve did not stop:\n%s", out.String())
	}
	msgs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", line, err)
		}
		if rec["time"] == nil || rec["level"] == nil {
			t.Fatalf("JSON line without time or level: %q", line)
		}
		msg, _ := rec["msg"].(string)
		msgs[msg] = true
	}
	for _, m := range []string{"weir: hub serving", "weir: stopped"} {
		if !msgs[m] {
			t.Errorf("no %q line in:\n%s", m, out.String())
		}
	}
	if _, err := run(t, "serve", "--log-format", "xml", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "want text or json") {
		t.Fatalf("--log-format xml: %v", err)
	}
}

// TestRunMetrics runs a pipeline file with http.listen and checks that the
// components' counters reach what the generator produced and what the
// sink wrote, that /readyz names the hub and the pipelines, and that the
// exposition passes promtool.
func TestRunMetrics(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
http: {listen: "127.0.0.1:0"}
datasets: {in: {partitions: 2}}
sources:
  gen:
    generate: {count: %d, seed: 3}
    to: in
pipelines:
  copy:
    from: in
    to:
      - file: {path: "%s/out.ndjson", format: ndjson}
        batching: {period: 20ms}
  none:
    from: in
    processors: [{filter: "false"}]
    to:
      - file: {path: "%s/none.ndjson", format: ndjson}
`, filepath.Join(dir, "data"), n, dir, dir)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--stats-every", "0")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var addr string
	for i := 0; i < 200 && addr == ""; i++ {
		if m := httpServingRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("weir run did not serve http:\n%s", logs.String())
	}
	sink := map[string]string{"component": "pipelines.copy.to.file", "kind": "sink"}
	var fams map[string]*dto.MetricFamily
	var exposition []byte
	for i := 0; i < 300; i++ {
		fams, exposition = scrape(t, addr)
		v, _ := metricSum(fams, "weir_component_sent_records_total", sink)
		d, _ := metricSum(fams, "weir_component_dropped_records_total", map[string]string{"component": "pipelines.none.processors[0].filter"})
		if v == n && d == n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	promtoolCheck(t, exposition)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"weir_component_sent_records_total", map[string]string{"component": "sources.gen", "kind": "source"}, n},
		{"weir_component_received_records_total", map[string]string{"component": "pipelines.copy", "kind": "pipeline"}, n},
		{"weir_component_sent_records_total", sink, n},
		{"weir_component_dead_lettered_records_total", map[string]string{"component": "pipelines.copy"}, 0},
		{"weir_component_dropped_records_total", map[string]string{"component": "pipelines.none.processors[0].filter", "kind": "processor"}, n},
		{"weir_component_dropped_records_total", map[string]string{"component": "pipelines.copy"}, 0},
		{"weir_component_retried_records_total", sink, 0},
		{"weir_component_skipped_records_total", map[string]string{"component": "pipelines.copy"}, 0},
		{"weir_pipeline_lag", map[string]string{"component": "pipelines.copy"}, 0},
		{"weir_dataset_produced_records_total", map[string]string{"dataset": "in"}, n},
		{"weir_group_lag", map[string]string{"group": "copy", "dataset": "in"}, 0},
		{"weir_group_committed_offset", map[string]string{"group": "copy", "dataset": "in"}, n},
	} {
		if got, ok := metricSum(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The sink's batch-size histogram adds up to the records written.
	var written float64
	for _, m := range fams["weir_sink_write_records"].GetMetric() {
		if m.GetLabel()[0].GetValue() == "pipelines.copy.to.file" {
			written = m.GetHistogram().GetSampleSum()
		}
	}
	if written != n {
		t.Errorf("weir_sink_write_records sums to %v, want %d", written, n)
	}
	if c, ok := metricSum(fams, "weir_sink_delivery_delay_seconds", map[string]string{"component": "pipelines.copy.to.file"}); !ok || c < 1 {
		t.Errorf("weir_sink_delivery_delay_seconds has %v observations (present %v)", c, ok)
	}
	if c, ok := metricSum(fams, "weir_sink_write_duration_seconds", map[string]string{"component": "pipelines.copy.to.file"}); !ok || c < 1 {
		t.Errorf("weir_sink_write_duration_seconds has %v writes (present %v)", c, ok)
	}
	status, body := httpGet(t, "http://"+addr+"/readyz")
	if status != 200 || !strings.Contains(string(body), `"checks":["hub","pipelines"]`) {
		t.Errorf("/readyz = %d %s", status, body)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("weir run: %v\n%s", err, logs.String())
	}
}
