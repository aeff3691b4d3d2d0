package main

import (
	"bufio"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// input is a directory of generated log files, read by every side.
type input struct {
	dir   string
	files []string
	lines int   // one JSON document per line
	bytes int64 // of the files, line breaks included
}

// generate writes JSON log lines spread over nfiles files in dir, lines
// of them, or (lines 0) at least size bytes; or it reuses what an earlier
// run wrote there with the same parameters.
func generate(dir string, lines int, size int64, nfiles int, seed uint64) input {
	in := input{dir: dir}
	for i := range nfiles {
		in.files = append(in.files, filepath.Join(dir, fmt.Sprintf("app-%d.log", i)))
	}
	meta := filepath.Join(dir, "input.meta")
	want := fmt.Sprintf("lines %d size %d files %d seed %d", lines, size, nfiles, seed)
	if b, err := os.ReadFile(meta); err == nil {
		if got, counts, ok := strings.Cut(string(b), "\n"); ok && got == want {
			if _, err := fmt.Sscan(counts, &in.lines, &in.bytes); err == nil {
				return in
			}
		}
	}
	check(os.RemoveAll(dir))
	check(os.MkdirAll(dir, 0o755))
	ws := make([]*bufio.Writer, nfiles)
	fs := make([]*os.File, nfiles)
	for i, p := range in.files {
		f, err := os.Create(p)
		check(err)
		fs[i], ws[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	g := newLogGen(seed)
	var buf []byte
	for (lines > 0 && in.lines < lines) || (lines == 0 && in.bytes < size) {
		buf = g.line(buf[:0])
		ws[in.lines%nfiles].Write(buf)
		in.bytes += int64(len(buf))
		in.lines++
	}
	for i := range ws {
		check(ws[i].Flush())
		check(fs[i].Close())
	}
	check(os.WriteFile(meta, []byte(fmt.Sprintf("%s\n%d %d", want, in.lines, in.bytes)), 0o644))
	return in
}

// logGen makes realistic JSON log lines of an HTTP service (about 385
// bytes each), deterministic for a seed.
type logGen struct {
	rng *rand.Rand
	ts  time.Time
}

func newLogGen(seed uint64) *logGen {
	return &logGen{rng: rand.New(rand.NewPCG(seed, 330)), ts: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
}

var (
	genLevels   = []string{"info", "info", "info", "info", "warn", "error", "debug", "debug"}
	genServices = []string{"checkout", "cart", "auth", "search", "catalog", "payments"}
	genMethods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	genPaths    = []string{"/api/v1/orders", "/api/v1/users", "/login", "/static/app.js", "/healthz", "/api/v1/cart", "/api/v2/search"}
	genUAs      = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "Go-http-client/2.0", "okhttp/4.12.0"}
	genMsgs = []string{"request completed", "request completed", "upstream timeout, retrying", "cache miss",
		"user not found", "payment declined by issuer", "slow query: SELECT * FROM orders WHERE user_id = ?"}
)

func (g *logGen) line(b []byte) []byte {
	r := g.rng
	g.ts = g.ts.Add(time.Duration(r.IntN(2000)) * time.Microsecond)
	status := []int{200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503}[r.IntN(11)]
	b = append(b, `{"@timestamp":"`...)
	b = g.ts.AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = fmt.Appendf(b, `","level":"%s","service":"%s","host":"web-%02d","pid":%d,"method":"%s","path":"%s/%d","status":%d,`+
		`"latency_ms":%.2f,"bytes_out":%d,"user_agent":"%s","client_ip":"10.%d.%d.%d","trace_id":"%016x%016x","span_id":"%016x","msg":"%s"}`,
		genLevels[r.IntN(len(genLevels))], genServices[r.IntN(len(genServices))], r.IntN(24), 1000+r.IntN(30000),
		genMethods[r.IntN(len(genMethods))], genPaths[r.IntN(len(genPaths))], r.IntN(1000000), status,
		r.ExpFloat64()*40, r.IntN(50000), genUAs[r.IntN(len(genUAs))], r.IntN(256), r.IntN(256), r.IntN(256),
		r.Uint64(), r.Uint64(), r.Uint64(), genMsgs[r.IntN(len(genMsgs))])
	return append(b, '\n')
}

// lineSum is an order-independent digest of a multiset of lines: their
// count, their bytes (line breaks not counted) and the sum of their hashes.
type lineSum struct {
	lines, bytes int64
	sum          uint64
}

var lineSeed = maphash.MakeSeed()

func (s *lineSum) add(line []byte) {
	s.lines++
	s.bytes += int64(len(line))
	s.sum += maphash.Bytes(lineSeed, line)
}

// addLines adds every line of r.
func (s *lineSum) addLines(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			s.add(line[:len(line)-1])
		} else if len(line) > 0 {
			if err == bufio.ErrBufferFull {
				return fmt.Errorf("a line longer than 1MiB")
			}
			s.add(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sumFiles digests the lines of files.
func sumFiles(files []string) lineSum {
	var s lineSum
	for _, p := range files {
		f, err := os.Open(p)
		check(err)
		check(s.addLines(f))
		f.Close()
	}
	return s
}

// filesIn lists the regular files of dir, sorted.
func filesIn(dir string) []string {
	ents, err := os.ReadDir(dir)
	check(err)
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}
