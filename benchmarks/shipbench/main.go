// Command shipbench measures Weir as a log-shipping agent against peers
// doing the same job on the same machine in the same run:
//
//  1. tail -> Elasticsearch: JSON log lines (about 385 bytes) written to
//     files are tailed by the file source into a dataset of the embedded
//     hub, parsed as JSON by a pipeline and indexed by the elasticsearch
//     sink; next to a bare esutil.BulkIndexer loop (go-elasticsearch's
//     bulk helper) reading the same files and sending the same lines to
//     the same server, with as many requests in flight and the same
//     request size. Two servers, each its own process: a stub that
//     answers every document created without storing it (the clients'
//     cost shows), then a real ZincSearch (internal/zinctest, built once
//     and cached), which answers once documents are in its write-ahead
//     log and indexes them in the background, slowly. After each side the
//     server must hold every document, and is left to go idle before the
//     next side starts. Target: Weir at least 0.9x the bare loop's docs/s.
//  2. tail -> file: lines tailed into the hub and archived by the file
//     sink as zstd; next to a plain Go program copying the lines (bufio)
//     through the same zstd encoder, and to `cat files | zstd -3 -T1`.
//     Every output is decompressed and checked to hold every line exactly
//     once.
//
// Each side runs in a process of its own: Weir's is the engine `weir run`
// uses (pipelines.New on a generated pipeline file, with the defaults but
// for what the bare loop must match), stopped once its sink delivered
// every record (the file source tails for ever); the peers are this
// program again, or the shell. CPU-seconds are user+system time of that
// process (rusage), and for the servers their own, from /proc. The order
// of the sides alternates between rounds. Ratios are what to read: the
// machines are shared and noisy.
//
//	go run ./shipbench -docs 50000 -stub-docs 500000 -file-size 256MiB -rounds 2 -workdir ../data/bench-ship
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/weirhub/weir/internal/zinctest"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "child" {
		child(os.Args[2], os.Args[3:])
		return
	}
	docs := flag.Int("docs", 50000, "JSON documents sent to ZincSearch by each side (0: skip); it indexes about 1,000 a second here")
	stubDocs := flag.Int("stub-docs", 500000, "JSON documents sent to the stub server by each side (0: skip)")
	fileSize := flag.String("file-size", "256MiB", "size of the input of the file comparison (0: skip it)")
	nfiles := flag.Int("files", 4, "log files each input is spread over")
	partitions := flag.Int("partitions", 2, "partitions of Weir's dataset")
	workers := flag.Int("workers", 2, "bulk requests in flight, both sides (the sink's workers, the indexer's NumWorkers)")
	flushBytes := flag.String("flush-bytes", "5MiB", "bulk request size, both sides (the sink's flush_bytes, the indexer's FlushBytes)")
	batching := flag.String("batching", "", "the elasticsearch sink's batching.bytes (default: the pipeline's, 1MiB)")
	period := flag.String("period", "", "the elasticsearch sink's batching.period (default: the pipeline's, 500ms)")
	rounds := flag.Int("rounds", 2, "rounds of each comparison; the order of the sides alternates")
	workdir := flag.String("workdir", "./data/bench-ship", "scratch directory (inputs are kept and reused)")
	profile := flag.String("profile", "", "write CPU profiles of Weir's side into this directory")
	stall := flag.Duration("stall", time.Minute, "fail when Weir makes no progress for this long")
	flag.Parse()
	if *profile != "" {
		dir, err := filepath.Abs(*profile)
		check(err)
		check(os.MkdirAll(dir, 0o755))
		os.Setenv(profileEnv, dir)
	}
	check(os.MkdirAll(*workdir, 0o755))
	wd, err := filepath.Abs(*workdir)
	check(err)
	fsize, err := parseSize(*fileSize)
	check(err)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		check(errors.New("interrupted"))
	}()

	var tables []func()
	t := esTarget{Workers: *workers, FlushBytes: *flushBytes, Batching: *batching, Period: *period}
	compare := func(srv *esServer, in input) {
		fmt.Printf("tail -> elasticsearch, %s: %d JSON documents, %s in %d files (%s)\n", srv.Name, in.lines, humanize.IBytes(uint64(in.bytes)), len(in.files), in.dir)
		var bare, weir []result
		for round := 1; round <= *rounds; round++ {
			rs := esRound(srv, wd, in, t, round, round%2 == 0, *partitions, *stall)
			bare, weir = append(bare, rs[0]), append(weir, rs[1])
		}
		tables = append(tables, func() { esTable(srv, bare, weir) })
	}
	if *stubDocs > 0 {
		in := generate(filepath.Join(wd, "input-stub"), *stubDocs, 0, *nfiles, 1)
		st := startStub()
		atExit = st.stop
		compare(stubESServer(st), in)
		st.stop()
		atExit = nil
	}
	if *docs > 0 {
		in := generate(filepath.Join(wd, "input-es"), *docs, 0, *nfiles, 1)
		fmt.Printf("starting ZincSearch %s (built and cached on first use) ...\n", zinctest.Version)
		srvDir := filepath.Join(wd, "zincsearch")
		check(os.RemoveAll(srvDir))
		check(os.MkdirAll(srvDir, 0o755))
		zs, stop, err := zinctest.StartProcess(srvDir)
		check(err)
		atExit = stop
		compare(zincServer(zs), in)
		stop()
		atExit = nil
		os.RemoveAll(srvDir)
	}
	if len(tables) > 0 {
		tables = append(tables, func() {
			fmt.Printf("Both sides: %d bulk requests in flight of at most %s, no compression. docs/s and MB/s (10^6 bytes of input\n"+
				"lines) until every bulk request was answered; Weir's include the pipeline's batching.period (%s), which the last\n"+
				"records wait for a fuller batch. all visible: from the start until the server showed every document (ZincSearch\n"+
				"indexes in the background after answering). CPU-s: user+system time of the side's process; server CPU-s: the\n"+
				"server's over the same span.\n", t.Workers, t.FlushBytes, cmp.Or(t.Period, "500ms"))
		})
	}
	if fsize > 0 {
		in := generate(filepath.Join(wd, "input-file"), 0, int64(fsize), *nfiles, 2)
		fmt.Printf("tail -> file: %d lines, %s in %d files (%s)\n", in.lines, humanize.IBytes(uint64(in.bytes)), len(in.files), in.dir)
		want := sumFiles(in.files)
		var all [][]result
		for round := 1; round <= *rounds; round++ {
			all = append(all, fileRound(wd, in, want, round, *partitions, *stall))
		}
		tables = append(tables, func() { fileTable(all) })
	}
	for _, table := range tables {
		fmt.Println()
		table()
	}
}

