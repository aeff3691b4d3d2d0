package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestGrafanaDashboard checks every PromQL expression of
// examples/grafana/weir.json: it parses (promtool check rules) and every
// metric it names is in the exposition of a real weir run serving Kafka
// clients, with a pipeline, sinks and a group at work.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../examples/grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("examples/grafana/weir.json: %v", err)
	}
	var exprs, where []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			where = append(where, p.Title)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d expressions", len(exprs))
	}

	// Syntax: promtool parses each as a recording rule.
	if bin, err := exec.LookPath("promtool"); err == nil {
		var rules strings.Builder
		rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
		for _, e := range exprs {
			q, _ := json.Marshal(e)
			rules.WriteString("      - record: weir:dashboard:expr\n        expr: " + string(q) + "\n")
		}
		path := filepath.Join(t.TempDir(), "rules.yaml")
		os.WriteFile(path, []byte(rules.String()), 0o644)
		if out, err := exec.Command(bin, "check", "rules", path).CombinedOutput(); err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("promtool is missing: scripts/test-deps.sh installs the Debian package prometheus")
	}

	// Names: against what a running weir exposes.
	file := webPipeline(t)
	src, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(src), "hub: {data_dir:", "hub: {listen: 127.0.0.1:0, data_dir:", 1)), 0o644)
	addr, logs := startRun(t, file)
	kafkaAddr := runKafkaAddr(t, logs)
	cl := mustClient(t, kafkaAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "access", Value: []byte(`{"n":1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if status, body := httpGet(t, "http://"+addr+"/readyz"); status != 200 || !strings.Contains(string(body), `"checks":["hub","kafka","pipelines"]`) {
		t.Errorf("/readyz of weir run serving Kafka clients = %d %s", status, body)
	}
	// An error code, for weir_kafka_errors_total: a partition that does
	// not exist.
	lo := kmsg.NewPtrListOffsetsRequest()
	lot := kmsg.NewListOffsetsRequestTopic()
	lot.Topic = "access"
	lop := kmsg.NewListOffsetsRequestTopicPartition()
	lop.Partition, lop.Timestamp = 99, -1
	lot.Partitions = append(lot.Partitions, lop)
	lo.Topics = append(lo.Topics, lot)
	if _, err := cl.Broker(0).Request(ctx, lo); err != nil {
		t.Fatal(err)
	}
	var fams map[string]*dto.MetricFamily
	for range 100 {
		fams, _ = scrape(t, addr)
		if fams["weir_sink_write_records"] != nil && fams["weir_group_lag"] != nil && fams["weir_kafka_requests_total"] != nil &&
			fams["weir_dataset_fsync_duration_seconds"] != nil && fams["weir_kafka_errors_total"] != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	name := regexp.MustCompile(`\b(?:weir|go|process)_[a-z0-9_]+\b`)
	for i, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			if fams[n] != nil {
				continue
			}
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suf)
			}
			if f := fams[base]; f != nil && base != n && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				continue
			}
			t.Errorf("panel %q: %s is not in /metrics (expression %s)", where[i], n, e)
		}
	}
}
