// Command analyticsbench (make bench-analytics) measures the analytics
// ingestion path: an NDJSON file of events through `weir run` (stdin
// source, the hub's dataset, the parquet sink with zstd) against DuckDB's
// own `COPY (FROM read_json_auto(...)) TO '...parquet'` on the same file in
// the same run, several times with the sides alternating (-runs). It
// reports the medians of MB of input per CPU-second, peak RSS and the
// size of the Parquet output of each, and checks that both outputs hold
// every event and the same values. With -baseline, a second weir binary
// runs in the same alternation and is reported beside the first (an A/B
// of two builds on the same input, in the same run). DuckDB runs from the @duckdb/node-api package that
// internal/ducktest installs (the Makefile target installs it first).
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "analyticsbench:", err)
		os.Exit(1)
	}
}

type result struct {
	name  string
	wall  time.Duration
	cpu   time.Duration
	rss   int64
	bytes int64 // Parquet output
	rows  string
	sums  string // the 12 sums and distinct counts
}

// run runs a shell script and measures it from outside with wait4: CPU
// time and peak RSS of the shell and what it waited for.
func run(name, script string) result {
	cmd := exec.Command("sh", "-c", script)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		check(fmt.Errorf("%s: %v\n%s", name, err, errb.Bytes()))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{name: name, wall: time.Since(start), cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rss: ru.Maxrss * 1024}
}

func duckdbDir() string {
	cache, err := os.UserCacheDir()
	check(err)
	dir := filepath.Join(cache, "weir-test", "duckdb")
	if _, err := os.Stat(filepath.Join(dir, "query.mjs")); err != nil {
		check(fmt.Errorf("DuckDB is not installed in %s: run go test -run TestQuery ./internal/ducktest", dir))
	}
	return dir
}

func duck(sql string) string {
	cmd := exec.Command("node", filepath.Join(duckdbDir(), "query.mjs"), sql)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		check(fmt.Errorf("duckdb: %s: %v\n%s", sql, err, ee.Stderr))
	}
	check(err)
	var r struct{ Rows []map[string]any }
	check(json.Unmarshal(out, &r))
	var vals []string
	for _, row := range r.Rows {
		for _, v := range row {
			vals = append(vals, fmt.Sprint(v))
		}
	}
	return strings.Join(vals, ",")
}

func sizeOf(root string) int64 {
	var n int64
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.Contains(p, "/.weir-") {
			n += info.Size()
		}
		return nil
	})
	return n
}

// generate writes about size bytes of events to path and returns the
// count and the exact size.
func generate(path string, size int64) (int, int64) {
	f, err := os.Create(path)
	check(err)
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	pages := []string{"/", "/search", "/cart", "/checkout", "/p/item", "/account", "/help"}
	countries := []string{"FR", "DE", "US", "JP", "BR", "IN", "GB"}
	base := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	var n int
	var written int64
	for written < size {
		ts := base.Add(time.Duration(n) * 7 * time.Millisecond)
		line := fmt.Appendf(nil, `{"id":%d,"ts":%q,"user_id":%d,"session":"s-%08x","event":"view","page":%q,"status":%d,"latency_ms":%.3f,"ok":%v,"tags":["web","%s"],"geo":{"country":%q,"city_id":%d}}`+"\n",
			n, ts.Format("2006-01-02T15:04:05.000Z"), rng.IntN(100000), rng.Uint32(), pages[rng.IntN(len(pages))], []int{200, 200, 200, 304, 404, 500}[rng.IntN(6)],
			rng.Float64()*300, rng.IntN(10) != 0, countries[rng.IntN(len(countries))], countries[rng.IntN(len(countries))], rng.IntN(5000))
		w.Write(line)
		written += int64(len(line))
		n++
	}
	check(w.Flush())
	check(f.Close())
	return n, written
}

