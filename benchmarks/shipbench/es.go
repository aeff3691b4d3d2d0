package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/weirhub/weir/internal/zinctest"
)

// esServer is a server both sides send to.
type esServer struct {
	Name, URL, User, Password string
	PID                       int // for its CPU time
	// arrived fails unless the server holds the want documents a side
	// sent into index; it returns once they are all visible.
	arrived func(index string, want int) error
}

// zincServer is a real ZincSearch: documents must be searchable.
func zincServer(zs *zinctest.Server) *esServer {
	return &esServer{Name: "ZincSearch " + zinctest.Version, URL: zs.URL, User: zs.User, Password: zs.Password, PID: zs.PID(),
		arrived: func(index string, want int) error {
			n, err := zs.PollCount(context.Background(), index+"-*", nil, want, 10*time.Minute)
			if err == nil && n != want {
				err = fmt.Errorf("the server holds %d documents in %s-*, want %d", n, index, want)
			}
			return err
		}}
}

// stubESServer is the stub: it counts documents.
func stubESServer(st *stubServer) *esServer {
	var seen int64
	return &esServer{Name: "stub server", URL: st.URL, PID: st.cmd.Process.Pid,
		arrived: func(_ string, want int) error {
			n := st.count()
			got := n - seen
			seen = n
			if got != int64(want) {
				return fmt.Errorf("the stub answered %d documents, want %d", got, want)
			}
			return nil
		}}
}

// esTarget says how both sides send.
type esTarget struct {
	Workers    int    // bulk requests in flight (sink workers, BulkIndexer NumWorkers)
	FlushBytes string // bulk request size (sink flush_bytes, BulkIndexer FlushBytes)
	Batching   string // the sink's batching.bytes; "" for its default
	Period     string // the sink's batching.period; "" for its default
}

// writeESConfig writes the Weir side's pipeline file: tail the input's
// files into a dataset, parse each line as JSON, index into the server.
func writeESConfig(dir string, in input, srv *esServer, t esTarget, index string, partitions int) string {
	var b []string
	if t.Batching != "" {
		b = append(b, "bytes: "+t.Batching)
	}
	if t.Period != "" {
		b = append(b, "period: "+t.Period)
	}
	batching := ""
	if len(b) > 0 {
		batching = "\n        batching: {" + strings.Join(b, ", ") + "}"
	}
	yaml := fmt.Sprintf(`hub: {data_dir: %q}
datasets:
  logs: {partitions: %d, retention: {time: forever}}
sources:
  tail:
    file: {paths: [%q]}
    to: logs
pipelines:
  ship:
    from: logs
    processors:
      - parse: json
    to:
      - elasticsearch:
          urls: [%q]
          username: %q
          password: %q
          index: "%s-{{ .date }}"
          compression: none   # as the bare loop; ZincSearch reads no gzip
          workers: %d
          flush_bytes: %s%s
`, filepath.Join(dir, "hub"), partitions, filepath.Join(in.dir, "*.log"), srv.URL, srv.User, srv.Password, index, t.Workers, t.FlushBytes, batching)
	path := filepath.Join(dir, "ship-es.yaml")
	check(os.WriteFile(path, []byte(yaml), 0o644))
	return path
}

// runBare is the peer, in a child process: a bare esutil.BulkIndexer loop
// reading the same files line by line and indexing each line as it is
// into a daily index, with an id per line (<file>-<offset>, as long as
// the sink's <dataset>-<partition>-<offset>), until Close returns.
func runBare(name string, in input, srv *esServer, t esTarget, index string) {
	flush, err := parseSize(t.FlushBytes)
	check(err)
	m := startMeter()
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}, Username: srv.User, Password: srv.Password})
	check(err)
	res, err := client.Info() // the client's product check, as the sink's Connect does
	check(err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	idx := index + "-" + time.Now().UTC().Format("2006-01-02")
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: client, NumWorkers: t.Workers,
		FlushBytes: int(flush), FlushInterval: 30 * time.Second})
	check(err)
	var failed atomic.Int64
	var firstErr atomic.Value
	onFailure := func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
		if failed.Add(1) == 1 {
			if err == nil {
				err = fmt.Errorf("%d %s: %s", r.Status, r.Error.Type, r.Error.Reason)
			}
			firstErr.Store(err)
		}
	}
	ctx := context.Background()
	var docs, size int64
	for i, path := range in.files {
		f, err := os.Open(path)
		check(err)
		br := bufio.NewReaderSize(f, 256<<10)
		prefix := "bare-" + strconv.Itoa(i) + "-"
		var off int64
		for {
			line, err := br.ReadSlice('\n')
			if err == io.EOF && len(line) == 0 {
				break
			}
			check(err)
			n := len(line)
			// The indexer reads the body later, from its workers: a copy.
			doc := bytes.Clone(bytes.TrimSuffix(line, []byte("\n")))
			check(bi.Add(ctx, esutil.BulkIndexerItem{
				Action:     "index",
				Index:      idx, // in every action line, as the sink does
				DocumentID: prefix + strconv.FormatInt(off, 10),
				Body:       bytes.NewReader(doc),
				OnFailure:  onFailure,
			}))
			off += int64(n)
			docs++
			size += int64(n)
		}
		f.Close()
	}
	check(bi.Close(ctx))
	r := m.stop(name, docs, size)
	st := bi.Stats()
	if failed.Load() > 0 || st.NumFlushed != uint64(docs) {
		check(fmt.Errorf("%s: %d documents failed (first: %v), %d of %d flushed", name, failed.Load(), firstErr.Load(), st.NumFlushed, docs))
	}
	report(r)
}

