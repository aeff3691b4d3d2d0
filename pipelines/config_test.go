package pipelines

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/lint")

// TestLintGolden loads each testdata/lint/*.yaml and compares every
// problem reported (file:line:col: message) with its .golden file.
func TestLintGolden(t *testing.T) {
	testRegistry(t)
	files, _ := filepath.Glob("testdata/lint/*.yaml")
	if len(files) == 0 {
		t.Fatal("no lint cases")
	}
	env := func(k string) (string, bool) { return "", false }
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := LoadFile(f, LoadOptions{Env: env})
			if err == nil {
				err = Check(cfg, nil)
			}
			var got string
			if err != nil {
				var es Errors
				if !errors.As(err, &es) {
					t.Fatalf("LoadFile returned %T, not Errors: %v", err, err)
				}
				got = err.Error() + "\n"
			} else {
				got = "ok: " + cfg.Pipelines[0].Name + "\n"
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems of %s:\n--- got\n%s--- want\n%s", f, got, want)
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	testRegistry(t)
	src := []byte(`
datasets:
  events: {partitions: "${PARTITIONS}"}
pipelines:
  p:
    from: events
    to:
      - memory: {id: "${SINK_ID:fallback}"}
        name: "$${LITERAL}"
`)
	env := map[string]string{"PARTITIONS": "3"}
	cfg, err := Load("t.yaml", src, LoadOptions{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Datasets[0].Partitions != 3 {
		t.Fatalf("partitions %d, want 3 from ${PARTITIONS}", cfg.Datasets[0].Partitions)
	}
	if id := cfg.Pipelines[0].To[0].Component.String("id"); id != "fallback" {
		t.Fatalf("id %q, want the default", id)
	}
	if n := cfg.Pipelines[0].To[0].Name; n != "${LITERAL}" {
		t.Fatalf("$${ escape gave %q", n)
	}
}

// TestInterpolationFlowStyle: ${VAR} works inside flow mappings and
// sequences, and an unclosed ${ is an error at its place (issue 10 item
// 11: `hub: {data_dir: ${DATA_DIR}}` failed with "did not find expected
// ',' or '}'").
func TestInterpolationFlowStyle(t *testing.T) {
	testRegistry(t)
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"DATA_DIR": "/tmp/w d", "ID": "x,y}"}[k]
		return v, ok
	}
	cfg, err := Load("t.yaml", []byte(`hub: {data_dir: ${DATA_DIR}}
datasets: {in: {partitions: ${N:2}}}
pipelines: {p: {from: [in], to: [{memory: {id: ${ID}}}]}}
`), LoadOptions{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hub.DataDir != "/tmp/w d" || cfg.Datasets[0].Partitions != 2 || cfg.Pipelines[0].To[0].Component.String("id") != "x,y}" {
		t.Fatalf("data_dir %q, partitions %d, id %q", cfg.Hub.DataDir, cfg.Datasets[0].Partitions, cfg.Pipelines[0].To[0].Component.String("id"))
	}
	_, err = Load("t.yaml", []byte(`hub: {data_dir: ./d}
datasets: {in: {}}
pipelines:
  p:
    from: in
    to: [{memory: {id: "${TOKEN"}}]
`), LoadOptions{Env: env})
	if err == nil || !strings.Contains(err.Error(), "t.yaml:6:25: unclosed or malformed ${") {
		t.Fatalf("unclosed ${: %v, want an error at 6:25", err)
	}
}

// TestDatasetCleanupPolicy: cleanup_policy and delete_retention of a
// dataset reach the hub's config and the Kafka topic configs.
func TestDatasetCleanupPolicy(t *testing.T) {
	testRegistry(t)
	src := []byte(`
datasets:
  cache: {cleanup_policy: compact, delete_retention: 1h, min_cleanable_dirty_ratio: 0.25}
pipelines:
  p:
    from: cache
    to:
      - memory: {id: x}
`)
	cfg, err := Load("t.yaml", src, LoadOptions{Env: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Datasets[0]
	if d.CleanupPolicy != "compact" || d.DeleteRetention != 3600e9 {
		t.Fatalf("dataset config %+v, want cleanup policy compact and delete retention 1h", d)
	}
	if got := d.topic().Configs; got["cleanup.policy"] != "compact" || got["delete.retention.ms"] != "3600000" || got["min.cleanable.dirty.ratio"] != "0.25" {
		t.Errorf("topic configs %v", got)
	}
	_, err = Load("t.yaml", []byte("datasets:\n  cache: {cleanup_policy: compact, min_cleanable_dirty_ratio: 2}\npipelines:\n  p: {from: cache, to: [{memory: {id: x}}]}\n"),
		LoadOptions{Env: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "t.yaml:2:") || !strings.Contains(err.Error(), "min_cleanable_dirty_ratio") {
		t.Errorf("min_cleanable_dirty_ratio 2: %v, want an error at t.yaml:2", err)
	}
	_, err = Load("t.yaml", []byte("datasets:\n  cache: {cleanup_policy: shrink}\npipelines:\n  p: {from: cache, to: [{memory: {id: x}}]}\n"),
		LoadOptions{Env: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "t.yaml:2:") {
		t.Errorf("cleanup_policy shrink: %v, want an error at t.yaml:2", err)
	}
}