func main() {
	weir := flag.String("weir", "bin/weir", "the weir binary")
	mib := flag.Int64("mib", 256, "size of the NDJSON input in MiB")
	workdir := flag.String("workdir", "data/bench-analytics", "working directory (emptied)")
	outPath := flag.String("out", "", "also write the Markdown report here")
	runs := flag.Int("runs", 3, "runs of each side, alternating; the report gives the medians")
	baseline := flag.String("baseline", "", "another weir binary to run in the same alternation (A/B of two builds)")
	flag.Parse()
	wd, err := filepath.Abs(*workdir)
	check(err)
	bin, err := filepath.Abs(*weir)
	check(err)
	check(os.RemoveAll(wd))
	check(os.MkdirAll(wd, 0o755))
	input := filepath.Join(wd, "events.ndjson")
	events, inBytes := generate(input, *mib<<20)
	fmt.Fprintf(os.Stderr, "analyticsbench: %d events, %.1f MiB of NDJSON\n", events, float64(inBytes)/(1<<20))

	cfg := filepath.Join(wd, "analytics.yaml")
	check(os.WriteFile(cfg, []byte(fmt.Sprintf(`hub: {data_dir: %s/hub}
datasets:
  events: {partitions: 1, compression: lz4}
sources:
  in:
    stdin: {codec: ndjson}
    to: events
pipelines:
  lake:
    from: events
    to:
      - parquet: {path: "%s/lake/date={{ .date }}", compression: zstd}
`, wd, wd)), 0o644))
	duckOut := filepath.Join(wd, "duckdb.parquet")
	sql := fmt.Sprintf("COPY (FROM read_json_auto('%s')) TO '%s' (FORMAT parquet, COMPRESSION zstd)", input, duckOut)
	// The two sides alternate, run after run, so that a machine busy
	// with other work slows both alike; the medians are compared.
	// Both files must hold the same values, not only as many rows.
	const sums = `select concat_ws(',', count(distinct session), sum(user_id), round(sum(latency_ms), 3), epoch_ms(min(ts)::timestamp),
		epoch_ms(max(ts)::timestamp), sum(geo.city_id), count(distinct geo.country), sum(len(tags)), count(*) filter (where ok),
		sum(status), count(distinct page), count(distinct tags[2])) from `
	runWeir := func(name, bin string) result {
		check(os.RemoveAll(filepath.Join(wd, "hub")))
		check(os.RemoveAll(filepath.Join(wd, "lake")))
		w := run(name, fmt.Sprintf("%s run %s --until-drained --stats-every 0 --log-level warn < %s", bin, cfg, input))
		w.bytes = sizeOf(filepath.Join(wd, "lake"))
		w.rows = duck(fmt.Sprintf("select count(*) || '/' || count(distinct id) from read_parquet('%s/lake/*/*.parquet')", wd))
		w.sums = duck(sums + fmt.Sprintf("read_parquet('%s/lake/*/*.parquet')", wd))
		return w
	}
	var ws, bs, ds []result
	for i := range *runs {
		var w, b result
		if *baseline != "" && i%2 == 1 {
			b = runWeir("weir run, baseline build", *baseline)
		}
		w = runWeir("weir run (stdin -> dataset -> parquet sink)", bin)
		if *baseline != "" && i%2 == 0 {
			b = runWeir("weir run, baseline build", *baseline)
		}
		check(os.RemoveAll(duckOut))
		d := run("DuckDB COPY read_json_auto -> parquet", fmt.Sprintf("node %s %q", filepath.Join(duckdbDir(), "query.mjs"), sql))
		d.bytes = sizeOf(duckOut)
		fmt.Fprintf(os.Stderr, "analyticsbench: run %d: weir %.2f CPU-s %.0f MiB RSS, DuckDB %.2f CPU-s %.0f MiB RSS\n", i+1,
			w.cpu.Seconds(), float64(w.rss)/(1<<20), d.cpu.Seconds(), float64(d.rss)/(1<<20))
		if *baseline != "" {
			fmt.Fprintf(os.Stderr, "analyticsbench: run %d: baseline %.2f CPU-s %.0f MiB RSS\n", i+1, b.cpu.Seconds(), float64(b.rss)/(1<<20))
			bs = append(bs, b)
		}
		ws, ds = append(ws, w), append(ds, d)
	}
	d := median(ds)
	d.rows = duck(fmt.Sprintf("select count(*) || '/' || count(distinct id) from '%s'", duckOut))
	d.sums = duck(sums + fmt.Sprintf("'%s'", duckOut))
	for _, r := range slices.Concat(ws, bs) {
		if r.sums != d.sums {
			check(fmt.Errorf("the outputs differ: %s's sums %s, DuckDB's %s", r.name, r.sums, d.sums))
		}
	}
	w := median(ws)
	sides := []result{w, d}
	if len(bs) > 0 {
		sides = []result{w, median(bs), d}
	}

	var rep strings.Builder
	fmt.Fprintf(&rep, "NDJSON -> Parquet (zstd), %d events, %.1f MiB, %s; medians of %d runs, the sides alternating\n\n", events, float64(inBytes)/(1<<20), time.Now().UTC().Format(time.RFC3339), *runs)
	rep.WriteString("| side | wall s | CPU s | MB/CPU-s | peak RSS MiB | Parquet MiB | rows/distinct |\n|---|---|---|---|---|---|---|\n")
	for _, r := range sides {
		fmt.Fprintf(&rep, "| %s | %.2f | %.2f | %.1f | %.1f | %.2f | %s |\n", r.name, r.wall.Seconds(), r.cpu.Seconds(),
			float64(inBytes)/1e6/r.cpu.Seconds(), float64(r.rss)/(1<<20), float64(r.bytes)/(1<<20), r.rows)
	}
	fmt.Fprintf(&rep, "\nEvery output holds the same values (12 sums and distinct counts over every column agree).\n")
	fmt.Fprintf(&rep, "Weir/DuckDB: %.2fx the MB per CPU-second (target >= 0.5), output %.2fx the size (target <= 1.2); Weir's peak RSS %.0f MiB (target <= 128 MiB for 1 GiB).\n",
		d.cpu.Seconds()/w.cpu.Seconds(), float64(w.bytes)/float64(d.bytes), float64(w.rss)/(1<<20))
	if len(bs) > 0 {
		b := median(bs)
		fmt.Fprintf(&rep, "Baseline build/DuckDB: %.2fx the MB per CPU-second, output %.2fx the size; peak RSS %.0f MiB.\n",
			d.cpu.Seconds()/b.cpu.Seconds(), float64(b.bytes)/float64(d.bytes), float64(b.rss)/(1<<20))
	}
	fmt.Print(rep.String())
	if *outPath != "" {
		check(os.WriteFile(*outPath, []byte(rep.String()), 0o644))
	}
}

// median is the run of the median CPU time, with the median wall time and
// peak RSS of the runs.
func median(rs []result) result {
	by := func(key func(result) int64) []result {
		s := slices.Clone(rs)
		slices.SortFunc(s, func(a, b result) int { return cmp.Compare(key(a), key(b)) })
		return s
	}
	m := by(func(r result) int64 { return int64(r.cpu) })[len(rs)/2]
	m.wall = by(func(r result) int64 { return int64(r.wall) })[len(rs)/2].wall
	m.rss = by(func(r result) int64 { return r.rss })[len(rs)/2].rss
	return m
}
