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
