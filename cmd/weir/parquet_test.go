package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhub/weir/internal/ducktest"
)

// TestParquetCrashKill9 kills `weir run` with SIGKILL again and again
// while a pipeline writes a dataset as Parquet, then lets a last run
// finish: DuckDB reads every record exactly once, and never a partial
// file, also between the kills. WEIR_RUN_CRASHES sets the number of kills
// (default 6).
func TestParquetCrashKill9(t *testing.T) {
	kills := crashKills(6)
	dir := t.TempDir()
	const n = 80000
	prefill(t, filepath.Join(dir, "data"), "in", 3, n)
	lake := filepath.Join(dir, "lake")
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {in: {partitions: 3}}
pipelines:
  lake:
    from: in
    processors: [{rate_limit: {rate: 8000, burst: 1000}}]
    to:
      - parquet: {path: "%s/events/date={{ .date }}", rotate: {rows: 2500, interval: 0}}
        batching: {count: 500, bytes: 64KiB, period: 20ms}
`, filepath.Join(dir, "data"), lake)), 0o644)
	glob := fmt.Sprintf("read_parquet('%s/events/*/*.parquet', hive_partitioning=true)", lake)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for k := range kills {
		cmd := weirCmd(t, nil, "run", file, "--stats-every", "0", "--log-level", "warn")
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill comes at a random moment after the run published a
		// file of its own: the pipeline commits no record of an
		// unfinished file, so a run killed before it finishes one
		// leaves nothing behind (and a busy machine starts runs slowly).
		published := countParquet(lake)
		for deadline := time.Now().Add(30 * time.Second); countParquet(lake) == published && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			t.Fatalf("kill %d: weir run exited on its own (%v) before the kill:\n%s", k, cmd.ProcessState, logs.String())
		}
	}
	// Between runs every published file is whole: DuckDB reads them all.
	before := ducktest.Scalar(t, "select count(*) from "+glob)
	if before == "0" || before == fmt.Sprint(n) {
		t.Fatalf("%s of %d records in Parquet before the last run: the kills did not interrupt the work", before, n)
	}
	t.Logf("%s of %d records published across %d killed runs", before, n, kills)
	cmd := weirCmd(t, nil, "run", file, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the last run failed: %v\n%s", err, out)
	}
	want := fmt.Sprintf("%d/%d", n, n)
	if got := ducktest.Scalar(t, "select count(*) || '/' || count(distinct id) from "+glob); got != want {
		t.Errorf("rows/distinct ids = %s, want %s", got, want)
	}
	name := regexp.MustCompile(`^events/date=\d{4}-\d{2}-\d{2}/part-[0-2]-\d+-\d+\.parquet$`)
	files := 0
	filepath.WalkDir(lake, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			if e != nil && e.IsDir() && e.Name() == ".weir-staging" {
				return filepath.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(lake, p)
		if !name.MatchString(filepath.ToSlash(rel)) {
			t.Errorf("unexpected file %s in the lake", rel)
		}
		files++
		return nil
	})
	t.Logf("%d kills: all %d records in %d files, each once", kills, n, files)
}

// countParquet counts the published Parquet files under dir.
func countParquet(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.Contains(p, "/.weir-") {
			n++
		}
		return nil
	})
	return n
}
