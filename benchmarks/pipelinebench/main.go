// Command pipelinebench measures Weir's pipelines against a plain Go
// program doing the same job with encoding/json, in one run on one
// machine: a seeded NDJSON web-access log (about 270-byte records, a
// quarter at level debug) is parsed, debug records dropped, a field added,
// and the rest written as an NDJSON file. It prints wall MB/s, records/s,
// MB per CPU-second and peak RSS of each, measured with the children's
// rusage (and the peak of the process's own memory, without the pages of
// its binary), and the ratios, and the bytes the hub stores per GB of
// input (its datasets compress batches by default: lz4; -compression none
// measures without).
//
//	go run ./pipelinebench -size 512MiB -workdir ../data/bench-pipeline
//
// Weir runs three ways: end to end (stdin -> dataset -> pipeline -> file,
// all in one `weir run`), the pipeline alone over a backlog already in the
// hub, and (with -backlog) the pipeline for a while over a backlog of that
// size, to show that its memory does not grow with the backlog.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		baseline(os.Args[2], os.Args[3])
		return
	}
	size := flag.String("size", "512MiB", "size of the generated NDJSON log")
	workdir := flag.String("workdir", "./data/bench-pipeline", "scratch directory (the input is kept and reused)")
	backlog := flag.String("backlog", "", "also run the pipeline over a backlog of this size (10GiB) and report its peak RSS")
	backlogFor := flag.Duration("backlog-for", 20*time.Second, "how long the pipeline runs over the big backlog")
	src := flag.String("src", "..", "the Weir module to build weir from")
	compression := flag.String("compression", "", "the dataset's compression (none, lz4, zstd, ...); default: the dataset's default (lz4 for Weir's own writers)")
	flag.Parse()
	n, err := humanize.ParseBytes(*size)
	check(err)
	check(os.MkdirAll(*workdir, 0o755))
	wd, _ := filepath.Abs(*workdir)

	input := filepath.Join(wd, fmt.Sprintf("access-%s.ndjson", strings.ReplaceAll(*size, " ", "")))
	records, kept := generate(input, int64(n))
	fmt.Printf("input: %s, %d records (%d not debug), %s\n\n", input, records, kept, humanize.IBytes(fileSize(input)))

	weir := filepath.Join(wd, "weir")
	fmt.Println("building weir ...")
	run(exec.Command("go", "build", "-C", *src, "-o", weir, "./cmd/weir"))
	self, _ := os.Executable()

	type result struct {
		name  string
		wall  time.Duration
		cpu   time.Duration
		rss   int64
		anon  int64
		bytes int64
	}
	var results []result
	measure := func(name string, cmd *exec.Cmd, bytes int64) result {
		start := time.Now()
		cmd.Stderr = os.Stderr
		check(cmd.Start())
		anon := peakAnon(cmd.Process.Pid)
		check(cmd.Wait())
		wall := time.Since(start)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r := result{name, wall, cpu, ru.Maxrss * 1024, <-anon, bytes}
		results = append(results, r)
		return r
	}
	in := int64(fileSize(input))

	// 1. The plain Go program.
	out := filepath.Join(wd, "out-baseline.ndjson")
	measure("plain Go, encoding/json", exec.Command(self, "baseline", input, out), in)
	countLines(out, kept, "baseline")

	// 2. Weir end to end: stdin -> dataset -> pipeline -> file.
	data := filepath.Join(wd, "hub")
	os.RemoveAll(data)
	os.RemoveAll(filepath.Join(wd, "out-weir"))
	cfg := writeConfig(wd, data, *compression, true)
	cmd := exec.Command(weir, "run", cfg, "--until-drained", "--stats-every", "0", "--log-level", "warn")
	f, err := os.Open(input)
	check(err)
	cmd.Stdin = f
	measure("weir run: stdin -> hub -> pipeline -> file", cmd, in)
	f.Close()
	countLines(filepath.Join(wd, "out-weir"), kept, "weir end to end")
	stored := hubSize(data)
	fmt.Printf("hub: %s stored for %s of input, %.0f MB per GB of input\n", humanize.IBytes(uint64(stored)),
		humanize.IBytes(uint64(in)), float64(stored)/float64(in)*1000)

	// 3. Weir, the pipeline alone over the backlog now in the hub (a new
	// consumer group reads it all again).
	os.RemoveAll(filepath.Join(wd, "out-weir"))
	cfg = writeConfig(wd, data, *compression, false)
	measure("weir run: pipeline over a backlog in the hub", exec.Command(weir, "run", cfg, "--until-drained", "--stats-every", "0", "--log-level", "warn"), in)
	countLines(filepath.Join(wd, "out-weir"), kept, "weir pipeline")

	fmt.Printf("\n%-46s %9s %9s %12s %10s %9s %9s %10s\n", "run", "wall", "MB/s", "records/s", "MB/CPU-s", "peak RSS", "anon RSS", "vs plain")
	base := float64(results[0].bytes) / 1e6 / results[0].cpu.Seconds()
	for _, r := range results {
		perCPU := float64(r.bytes) / 1e6 / r.cpu.Seconds()
		fmt.Printf("%-46s %9s %9.1f %12.0f %10.1f %9s %9s %9.2fx\n", r.name, r.wall.Round(time.Millisecond),
			float64(r.bytes)/1e6/r.wall.Seconds(), float64(records)/r.wall.Seconds(), perCPU,
			humanize.IBytes(uint64(r.rss)), humanize.IBytes(uint64(r.anon)), perCPU/base)
	}
	fmt.Println("\nMB = 10^6 bytes of input; MB/CPU-s divides by user+system CPU time of the process (rusage).")
	fmt.Println("Peak RSS (rusage) counts the pages of the program's own file mapped in, which grow with the size of the")
	fmt.Println("binary; anon RSS is the peak of the process's own memory (RssAnon, sampled every 20 ms).")

	if *backlog != "" {
		target, err := humanize.ParseBytes(*backlog)
		check(err)
		fmt.Printf("\nfilling a backlog of %s in the hub ...\n", humanize.IBytes(target))
		cfg := writeIngest(wd, data)
		for hubSize(data) < int64(target) {
			cmd := exec.Command(weir, "run", cfg, "--until-drained", "--stats-every", "0", "--log-level", "warn")
			f, _ := os.Open(input)
			cmd.Stdin = f
			cmd.Stderr = os.Stderr
			check(cmd.Run())
			f.Close()
			fmt.Printf("  backlog %s\n", humanize.IBytes(uint64(hubSize(data))))
		}
		os.RemoveAll(filepath.Join(wd, "out-weir"))
		cfg = writeConfig(wd, data, *compression, false)
		cmd := exec.Command(weir, "run", cfg, "--stats-every", "0", "--log-level", "warn")
		cmd.Stderr = os.Stderr
		check(cmd.Start())
		time.Sleep(*backlogFor)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		done := dirSize(filepath.Join(wd, "out-weir"))
		fmt.Printf("pipeline over a %s backlog for %s: wrote %s, peak RSS %s\n", humanize.IBytes(uint64(hubSize(data))),
			*backlogFor, humanize.IBytes(uint64(done)), humanize.IBytes(uint64(ru.Maxrss*1024)))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipelinebench:", err)
		os.Exit(1)
	}
}

