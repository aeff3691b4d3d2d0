package hub

import (
	"errors"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// TestCompactedDataset creates a dataset with cleanup.policy compact from
// Kafka topic configs, writes several values per key and a delete, and
// checks that Hub.Compact keeps the latest value of each key, that the
// policy is reported back and survives reopening the hub, and that a
// compact-only dataset is not cut by retention.
func TestCompactedDataset(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	opts.Defaults.RetentionBytes = 4096 // would delete everything without compact-only
	h := openHub(t, opts)
	var cfg DatasetConfig
	for k, v := range map[string]string{"cleanup.policy": "compact", "delete.retention.ms": "-1", "segment.bytes": "4096"} {
		if err := cfg.ApplyKafkaConfig(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.ApplyKafkaConfig("cleanup.policy", "shrink"); err == nil {
		t.Errorf("cleanup.policy=shrink accepted")
	}
	ds, err := h.CreateDataset("cache", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	put := func(k string, v []byte) {
		var b codecs.Builder
		b.Append(time.Now().UnixMilli(), []byte(k), v, nil)
		out, _ := b.Build()
		if _, err := p.Produce(out, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		put(string(rune('a'+i%5)), []byte(string(make([]byte, 100))+string(rune('0'+i%10))))
	}
	put("e", nil)
	p.Log().Roll()
	h.EnforceRetention()
	if p.StartOffset() != 0 {
		t.Fatalf("retention cut a compact-only dataset to %d", p.StartOffset())
	}
	// Compact until the rolled segments are all sealed (in the
	// background) and compacted.
	var latest map[string]string
	count, rewritten := 0, 0
	for deadline := time.Now().Add(5 * time.Second); ; {
		rewritten += h.Compact()
		latest, count = map[string]string{}, 0
		it := p.Log().NewIterator(0)
		for it.Next() {
			r := it.Record()
			count++
			if r.Value == nil {
				delete(latest, string(r.Key))
			} else {
				latest[string(r.Key)] = string(r.Value[len(r.Value)-1:])
			}
		}
		if count <= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rewritten == 0 {
		t.Fatalf("Compact rewrote no segment")
	}
	want := map[string]string{"a": "5", "b": "6", "c": "7", "d": "8"}
	if len(latest) != len(want) || count > 5 {
		t.Errorf("after compaction: %d records, state %v; want at most 5 records and %v", count, latest, want)
	}
	for k, v := range want {
		if latest[k] != v {
			t.Errorf("key %s = %q, want %q", k, latest[k], v)
		}
	}
	if got := ds.Config().KafkaConfigs()["cleanup.policy"]; got != "compact" {
		t.Errorf("cleanup.policy = %q, want compact", got)
	}
	h.Close()
	h = openHub(t, opts)
	defer h.Close()
	ds, _ = h.Dataset("cache")
	if !ds.Config().Compacted() || ds.Config().DeleteRetention >= 0 {
		t.Errorf("after reopening: config %+v, want compact with delete retention -1", ds.Config())
	}
}

// TestMinCleanableDirtyRatio: Kafka's min.cleanable.dirty.ratio is set
// when a compacted dataset is created and changed on an open one, reaches
// its partitions' logs, and is described back; 0 means whatever is dirty.
func TestMinCleanableDirtyRatio(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	var cfg DatasetConfig
	for _, kv := range [][2]string{{"cleanup.policy", "compact"}, {"min.cleanable.dirty.ratio", "0.2"}} {
		if err := cfg.ApplyKafkaConfig(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := h.CreateDataset("c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ds.Partition(0)
	if got := p.log.Limits().MinCleanableRatio; got != 0.2 {
		t.Errorf("the log's ratio = %v, want 0.2", got)
	}
	cur := ds.Config()
	if err := cur.ApplyKafkaConfig("min.cleanable.dirty.ratio", "0"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.AlterDataset("c", cur, false); err != nil {
		t.Fatal(err)
	}
	if got, desc := p.log.Limits().MinCleanableRatio, ds.Config().KafkaConfigs()["min.cleanable.dirty.ratio"]; got != -1 || desc != "0" {
		t.Errorf("after altering to 0: the log's ratio = %v, described %q; want -1 (whatever is dirty) and \"0\"", got, desc)
	}
	if got := (DatasetConfig{}).KafkaConfigs()["min.cleanable.dirty.ratio"]; got != "0.5" {
		t.Errorf("the default is described as %q, want 0.5", got)
	}
	for _, bad := range []string{"1.5", "-0.1", "half"} {
		if err := cfg.ApplyKafkaConfig("min.cleanable.dirty.ratio", bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("min.cleanable.dirty.ratio=%s: %v, want ErrInvalidConfig", bad, err)
		}
	}
}