// esTable prints the Elasticsearch comparison, every round, and the ratio
// of the totals.
func esTable(srv *esServer, bare, weir []result) {
	fmt.Printf("%-50s %9s %9s %9s %7s %8s %9s %8s %12s %9s\n", "tail -> elasticsearch: "+srv.Name, "docs", "wall", "docs/s", "MB/s", "CPU-s", "peak RSS", "vs bare", "all visible", "server CPU-s")
	var bw, ww time.Duration
	var bd, wdocs int64
	for i := range bare {
		b := float64(bare[i].Docs) / bare[i].Wall.Seconds()
		for _, r := range []result{bare[i], weir[i]} {
			rate := float64(r.Docs) / r.Wall.Seconds()
			fmt.Printf("%-50s %9d %9s %9.0f %7.1f %8.2f %9s %7.2fx %12s %9.2f\n", r.Name, r.Docs, r.Wall.Round(time.Millisecond), rate,
				float64(r.Bytes)/1e6/r.Wall.Seconds(), r.CPU.Seconds(), humanize.IBytes(uint64(r.RSS)), rate/b, r.Visible.Round(100*time.Millisecond), r.ServerCPU.Seconds())
		}
		bw += bare[i].Wall
		ww += weir[i].Wall
		bd += bare[i].Docs
		wdocs += weir[i].Docs
	}
	ratio := (float64(wdocs) / ww.Seconds()) / (float64(bd) / bw.Seconds())
	verdict := "meets"
	if ratio < 0.9 {
		verdict = "misses"
	}
	fmt.Printf("sink/bare docs/s against the %s: %.2fx over %d round(s) (%s the 0.9x target).\n", srv.Name, ratio, len(bare), verdict)
}

// fileTable prints the file comparison; ratios are against the plain Go
// program of the same round.
func fileTable(all [][]result) {
	fmt.Printf("%-50s %9s %9s %9s %8s %9s %9s %9s %s\n", "tail -> file", "lines", "wall", "MB/s", "CPU-s", "MB/CPU-s", "peak RSS", "vs Go", "")
	var weir, plain result
	for _, rs := range all {
		goRate := float64(rs[1].Bytes) / rs[1].Wall.Seconds()
		for _, r := range rs {
			rate := float64(r.Bytes) / r.Wall.Seconds()
			fmt.Printf("%-50s %9d %9s %9.1f %8.2f %9.1f %9s %8.2fx %s\n", r.Name, r.Docs, r.Wall.Round(time.Millisecond), rate/1e6,
				r.CPU.Seconds(), float64(r.Bytes)/1e6/r.CPU.Seconds(), humanize.IBytes(uint64(r.RSS)), rate/goRate, r.Note)
		}
		weir.Bytes, weir.Wall, weir.CPU = weir.Bytes+rs[0].Bytes, weir.Wall+rs[0].Wall, weir.CPU+rs[0].CPU
		plain.Bytes, plain.Wall, plain.CPU = plain.Bytes+rs[1].Bytes, plain.Wall+rs[1].Wall, plain.CPU+rs[1].CPU
	}
	fmt.Printf("weir/plain Go over %d round(s): %.2fx MB/s, %.2fx MB per CPU-second.\n", len(all),
		(float64(weir.Bytes)/weir.Wall.Seconds())/(float64(plain.Bytes)/plain.Wall.Seconds()),
		(float64(weir.Bytes)/weir.CPU.Seconds())/(float64(plain.Bytes)/plain.CPU.Seconds()))
	fmt.Println("MB = 10^6 bytes of input; vs Go compares MB/s with the plain Go program of the same round; ratio is input/compressed\n" +
		"size. Weir stores every line in its hub (a commit log on disk) and reads it back before the file sink compresses it.")
}

// child runs one side in this process and reports its result.
func child(kind string, args []string) {
	switch kind {
	case "weir": // <name> <pipeline file> <sink> <records> <bytes> <stall>
		want, _ := strconv.ParseInt(args[3], 10, 64)
		size, _ := strconv.ParseInt(args[4], 10, 64)
		stall, err := time.ParseDuration(args[5])
		check(err)
		runWeir(args[0], args[1], args[2], want, size, stall)
	case "bare-es":
		bareChild(args)
	case "stub":
		runStub()
	case "copy": // <out> <files...>
		runCopy("copy", args[1:], args[0])
	default:
		check(fmt.Errorf("unknown child %q", kind))
	}
}

func parseSize(s string) (uint64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	return humanize.ParseBytes(s)
}

// atExit runs before check exits the program (it stops the server).
var atExit func()

func check(err error) {
	if err != nil {
		if atExit != nil {
			atExit()
		}
		fmt.Fprintln(os.Stderr, "shipbench:", err)
		os.Exit(1)
	}
}
