package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/pipelines"
)

// TestServeColdStoreConfig: cold_store in weir.yaml (and WEIR_COLD_STORE)
// becomes the hub's cold store; a bad URL is an error naming the key.
func TestServeColdStoreConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte("data_dir: "+dir+"/data\ncold_store: file://"+dir+"/cold\ncold_upload_rate: 50MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	if err := loadServeConfig(path, &cfg); err != nil {
		t.Fatal(err)
	}
	o, err := cfg.hubOptions(nil)
	if err != nil || o.ColdStore == nil || o.ColdUploadBytesPerSecond != 50<<20 {
		t.Fatalf("hubOptions: %v, cold store %v, upload rate %d", err, o.ColdStore, o.ColdUploadBytesPerSecond)
	}
	bad := cfg
	bad.ColdUploadRate = "fast"
	if _, err := bad.hubOptions(nil); err == nil || !strings.Contains(err.Error(), "cold_upload_rate") {
		t.Fatalf("cold_upload_rate: fast: %v", err)
	}
	t.Setenv("WEIR_COLD_STORE", "gopher://x")
	applyEnv(&cfg)
	if _, err := cfg.hubOptions(nil); err == nil {
		t.Fatal("a bad cold_store was accepted")
	}
}

// TestPipelineHubColdUploadRate: a pipeline file's hub.cold_upload_rate
// paces the embedded hub's uploads, as weir serve --cold-upload-rate does.
func TestPipelineHubColdUploadRate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	src := "hub: {data_dir: " + dir + "/data, cold_store: file://" + dir + "/cold, cold_upload_rate: 20MiB}\n" +
		"datasets: {events: {retention: {remote: true}}}\n" +
		"pipelines: {p: {from: [events], to: [{stdout: {}}]}}\n"
	cfg, err := pipelines.Load(path, []byte(src), pipelines.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := embeddedHubOptions(path, cfg, pipelines.Options{}, nil)
	if err != nil || o.ColdStore == nil || o.ColdUploadBytesPerSecond != 20<<20 {
		t.Fatalf("embeddedHubOptions: %v, cold store %v, upload rate %d", err, o.ColdStore, o.ColdUploadBytesPerSecond)
	}
}

