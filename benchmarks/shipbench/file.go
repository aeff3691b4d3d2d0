package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// writeFileConfig writes the Weir side's pipeline file: tail the input's
// files into a dataset, archive every line into zstd-compressed daily
// files.
func writeFileConfig(dir, out string, in input, partitions int) string {
	yaml := fmt.Sprintf(`hub: {data_dir: %q}
datasets:
  logs: {partitions: %d, retention: {time: forever}}
sources:
  tail:
    file: {paths: [%q]}
    to: logs
pipelines:
  archive:
    from: logs
    to:
      - file:
          path: %q
          format: lines
`, filepath.Join(dir, "hub"), partitions, filepath.Join(in.dir, "*.log"), filepath.Join(out, "app-{{ .date }}.log.zst"))
	path := filepath.Join(dir, "ship-file.yaml")
	check(os.WriteFile(path, []byte(yaml), 0o644))
	return path
}

// newZstdWriter is the encoder the file sink uses (sinks/file.go): one
// goroutine, a 1MiB window, the low-memory mode, the default level.
func newZstdWriter(w io.Writer) *zstd.Encoder {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	check(err)
	return zw
}

// runCopy is a peer, in a child process: a plain Go program copying the
// files line by line (bufio) into one zstd file with the sink's encoder.
func runCopy(name string, files []string, out string) {
	m := startMeter()
	f, err := os.Create(out)
	check(err)
	bw := bufio.NewWriterSize(f, 64<<10)
	zw := newZstdWriter(bw)
	var lines, size int64
	for _, p := range files {
		in, err := os.Open(p)
		check(err)
		br := bufio.NewReaderSize(in, 256<<10)
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				_, werr := zw.Write(line)
				check(werr)
				lines++
				size += int64(len(line))
			}
			if err == io.EOF {
				break
			}
			check(err)
		}
		in.Close()
	}
	check(zw.Close())
	check(bw.Flush())
	check(f.Close())
	report(m.stop(name, lines, size))
}

// fileRound runs Weir and the peers once over the same files, checks
// that each wrote every line exactly once, and returns Weir's result
// first.
func fileRound(wd string, in input, want lineSum, round, partitions int, stall time.Duration) []result {
	outDir := filepath.Join(wd, "out")
	check(os.RemoveAll(outDir))
	check(os.MkdirAll(outDir, 0o755))
	var results []result

	// Weir.
	dir := filepath.Join(wd, fmt.Sprintf("weir-file-r%d", round))
	check(os.RemoveAll(dir))
	check(os.MkdirAll(dir, 0o755))
	weirOut := filepath.Join(outDir, "weir")
	cfg := writeFileConfig(dir, weirOut, in, partitions)
	r := runChild("weir", "tail -> file", cfg, "file", strconv.Itoa(in.lines), strconv.FormatInt(in.bytes, 10), stall.String())
	r.Name = "weir: file -> hub -> file (zstd)"
	r.Note = verifyZstd(weirOut, want)
	check(os.RemoveAll(dir))
	results = append(results, r)

	// A plain Go line copy through the same encoder.
	goOut := filepath.Join(outDir, "go")
	check(os.MkdirAll(goOut, 0o755))
	args := []string{"copy", filepath.Join(goOut, "app.log.zst")}
	r = runChild(append(args, in.files...)...)
	r.Name = "plain Go: bufio lines -> zstd"
	r.Note = verifyZstd(goOut, want)
	results = append(results, r)

	// cat | zstd, the command-line tools, one zstd thread.
	if _, err := exec.LookPath("zstd"); err == nil {
		cliOut := filepath.Join(outDir, "cli")
		check(os.MkdirAll(cliOut, 0o755))
		script := "cat " + shellQuote(in.files...) + " | zstd -q -3 -T1 > " + shellQuote(filepath.Join(cliOut, "app.log.zst"))
		r = runShell("cat files | zstd -3 -T1", script, int64(in.lines), in.bytes)
		r.Note = verifyZstd(cliOut, want)
		results = append(results, r)
	}
	for _, r := range results {
		fmt.Printf("  round %d: %-48s %7.1f MB/s  CPU %6.2fs  %s\n", round, r.Name, float64(r.Bytes)/1e6/r.Wall.Seconds(), r.CPU.Seconds(), r.Note)
	}
	check(os.RemoveAll(outDir))
	return results
}

// verifyZstd checks that the zstd files in dir hold exactly the lines
// want digests, in any order, and returns the compression ratio.
func verifyZstd(dir string, want lineSum) string {
	var got lineSum
	var compressed int64
	dec, err := zstd.NewReader(nil)
	check(err)
	defer dec.Close()
	for _, p := range filesIn(dir) {
		f, err := os.Open(p)
		check(err)
		st, _ := f.Stat()
		compressed += st.Size()
		check(dec.Reset(f))
		check(got.addLines(dec))
		f.Close()
	}
	if got != want {
		check(fmt.Errorf("%s holds %d lines (%d bytes), want %d lines (%d bytes), or other lines", dir, got.lines, got.bytes, want.lines, want.bytes))
	}
	return fmt.Sprintf("ratio %.1f", float64(want.bytes+want.lines)/float64(compressed))
}

func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
