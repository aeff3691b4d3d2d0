package pipelines

import (
	"testing"
	"time"
)

// TestColdStoreConfig: hub.cold_store and a dataset's retention.remote,
// local_time and local_bytes are read, and become Kafka's topic configs.
func TestColdStoreConfig(t *testing.T) {
	testRegistry(t)
	cfg, err := Load("t.yaml", []byte(`hub: {data_dir: ./d, cold_store: "s3://b/p?endpoint=http://127.0.0.1:7070"}
datasets:
  events:
    retention: {time: 30d, remote: true, local_time: 1h, local_bytes: 1GiB}
pipelines: {p: {from: [events], to: [{memory: {id: x}}]}}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Datasets[0]
	if cfg.Hub.ColdStore != "s3://b/p?endpoint=http://127.0.0.1:7070" || !d.RemoteStorage || d.LocalRetentionTime != time.Hour || d.LocalRetentionBytes != 1<<30 {
		t.Fatalf("hub %+v, dataset %+v", cfg.Hub, d)
	}
	tc := d.topic().Configs
	if tc["remote.storage.enable"] != "true" || tc["local.retention.ms"] != "3600000" || tc["local.retention.bytes"] != "1073741824" {
		t.Fatalf("topic configs %v", tc)
	}
}
