package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/hubtest"
)

// TestRunDeadLettersACorruptBatch: a pipeline with on_corrupt:
// dead_letter over a dataset holding one poison batch among good ones
// (stored below the produce check, as an old log or a disk error leaves
// it) delivers every good record, dead-letters the bad range with its
// offsets, and its stats and the group's committed offsets agree (issue
// 18). Without the setting the run fails (TestCorruptBatchFailsADrain).
func TestRunDeadLettersACorruptBatch(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	h, err := hub.Open(hub.Options{DataDir: data, Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := h.CreateDataset("in", hub.DatasetConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int) { hubtest.ProduceNumbered(t, h, "in", from, to, `{"i":%d}`) }
	produce(0, 100)
	// 50 records whose zstd payload is garbled under a valid CRC.
	part, _ := ds.Partition(0)
	if base, last := hubtest.AppendCorruptBatch(t, part, 50); base != 100 || last != 149 {
		t.Fatalf("corrupt batch at offsets %d to %d, want 100 to 149", base, last)
	}
	produce(100, 200)
	end := part.HighWatermark()
	if end != 250 {
		t.Fatalf("high watermark %d, want 250", end)
	}
	h.Close()

	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {}}
pipelines:
  archive:
    from: in
    on_corrupt: dead_letter
    to: [{file: {path: %s/out.ndjson}}]
`, data, dir)), 0o644)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("weir run --until-drained with on_corrupt: dead_letter = %v:\n%s", err, stderr.String())
	}
	errText := stderr.String()

	out, err := os.ReadFile(filepath.Join(dir, "out.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 200 {
		t.Fatalf("%d records delivered, want the 200 good ones:\n%s", len(lines), errText)
	}
	for i, l := range lines {
		if want := fmt.Sprintf(`{"i":%d}`, i); l != want {
			t.Fatalf("record %d = %s, want %s", i, l, want)
		}
	}

	// The summary: 200 in and out, one dead letter, 50 corrupt offsets.
	var row []string
	for _, l := range strings.Split(errText, "\n") {
		if f := strings.Fields(l); len(f) == 10 && f[0] == "pipelines.archive" {
			row = f
		}
	}
	if row == nil || row[1] != "200" || row[2] != "200" || row[4] != "1" {
		t.Fatalf("summary row %q, want IN 200 OUT 200 DEAD 1:\n%s", row, errText)
	}
	if !strings.Contains(errText, "pipelines.archive: 50 offsets of corrupt record batches went to the dead-letter dataset") {
		t.Fatalf("summary does not account for the 50 corrupt offsets:\n%s", errText)
	}

	h, err = hub.Open(hub.Options{DataDir: data, Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// What `weir groups describe archive` shows: committed at the end, no lag.
	var found bool
	for _, g := range h.GroupStats() {
		if g.Name != "archive" {
			continue
		}
		for _, p := range g.Partitions {
			if p.Dataset == "in" && p.Partition == 0 {
				found = true
				if p.Committed != end || p.Lag != 0 || p.Committed != 200+50 {
					t.Fatalf("group archive in/0: committed %d lag %d; want %d (IN 200 + CORRUPT 50), lag 0", p.Committed, p.Lag, end)
				}
			}
		}
	}
	if !found {
		t.Fatal("group archive has no committed offset for in/0")
	}
	dead, err := h.Dataset("archive-dead")
	if err != nil {
		t.Fatal(err)
	}
	dp, _ := dead.Partition(0)
	cons, err := hub.NewLocalClient(h).Consume(t.Context(), hub.ConsumeOptions{Datasets: []string{"archive-dead"}, Broadcast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(t.Context())
	fs, err := cons.Poll(t.Context())
	if err != nil || len(fs) != 1 || len(fs[0].Records) != 1 || dp.HighWatermark() != 1 {
		t.Fatalf("dead letters: %v %+v (high watermark %d), want one record", err, fs, dp.HighWatermark())
	}
	var desc struct {
		Dataset    string `json:"dataset"`
		Partition  int32  `json:"partition"`
		BaseOffset int64  `json:"base_offset"`
		LastOffset int64  `json:"last_offset"`
		Reason     string `json:"reason"`
	}
	rec := fs[0].Records[0]
	if err := json.Unmarshal(rec.Value, &desc); err != nil {
		t.Fatalf("dead letter %q: %v", rec.Value, err)
	}
	if desc.Dataset != "in" || desc.Partition != 0 || desc.BaseOffset != 100 || desc.LastOffset != 149 || desc.Reason == "" {
		t.Fatalf("dead letter %+v, want in/0 offsets 100 to 149 with a reason", desc)
	}
	headers := map[string]string{}
	for _, hd := range rec.Headers {
		headers[string(hd.Key)] = string(hd.Value)
	}
	if headers["weir.stage"] != "read" || !strings.Contains(headers["weir.error"], "in/0") {
		t.Fatalf("dead letter headers %v, want stage read and the error", headers)
	}
}