func run(cmd *exec.Cmd) {
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	check(cmd.Run())
}

func fileSize(path string) uint64 {
	st, err := os.Stat(path)
	check(err)
	return uint64(st.Size())
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func hubSize(data string) int64 { return dirSize(filepath.Join(data, "datasets", "access")) }

// generate writes the seeded log once (it is kept for later runs) and
// returns the records and the non-debug ones.
func generate(path string, size int64) (records, kept int) {
	meta := path + ".count"
	if b, err := os.ReadFile(meta); err == nil {
		if _, err := fmt.Sscan(string(b), &records, &kept); err == nil {
			return records, kept
		}
	}
	f, err := os.Create(path)
	check(err)
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(42, 270))
	levels := []string{"debug", "info", "info", "warn", "error", "info", "debug", "info"}
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/orders", "/api/v1/users", "/login", "/static/app.js", "/healthz", "/api/v1/cart"}
	uas := []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)", "Go-http-client/2.0"}
	ts := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	var written int64
	var buf []byte
	for written < size {
		lvl := levels[rng.IntN(len(levels))]
		if rng.IntN(4) == 0 {
			lvl = "debug"
		} else if lvl == "debug" {
			lvl = "info"
		}
		status := []int{200, 200, 200, 201, 304, 404, 500}[rng.IntN(7)]
		ts = ts.Add(time.Duration(rng.IntN(2000)) * time.Microsecond)
		buf = buf[:0]
		buf = append(buf, `{"ts":"`...)
		buf = ts.AppendFormat(buf, "2006-01-02T15:04:05.000Z")
		buf = append(buf, `","level":"`...)
		buf = append(buf, lvl...)
		buf = fmt.Appendf(buf, `","host":"web-%02d","method":"%s","path":"%s/%d","status":%d,"latency_ms":%.1f,"bytes":%d,"ua":"%s","ip":"10.%d.%d.%d","trace":"%016x"}`,
			rng.IntN(24), methods[rng.IntN(len(methods))], paths[rng.IntN(len(paths))], rng.IntN(100000), status,
			rng.ExpFloat64()*40, rng.IntN(20000), uas[rng.IntN(len(uas))], rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.Uint64())
		buf = append(buf, '\n')
		w.Write(buf)
		written += int64(len(buf))
		records++
		if lvl != "debug" {
			kept++
		}
	}
	check(w.Flush())
	check(f.Close())
	os.WriteFile(meta, []byte(fmt.Sprintf("%d %d", records, kept)), 0o644)
	return records, kept
}