// TestColdStoreMetrics: a dataset tiered to the cold store reports its
// remote bytes and segments with tier="remote", its uploads, and the
// small cold segments merged (the exposition passes promtool).
func TestColdStoreMetrics(t *testing.T) {
	dir := t.TempDir()
	store, err := objstore.NewDir(filepath.Join(dir, "cold"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.Open(hub.Options{DataDir: filepath.Join(dir, "data"), ColdStore: store,
		Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ds, err := h.CreateDataset("c", hub.DatasetConfig{RemoteStorage: true, SegmentBytes: 4096, LocalRetentionBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	for i := range 100 {
		var b codecs.Builder
		b.Append(time.Now().UnixMilli(), nil, []byte(strings.Repeat("v", 200)), nil)
		out, _ := b.Build()
		if _, err := p.Produce(out, false); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 && i >= 40 && i < 80 {
			p.Log().Roll() // small segments, which the tier merges
		}
	}
	for i := 0; p.Log().TierStats().RemoteSegments < 3 || p.Log().TierStats().MergedSegments == 0; i++ {
		if i > 500 {
			t.Fatalf("nothing uploaded or merged: %+v", p.Log().TierStats())
		}
		p.Log().EnforceRetention() // kicks the tier
		time.Sleep(10 * time.Millisecond)
	}
	var out strings.Builder
	if err := inspectLogs(&out, "file://"+filepath.Join(dir, "cold")); err != nil || !strings.Contains(out.String(), "c/0/: remote: ") ||
		!regexp.MustCompile(`00000000000000000000\.[0-9a-f]{16}\.log`).MatchString(out.String()) || !strings.Contains(out.String(), "generation ") {
		t.Fatalf("weir log inspect file://...: %v\n%s", err, out.String())
	}
	// The data directory with --cold-store: each partition's local and
	// remote parts, with segments, offsets and bytes.
	out.Reset()
	if err := inspectLogsTiered(&out, filepath.Join(dir, "data"), "file://"+filepath.Join(dir, "cold")); err != nil {
		t.Fatalf("weir log inspect DATA --cold-store: %v", err)
	}
	local := regexp.MustCompile(`datasets/c/0: local: \d+ segments, offsets \d+\.\.\d+, \d+ records, [0-9.]+ [KM]?i?B\n`)
	remote := regexp.MustCompile(`datasets/c/0: remote: ([3-9]|\d\d+) segments, offsets 0\.\.\d+, [0-9.]+ [KM]?i?B\n`)
	if !local.MatchString(out.String()) || !remote.MatchString(out.String()) {
		t.Fatalf("weir log inspect DATA --cold-store printed:\n%s", out.String())
	}
	m := newMetrics()
	m.addHub(h, false)
	got, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range got {
		fams[f.GetName()] = f
	}
	for _, name := range []string{"weir_dataset_disk_bytes", "weir_dataset_segments", "weir_dataset_cold_store_uploaded_segments_total",
		"weir_dataset_cold_store_merged_segments_total"} {
		labels := map[string]string{"dataset": "c"}
		if name == "weir_dataset_disk_bytes" || name == "weir_dataset_segments" {
			labels["tier"] = "remote"
		}
		want := 3.0
		if name == "weir_dataset_cold_store_merged_segments_total" {
			want = 2 // one merge, of two segments at least
		}
		if v, ok := metricSum(fams, name, labels); !ok || v < want {
			t.Errorf("%s%v = %v (present %v), want at least %v", name, labels, v, ok, want)
		}
	}
	if v, ok := metricSum(fams, "weir_dataset_cold_store_merge_check_failures_total", map[string]string{"dataset": "c"}); !ok || v != 0 {
		t.Errorf("weir_dataset_cold_store_merge_check_failures_total = %v (present %v), want 0", v, ok)
	}
	var exposition bytes.Buffer
	for _, f := range got {
		if _, err := expfmt.MetricFamilyToText(&exposition, f); err != nil {
			t.Fatal(err)
		}
	}
	promtoolCheck(t, exposition.Bytes())
}

// TestTopicsDescribeTiers: `weir topics describe` of a dataset tiered to
// the cold store shows, per partition, its local and remote offsets,
// bytes and segments (ListOffsets' earliest local offset, KIP-1005, and
// DescribeLogDirs, where Weir lists the cold store as a directory of its
// own and gives each partition's segments in a tagged field); the
// segment counts are the local segment files and the manifest's.
func TestTopicsDescribeTiers(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, filepath.Join(dir, "data"), "--cold-store", "file://"+filepath.Join(dir, "cold"))
	b := []string{"--brokers", p.addr}
	if _, errOut, err := runIn(t, "", append([]string{"topics", "create", "tiered", "--config", "remote.storage.enable=true",
		"--config", "segment.bytes=4096", "--config", "local.retention.bytes=8192"}, b...)...); err != nil {
		t.Fatalf("create: %v %s", err, errOut)
	}
	cl := mustClient(t, p.addr, kgo.DefaultProduceTopic("tiered"))
	for i := range 200 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(fmt.Sprintf("%d %s", i, strings.Repeat("v", 200)))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	// PARTITION LEADER START END RECORDS LOCAL OFFSETS LOCAL BYTES LOCAL SEGMENTS REMOTE OFFSETS REMOTE BYTES REMOTE SEGMENTS
	row := regexp.MustCompile(`(?m)^\s+0\s+\d+\s+0\s+200\s+200\s+(\d+)\.\.199\s+[0-9.]+ [KM]?i?B\s+(\d+)\s+0\.\.(\d+)\s+[0-9.]+ [KM]?i?B\s+(\d+)\s*$`)
	// The segments as the files say: local segment files, and those the
	// manifest in the cold store lists.
	files := func() (local, remote int) {
		names, _ := filepath.Glob(filepath.Join(dir, "data", "datasets", "tiered", "0", "*.log"))
		b, err := os.ReadFile(filepath.Join(dir, "cold", "tiered", "0", "manifest.json"))
		var m struct{ Segments []json.RawMessage }
		if err != nil || json.Unmarshal(b, &m) != nil {
			return len(names), -1
		}
		return len(names), len(m.Segments)
	}
	var out string
	for i := 0; ; i++ {
		out, _, _ = runIn(t, "", append([]string{"topics", "describe", "tiered"}, b...)...)
		if m := row.FindStringSubmatch(out); m != nil && m[1] != "0" {
			if local, remoteEnd := m[1], m[3]; fmt.Sprint(mustAtoi(t, remoteEnd)+1) != local {
				t.Fatalf("remote offsets end at %s, local ones start at %s:\n%s", remoteEnd, local, out)
			}
			// The tier settles once the producer stops: then the
			// counts are the files'.
			if l, r := files(); fmt.Sprint(l) == m[2] && fmt.Sprint(r) == m[4] && r > 1 {
				break
			}
		}
		if i > 100 {
			l, r := files()
			t.Fatalf("topics describe never showed a local and a remote part with the %d local and %d remote segments of the files:\n%s", l, r, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "LOCAL SEGMENTS") || !strings.Contains(out, "REMOTE SEGMENTS") {
		t.Fatalf("topics describe:\n%s", out)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
