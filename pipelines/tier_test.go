package pipelines

import (
	"strings"
	"testing"
	"time"
)

// TestColdStoreConfig: hub.cold_store and a dataset's retention.remote,
// local_time and local_bytes are read, and become Kafka's topic configs.
func TestColdStoreConfig(t *testing.T) {
	testRegistry(t)
	cfg, err := Load("t.yaml", []byte(`hub: {data_dir: ./d, cold_store: "s3://b/p?endpoint=http://127.0.0.1:7070", cold_upload_rate: 50MiB}
datasets:
  events:
    retention: {time: 30d, remote: true, local_time: 1h, local_bytes: 1GiB}
pipelines: {p: {from: [events], to: [{memory: {id: x}}]}}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Datasets[0]
	if cfg.Hub.ColdStore != "s3://b/p?endpoint=http://127.0.0.1:7070" || !d.RemoteStorage || d.LocalRetentionTime != time.Hour || d.LocalRetentionBytes != 1<<30 ||
		cfg.Hub.ColdUploadRate != 50<<20 {
		t.Fatalf("hub %+v, dataset %+v", cfg.Hub, d)
	}
	tc := d.topic().Configs
	if tc["remote.storage.enable"] != "true" || tc["local.retention.ms"] != "3600000" || tc["local.retention.bytes"] != "1073741824" {
		t.Fatalf("topic configs %v", tc)
	}
}

// TestColdUploadRateBounds: hub.cold_upload_rate is a size a second
// between 1KiB and 1TiB; outside, or not a size, the error names the key
// and its line.
func TestColdUploadRateBounds(t *testing.T) {
	testRegistry(t)
	for _, rate := range []string{"10B", "2TiB", "fast"} {
		_, err := Load("t.yaml", []byte(`hub:
  data_dir: ./d
  cold_store: file:///tmp/cold
  cold_upload_rate: `+rate+`
pipelines: {p: {from: [events], to: [{memory: {id: x}}]}}
datasets: {events: {}}
`), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), "cold_upload_rate") || !strings.Contains(err.Error(), "t.yaml:4:") {
			t.Errorf("cold_upload_rate: %s: error %v, want one naming the key at t.yaml:4", rate, err)
		}
	}
}

// TestEngineOwnHubColdStore: an engine that opens its own hub (a library
// caller passing no Options.Hub) honours hub.cold_store: a dataset with
// retention.remote is created on it. Before, New opened the hub without
// the store and refused the dataset; a bad store URL names the key.
func TestEngineOwnHubColdStore(t *testing.T) {
	testRegistry(t)
	newMemSink(t, "x")
	dir := t.TempDir()
	src := "hub: {data_dir: " + dir + "/data, cold_store: file://" + dir + "/cold, cold_upload_rate: 20MiB}\n" +
		"datasets: {events: {retention: {remote: true}}}\n" +
		"pipelines: {p: {from: [events], to: [{memory: {id: x}}]}}\n"
	cfg, err := Load("t.yaml", []byte(src), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.closeHub()
	d, err := e.Hub().Dataset("events")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Config().RemoteStorage {
		t.Fatalf("dataset config %+v: remote storage is off", d.Config())
	}

	bad := strings.Replace(src, "file://", "gopher://", 1)
	cfg, err = Load("t.yaml", []byte(bad), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "hub.cold_store") {
		if e != nil {
			e.closeHub()
		}
		t.Fatalf("a bad hub.cold_store: %v, want an error naming the key", err)
	}
}