// baseline is the plain Go program: encoding/json into a map per record.
func baseline(in, out string) {
	f, err := os.Open(in)
	check(err)
	defer f.Close()
	o, err := os.Create(out)
	check(err)
	w := bufio.NewWriterSize(o, 1<<20)
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 1<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		if m["level"] == "debug" {
			continue
		}
		m["env"] = "prod"
		b, err := json.Marshal(m)
		check(err)
		w.Write(b)
		w.WriteByte('\n')
	}
	check(sc.Err())
	check(w.Flush())
	check(o.Close())
}

// peakAnon samples the RssAnon of process pid until it exits and then
// sends the peak, in bytes (0 where /proc does not say).
func peakAnon(pid int) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		path := fmt.Sprintf("/proc/%d/status", pid)
		for {
			b, err := os.ReadFile(path)
			if err != nil {
				break
			}
			_, after, ok := strings.Cut(string(b), "RssAnon:")
			if !ok {
				break
			}
			var kb int64
			fmt.Sscan(after, &kb)
			peak = max(peak, kb*1024)
			time.Sleep(20 * time.Millisecond)
		}
		out <- peak
	}()
	return out
}

func writeConfig(wd, data, compression string, endToEnd bool) string {
	var b strings.Builder
	comp := ""
	if compression != "" {
		comp = ", compression: " + compression
	}
	fmt.Fprintf(&b, "hub: {data_dir: %s}\ndatasets:\n  access: {partitions: 4, retention: {time: forever}%s}\n", data, comp)
	if endToEnd {
		b.WriteString("sources:\n  in: {stdin: {}, to: access}\n")
	}
	group := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	fmt.Fprintf(&b, `pipelines:
  %s:
    from: access
    processors:
      - parse: json
      - filter: 'level != "debug"'
      - set: {env: '"prod"'}
    to:
      - file: {path: %s/out-weir/access.ndjson, format: ndjson, rotate: {size: 4GiB}}
`, group, wd)
	path := filepath.Join(wd, "pipeline.yaml")
	check(os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

func writeIngest(wd, data string) string {
	path := filepath.Join(wd, "ingest.yaml")
	check(os.WriteFile(path, []byte(fmt.Sprintf("hub: {data_dir: %s}\ndatasets:\n  access: {partitions: 4, retention: {time: forever}}\nsources:\n  in: {stdin: {}, to: access}\n", data)), 0o644))
	return path
}

// countLines checks that a run wrote the records it should have.
func countLines(path string, want int, what string) {
	var n int
	filepath.Walk(path, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		check(err)
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			n++
		}
		return nil
	})
	if n != want {
		check(fmt.Errorf("%s wrote %d records, want %d", what, n, want))
	}
}
