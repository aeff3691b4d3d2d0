package pipelines

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
)

// TestDatasetSettingsApplyToAnExistingDataset: a pipeline file's dataset
// settings change an existing dataset when they are safe (retention,
// segment size) and are reported when they are not (fewer partitions).
func TestDatasetSettingsApplyToAnExistingDataset(t *testing.T) {
	h := openTestHub(t)
	if _, err := h.CreateDataset("events", hub.DatasetConfig{Partitions: 4, RetentionTime: 7 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	cfg := loadTest(t, "datasets: {events: {partitions: 2, retention: {time: 1h}, segment_bytes: 64KiB}}\n"+
		"pipelines: {p: {from: events, to: [{memory: {id: settings-out}}]}}\n")
	newMemSink(t, "settings-out")
	var logs bytes.Buffer
	e, err := New(cfg, Options{Hub: h, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.closeHub()
	ds, _ := h.Dataset("events")
	if c := ds.Config(); c.RetentionTime != time.Hour || c.SegmentBytes != 64<<10 || c.Partitions != 4 {
		t.Errorf("after New: %+v, want retention 1h, 64 KiB segments, 4 partitions kept", c)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "partitions: 2 asked, the dataset has 4") || !strings.Contains(out, "test.yaml:1:") {
		t.Errorf("the refused partition count was not reported with its place:\n%s", out)
	}
}