// esRound runs both sides once, in the order given, each into its own
// index, and checks that every document arrived.
func esRound(srv *esServer, wd string, in input, t esTarget, round int, weirFirst bool, partitions int, stall time.Duration) []result {
	sides := []func() result{
		func() result {
			index := fmt.Sprintf("bare-r%d", round)
			return esSide(srv, "bare esutil.BulkIndexer loop", index, in.lines, "bare-es", in.dir, strconv.Itoa(len(in.files)), strconv.Itoa(in.lines),
				strconv.FormatInt(in.bytes, 10), srv.URL, srv.User, srv.Password, strconv.Itoa(t.Workers), t.FlushBytes, index)
		},
		func() result {
			dir := filepath.Join(wd, fmt.Sprintf("weir-es-r%d", round))
			check(os.RemoveAll(dir))
			check(os.MkdirAll(dir, 0o755))
			defer os.RemoveAll(dir)
			index := fmt.Sprintf("weir-r%d", round)
			cfg := writeESConfig(dir, in, srv, t, index, partitions)
			return esSide(srv, "weir: file -> hub -> parse json -> elasticsearch", index, in.lines,
				"weir", "tail -> es", cfg, "elasticsearch", strconv.Itoa(in.lines), strconv.FormatInt(in.bytes, 10), stall.String())
		},
	}
	if weirFirst {
		sides[0], sides[1] = sides[1], sides[0]
	}
	var out []result
	for _, side := range sides {
		r := side()
		fmt.Printf("  %s, round %d: %-48s %8.0f docs/s  %6.1f MB/s  CPU %6.2fs  all visible after %v, server CPU %.2fs\n", srv.Name, round, r.Name,
			float64(r.Docs)/r.Wall.Seconds(), float64(r.Bytes)/1e6/r.Wall.Seconds(), r.CPU.Seconds(), r.Visible.Round(time.Millisecond), r.ServerCPU.Seconds())
		out = append(out, r)
	}
	if weirFirst {
		out[0], out[1] = out[1], out[0]
	}
	return out // bare, weir
}

// esSide runs one side in a child process, then checks that its want
// documents arrived. r.Visible is the time from the side's start until
// the server showed them all: ZincSearch answers a bulk request once the
// documents are in its write-ahead log, indexes them in the background
// and makes them searchable about a second later. r.ServerCPU is the
// server's CPU time over that span. Then it waits until the server is
// idle, so that the next side does not share the CPU with indexing left
// over from this one.
func esSide(srv *esServer, name, index string, want int, child ...string) result {
	cpu0 := procCPU(srv.PID)
	r := runChild(child...)
	r.Name = name
	if err := srv.arrived(index, want); err != nil {
		check(fmt.Errorf("%s: %w", name, err))
	}
	r.Visible = time.Since(r.Start)
	r.ServerCPU = procCPU(srv.PID) - cpu0
	waitIdle(srv.PID)
	return r
}

// waitIdle waits until process pid used less than 5% of a CPU over a
// second (for at most a minute).
func waitIdle(pid int) {
	for range 60 {
		c0 := procCPU(pid)
		time.Sleep(time.Second)
		if procCPU(pid)-c0 < 50*time.Millisecond {
			return
		}
	}
}

// bareChild is `shipbench child bare-es <dir> <files> <lines> <bytes> <url> <user> <password> <workers> <flush> <index>`.
func bareChild(args []string) {
	if len(args) != 10 {
		check(fmt.Errorf("bare-es: %d arguments", len(args)))
	}
	files, _ := strconv.Atoi(args[1])
	lines, _ := strconv.Atoi(args[2])
	size, _ := strconv.ParseInt(args[3], 10, 64)
	in := input{dir: args[0], lines: lines, bytes: size}
	for i := range files {
		in.files = append(in.files, filepath.Join(in.dir, fmt.Sprintf("app-%d.log", i)))
	}
	workers, _ := strconv.Atoi(args[7])
	runBare("bare", in, &esServer{URL: args[4], User: args[5], Password: args[6]}, esTarget{Workers: workers, FlushBytes: args[8]}, args[9])
}
