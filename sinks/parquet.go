package sinks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/objstore"
)

var parquetSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "parquet",
	Summary: "Write JSON records as Parquet files in Hive-style partitioned directories, exactly once, readable by DuckDB, Spark and pyarrow.",
	Doc: "The path is a directory template evaluated for every record, as the file sink's ({{ .date }}, {{ .hour }}, " +
		"{{ .field \"country\" }}, ...): `./lake/events/date={{ .date }}` gives Hive-style directories that DuckDB reads " +
		"with hive_partitioning. The sink names its files part-P-FIRST-LAST.parquet: P is the dataset partition, " +
		"FIRST and LAST the offsets of the first and last record in the file. Records of one partition for one " +
		"directory go to one open file at a time. The names are unique only within one dataset and one sink: " +
		"a pipeline reading several datasets puts {{ .dataset }} in the path (records of a second dataset are " +
		"refused otherwise), and two sinks never share a directory.\n\n" +
		"Each value must be a JSON object; it becomes one row. Columns are inferred (int64, float64, bool, string, " +
		"timestamp for RFC 3339 strings, list, struct; nullable) unless declared under columns, where a declared " +
		"column wins. An inferred column widens safely: an integer column that meets a float becomes float64, a " +
		"timestamp column that meets another string becomes a string, and a new field becomes a new column. While a " +
		"file has no row group on disk, its rows are converted again into the wider schema; after that the file is " +
		"finished and the next one starts with the wider schema (Parquet has one schema per file), and the schema " +
		"never narrows again, so alternating records do not make a file each. A record that is not a JSON object, " +
		"or has a value that fits neither its column nor a widening of it (a string in an int64 column, a float in a " +
		"declared int64 column, a null in a column declared not nullable), goes to the dead-letter dataset with the " +
		"column and the reason.\n\n" +
		"Exactly once: a file is written under a temporary name in the hidden directory .weir-staging of the root " +
		"(the template's directory before its first {{ }}; each running instance has its own directory there, held by " +
		"a lock, and removes only those of instances that are gone), synced, and renamed into place, so a reader never sees a " +
		"partial file; with an s3:// path it is written in the state directory and uploaded whole. The pipeline " +
		"commits no source offset past the first record of a file not yet renamed into place (the sink holds its " +
		"records), so after a crash, kill -9 included, it delivers every record of the unfinished files again and the " +
		"sink writes them anew; records that a published file already holds (offsets up to the LAST of the newest file " +
		"for that directory and partition) are skipped. Each record is written to disk once, in its file. An I/O " +
		"error that loses an unfinished file makes the pipeline read again from its committed offsets. A graceful " +
		"stop finishes every file and commits. Records spooled by earlier versions are written into files at the start. " +
		"When the pipeline's group moves partitions to another member (one joins or leaves), this member drops their " +
		"unfinished files unpublished, before the partitions are handed over, and their new owner writes those records " +
		"from the committed offsets: no two members publish the same records.\n\n" +
		"Memory: rows gather in Arrow builders; a file's builder becomes a row group when it holds row_group_bytes, " +
		"and when the builders of all open files hold memory_bytes together, the largest becomes a row group early. " +
		"A file is never held in memory whole. The builders of all files draw their buffers from one pool, so a row " +
		"group written leaves its memory to the next one instead of to the garbage collector. Pipeline batches (batching.bytes) " +
		"larger than the default 1MiB save this sink little, since rows gather in row groups anyway, and cost memory " +
		"twice (the poll and the batch). Timestamps are microseconds UTC; the Arrow schema is stored in the " +
		"file; statistics and dictionary encoding are on.",
	Scalar: "path",
	Fields: []connectors.Field{
		{Name: "path", Type: connectors.TypeString, Required: true,
			Doc:     "Directory template (see above): a local directory, or s3://bucket/prefix/... with s3 set.",
			Example: "./data/lake/events/date={{ .date }}"},
		{Name: "columns", Type: connectors.TypeObjects, Doc: "Declared columns, in order before the inferred ones.", Fields: []connectors.Field{
			{Name: "name", Type: connectors.TypeString, Required: true, Doc: "The field of the JSON object."},
			{Name: "type", Type: connectors.TypeString, Required: true, Enum: codecs.ArrowColumnTypes,
				Doc: "timestamp: microseconds UTC, from an RFC 3339 string (UTC without a zone) or a number of seconds, milliseconds, microseconds or nanoseconds since 1970 (told apart by size); json: the value's JSON text; string: also takes numbers and booleans, as their text."},
			{Name: "nullable", Type: connectors.TypeBool, Default: true, Doc: "false: a record without the field, or with null, goes to the dead-letter dataset."},
		}},
		{Name: "infer", Type: connectors.TypeBool, Default: true, Doc: "Infer columns for fields that are not declared; false leaves them out."},
		{Name: "compression", Type: connectors.TypeString, Default: "zstd", Enum: []string{"none", "snappy", "gzip", "lz4", "zstd"},
			Doc: "Compression of the column chunks (lz4 is Parquet's LZ4_RAW; zstd is written at zstd's fastest level, which on JSON events is both cheaper and no larger than the default)."},
		{Name: "row_group_bytes", Type: connectors.TypeSize, Default: "8MiB", Doc: "A file's buffered rows become a row group at this size in memory (about 60,000 rows of 200-byte events)."},
		{Name: "memory_bytes", Type: connectors.TypeSize, Default: "64MiB", Doc: "Most memory the buffered rows of all open files take together."},
		{Name: "rotate", Type: connectors.TypeObject, Doc: "When a file is finished and renamed into place.", Fields: []connectors.Field{
			{Name: "rows", Type: connectors.TypeInt, Default: 0, Doc: "Finish a file at this many rows; 0: no limit."},
			{Name: "bytes", Type: connectors.TypeSize, Default: "256MiB", Doc: "Finish a file once this much is written to disk; 0: no limit."},
			{Name: "interval", Type: connectors.TypeDuration, Default: "5m", Doc: "Finish a file this long after it was opened, whether or not records arrive (idle partitions too); 0: never."},
		}},
		{Name: "max_open_files", Type: connectors.TypeInt, Default: 32, Doc: "Most files open at once; the least recently written is finished to open another."},
		{Name: "s3", Type: connectors.TypeObject, Doc: "The server of an s3://bucket/prefix/... path (any S3-compatible one).", Fields: []connectors.Field{
			{Name: "endpoint", Type: connectors.TypeString, Doc: "host:port of the server.", Example: "s3.eu-west-1.amazonaws.com"},
			{Name: "access_key", Type: connectors.TypeString, Doc: "Access key id; empty: anonymous."},
			{Name: "secret_key", Type: connectors.TypeString, Doc: "Secret access key."},
			{Name: "region", Type: connectors.TypeString, Default: "us-east-1", Doc: "Region of the bucket."},
			{Name: "insecure", Type: connectors.TypeBool, Default: false, Doc: "Plain HTTP instead of HTTPS."},
		}},
	},
	Example: `pipelines:
  lake:
    from: events
    to:
      - parquet:
          path: ./data/lake/events/date={{ .date }}
          columns:
            - {name: id, type: int64, nullable: false}
            - {name: ts, type: timestamp}
          rotate: {bytes: 128MiB, interval: 5m}
        batching: {bytes: 4MiB, period: 1s}`,
}

func init() {
	connectors.MustRegisterSink(parquetSpec, newParquet)
	if base, err := compress.GetCodec(compress.Codecs.Zstd); err == nil {
		if sc, ok := base.(compress.StreamingCodec); ok {
			compress.RegisterCodec(compress.Codecs.Zstd, parquetZstd{base, sc})
		}
	}
}

// parquetZstd is arrow-go's zstd codec for Parquet pages, compressing at
// the default level with codecs.AppendZstdFastest: one encoder for the
// process, a 1 MiB window, the fastest level. arrow-go's own keeps its
// encoders in a sync.Pool with an 8 MiB window: each garbage collection
// drops them and the next page allocates 16 MiB of history again, which was
// a fifth of the sink's heap and of its allocations. Pages are 1 MiB, so
// the smaller window costs nothing; the fastest level took about a quarter
// less CPU than the default on make bench-analytics's pages and made them
// smaller, not larger. Other levels, and decompression, are arrow-go's.
type parquetZstd struct {
	compress.Codec
	compress.StreamingCodec
}

func (z parquetZstd) Encode(dst, src []byte) []byte {
	return codecs.AppendZstdFastest(dst[:0], src)
}

func (z parquetZstd) EncodeLevel(dst, src []byte, level int) []byte {
	if level != compress.DefaultCompressionLevel {
		return z.Codec.EncodeLevel(dst, src, level)
	}
	return z.Encode(dst, src)
}

// parquetSink writes records into Parquet files, one open file per
// directory and dataset partition; see parquetSpec's Doc. Write, Close,
// Connect and the rotation timer serialise on mu.
type parquetSink struct {
	tmpl       *pathTemplate
	root       string // the store's directory, prefix of every path
	store      objstore.Store
	staging    string
	run        *stagingRun // this instance's directory in staging, from Connect to Close
	spoolDir   string
	arrowOpts  codecs.ArrowOptions
	propOpts   []parquet.WriterProperty
	props      *parquet.WriterProperties
	arrowProps pqarrow.ArrowWriterProperties
	groupBytes int64
	memBytes   int64
	rotRows    int64
	rotBytes   int64
	rotAge     time.Duration
	maxOpen    int
	oneDataset bool // the template has no {{ .dataset }}: one dataset only
	s3         bool // root is s3://bucket/prefix
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	writers map[string]*pqWriter
	marks   map[string]int64 // last offset in a published file, by writer key (an open writer's are first..last)
	// lost are, by dataset partition, the lowest offsets of files an
	// I/O error dropped since the last Write that said so (ErrRedeliver).
	lost      map[hub.TopicPartition]int64
	recovered bool
	closed    bool
	dataset   string // the one dataset, when oneDataset
	buffered  int64  // Size of every open writer's builder
	pathBuf   []byte
	parser    fastjson.Parser
	// The writer key of the last record, which most records share.
	lastPath      []byte
	lastDataset   string
	lastPartition int32
	lastKey       string
	lastW         *pqWriter // the writer of lastKey, nil when not looked up or dropped
	touched       []*pqWriter

	start sync.Once
	stop  chan struct{}
	done  chan struct{}
}

var (
	_ connectors.Sink      = (*parquetSink)(nil)
	_ connectors.Connector = (*parquetSink)(nil)
	_ connectors.Holder    = (*parquetSink)(nil)
	_ connectors.Releaser  = (*parquetSink)(nil)
	_ connectors.Budgeter  = (*parquetSink)(nil)
)

func newParquet(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	p := conf.String("path")
	tmpl, err := parsePathTemplate(p)
	if err != nil {
		return nil, conf.Errorf("path", "%v", err)
	}
	var s3 *objstore.S3Options
	if rest, ok := strings.CutPrefix(p, "s3://"); ok {
		bucket, _, _ := strings.Cut(rest, "/")
		c := conf.Object("s3")
		if bucket == "" || strings.Contains(bucket, "{{") {
			return nil, conf.Errorf("path", "%q: want s3://bucket/prefix/..., with a fixed bucket", p)
		}
		if c == nil || c.String("endpoint") == "" {
			return nil, conf.Errorf("path", "%q: an s3:// path needs s3.endpoint", p)
		}
		s3 = &objstore.S3Options{Endpoint: c.String("endpoint"), Bucket: bucket, AccessKey: c.String("access_key"),
			SecretKey: c.String("secret_key"), Region: c.String("region"), Insecure: c.Bool("insecure")}
	} else if strings.Contains(p, "://") {
		return nil, conf.Errorf("path", "%q: want a local directory or s3://bucket/prefix/...", p)
	}
	root := p
	if i := strings.Index(p, "{{"); i >= 0 {
		root = p[:i]
		if j := strings.LastIndexByte(root, '/'); j >= 0 {
			root = root[:j]
		} else {
			root = "."
		}
	}
	if root == "" {
		root = "/"
	}
	if s3 == nil {
		root = filepath.Clean(root)
	} else {
		root = strings.TrimSuffix(root, "/")
		// Keys in the store are relative to the root, as in a directory.
		if _, prefix, ok := strings.Cut(strings.TrimPrefix(root, "s3://"), "/"); ok && prefix != "" {
			s3.Prefix = prefix + "/"
		}
	}
	s := &parquetSink{
		tmpl:       tmpl,
		root:       root,
		groupBytes: conf.Size("row_group_bytes"),
		memBytes:   conf.Size("memory_bytes"),
		maxOpen:    conf.Int("max_open_files"),
		log:        res.Logger,
		now:        time.Now,
		writers:    map[string]*pqWriter{},
		marks:      map[string]int64{},
		lost:       map[hub.TopicPartition]int64{},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.oneDataset = true
	for _, part := range tmpl.parts {
		if part.kind == tmplDataset {
			s.oneDataset = false
		}
	}
	if s.maxOpen < 1 {
		return nil, conf.Errorf("max_open_files", "must be at least 1, not %d", s.maxOpen)
	}
	if s.groupBytes <= 0 {
		return nil, conf.Errorf("row_group_bytes", "must be more than 0")
	}
	if s.memBytes < s.groupBytes {
		return nil, conf.Errorf("memory_bytes", "must be at least row_group_bytes (%d)", s.groupBytes)
	}
	for _, c := range conf.Objects("columns") {
		col := codecs.ArrowColumn{Name: c.String("name"), Type: c.String("type"), Nullable: !c.Has("nullable") || c.Bool("nullable")}
		for _, d := range s.arrowOpts.Columns {
			if d.Name == col.Name {
				return nil, conf.Errorf("columns", "column %q is declared twice", col.Name)
			}
		}
		s.arrowOpts.Columns = append(s.arrowOpts.Columns, col)
	}
	s.arrowOpts.NoInfer = conf.Has("infer") && !conf.Bool("infer")
	// The builders of all open files draw on one pool: a file's row
	// group, once written, leaves its buffers to the next one to fill.
	s.arrowOpts.Allocator = codecs.NewArrowPool(s.groupBytes + s.groupBytes/4)
	if _, err := codecs.NewArrowBuilder(s.arrowOpts); err != nil {
		return nil, conf.Errorf("columns", "%v", err)
	}
	codec := compress.Codecs.Zstd
	switch conf.String("compression") {
	case "none":
		codec = compress.Codecs.Uncompressed
	case "snappy":
		codec = compress.Codecs.Snappy
	case "gzip":
		codec = compress.Codecs.Gzip
	case "lz4":
		codec = compress.Codecs.Lz4Raw
	}
	s.propOpts = []parquet.WriterProperty{parquet.WithCompression(codec), parquet.WithStats(true),
		parquet.WithDictionaryDefault(true), parquet.WithCreatedBy("weir"), parquet.WithMaxRowGroupLength(1 << 30),
		parquet.WithAllocator(s.arrowOpts.Allocator)} // dictionaries and levels reuse the pool too
	s.props = parquet.NewWriterProperties(s.propOpts...)
	s.arrowProps = pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
	rot := conf.Object("rotate")
	s.rotRows, s.rotBytes, s.rotAge = int64(rot.Int("rows")), rot.Size("bytes"), rot.Duration("interval")
	if s.rotAge < 0 {
		s.rotAge = 0
	}
	state := res.StateDir
	if state == "" {
		state = filepath.Join(root, ".weir-state")
	}
	s.spoolDir = filepath.Join(state, "spool")
	name := res.Name
	if name == "" {
		name = "parquet"
	}
	s.staging = filepath.Join(root, ".weir-staging", strings.ReplaceAll(string(sanitizePathValue([]byte(name), 0)), ".", "_"))
	if s3 != nil {
		if s.store, err = objstore.NewS3(*s3); err != nil {
			return nil, conf.Errorf("s3", "%v", err)
		}
		s.s3 = true
		s.staging = filepath.Join(state, "staging") // uploaded from there
	}
	return s, nil
}

// pqWriter is the open file of one directory and dataset partition.
type pqWriter struct {
	key       string // writer key: path, dataset, partition
	dir       string // the directory's key in the store ("" for the root)
	path      string
	dataset   string
	partition int32
	b         *codecs.ArrowBuilder
	size      int64 // b.Size() as counted in the sink's buffered

	f       *os.File // the temporary file, once a row group is written
	cw      countWriter
	bw      *bufio.Writer
	fw      *pqarrow.FileWriter
	first   int64
	last    int64
	rows    int64
	opened  time.Time
	touched bool
	used    time.Time // last written, for closing the least recently used
}

func writerKey(path []byte, dataset string, partition int32) string {
	return string(path) + "\x00" + dataset + "\x00" + strconv.Itoa(int(partition))
}

// Connect finishes the files of the spools an earlier version left.
func (s *parquetSink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recoverAll(ctx)
}

func (s *parquetSink) recoverAll(ctx context.Context) error {
	if s.recovered {
		return nil
	}
	if s.run == nil {
		run, err := claimStaging(s.staging) // and remove the partial files of crashed runs
		if err != nil {
			return connectors.Unavailable(fmt.Errorf("sinks: parquet: staging directory %s: %w", s.staging, err))
		}
		s.run = run
	}
	if s.store == nil {
		st, err := objstore.NewDir(s.root)
		if err != nil {
			return connectors.Unavailable(fmt.Errorf("sinks: parquet: %w", err))
		}
		s.store = st
	}
	entries, err := os.ReadDir(s.spoolDir) // left by an earlier version
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return connectors.Unavailable(fmt.Errorf("sinks: parquet: %w", err))
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".spool") {
			continue
		}
		if err := s.recoverSpool(ctx, filepath.Join(s.spoolDir, e.Name())); err != nil {
			return connectors.Unavailable(err)
		}
	}
	s.recovered = true
	return nil
}

// recoverSpool writes the records of a spool that no published file
// holds into files, publishes them and removes the spool.
func (s *parquetSink) recoverSpool(ctx context.Context, path string) error {
	sp, err := readSpool(path)
	if err != nil {
		return err
	}
	key := writerKey([]byte(sp.path), sp.dataset, sp.partition)
	if _, ok := s.marks[key]; !ok {
		if err := s.loadMark(ctx, key, sp.path, sp.partition); err != nil {
			return err
		}
	}
	mark := s.marks[key]
	w, err := s.newWriter(key, sp.path, sp.dataset, sp.partition)
	if err != nil {
		return err
	}
	recovered, skipped := 0, 0
	for _, r := range sp.records {
		if r.offset <= mark {
			skipped++
			continue
		}
		if err := s.add(ctx, w, r.value, r.offset); err != nil {
			var ce *codecs.ArrowConvertError
			if errors.As(err, &ce) {
				// Accepted before, refused now: the columns changed.
				s.log.Error("weir: parquet: a spooled record no longer converts; it is left out", "spool", path, "offset", r.offset, "err", err)
				continue
			}
			s.abort(w)
			delete(s.lost, hub.TopicPartition{Topic: sp.dataset, Partition: sp.partition}) // the spool is kept
			return err
		}
		recovered++
	}
	if err := s.publish(ctx, w); err != nil {
		s.abort(w)
		delete(s.lost, hub.TopicPartition{Topic: sp.dataset, Partition: sp.partition}) // the spool is kept
		return err
	}
	s.dropWriter(w)
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("sinks: parquet: %w", err)
	}
	if recovered > 0 || skipped > 0 {
		s.log.Info("weir: parquet: recovered a spool", "path", sp.path, "partition", sp.partition, "records", recovered, "already_published", skipped)
	}
	return nil
}

// loadMark sets the mark of key from the names of the published files:
// the highest LAST of part-P-FIRST-LAST.parquet in its directory.
func (s *parquetSink) loadMark(ctx context.Context, key, path string, partition int32) error {
	dir, err := s.dirKey(path)
	if err != nil {
		return err
	}
	prefix := "part-" + strconv.Itoa(int(partition)) + "-"
	if dir != "" {
		prefix = dir + "/" + prefix
	}
	objs, err := s.store.List(ctx, prefix)
	if err != nil {
		return err
	}
	mark := int64(-1)
	for _, o := range objs {
		rest, ok := strings.CutSuffix(o.Key[len(prefix):], ".parquet")
		if !ok || strings.Contains(rest, "/") {
			continue
		}
		_, last, ok := strings.Cut(rest, "-")
		if n, err := strconv.ParseInt(last, 10, 64); ok && err == nil {
			mark = max(mark, n)
		}
	}
	s.marks[key] = mark
	return nil
}

// dirKey is the store key of a directory path.
func (s *parquetSink) dirKey(path string) (string, error) {
	p := filepath.Clean(path)
	if s.s3 {
		p = path
	}
	if p == s.root {
		return "", nil
	}
	prefix := s.root + "/"
	if s.root == "/" {
		prefix = "/"
	} else if s.root == "." {
		prefix = ""
	}
	rel, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", fmt.Errorf("sinks: parquet: path %s is outside %s", path, s.root)
	}
	if !s.s3 {
		rel = filepath.ToSlash(rel)
	}
	if err := objstore.CheckKey(rel); err != nil {
		return "", fmt.Errorf("sinks: parquet: path %s: %w", path, err)
	}
	return rel, nil
}

func (s *parquetSink) newWriter(key, path, dataset string, partition int32) (*pqWriter, error) {
	dir, err := s.dirKey(path)
	if err != nil {
		return nil, err
	}
	b, err := codecs.NewArrowBuilder(s.arrowOpts)
	if err != nil {
		return nil, err
	}
	return &pqWriter{key: key, dir: dir, path: path, dataset: dataset, partition: partition, b: b, first: -1, last: -1}, nil
}

func (s *parquetSink) Write(ctx context.Context, batch []*connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSinkClosed
	}
	if err := s.recoverAll(ctx); err != nil {
		return err
	}
	s.start.Do(s.startTimer)
	if s.rotAge > 0 {
		s.rotateAged(ctx)
	}
	var failures []connectors.Failure
	var err error
	now := s.now() // once per batch: a clock read per record was 2 % of an NDJSON-to-Parquet run's CPU
	for i, m := range batch {
		if s.oneDataset {
			if s.dataset == "" {
				s.dataset = m.Dataset
			} else if m.Dataset != s.dataset {
				failures = append(failures, connectors.Failure{Index: i, Err: fmt.Errorf(
					"sinks: parquet: the record is from dataset %s but the path template has no {{ .dataset }} and records from %s went there first; file names would collide", m.Dataset, s.dataset)})
				continue
			}
		}
		s.pathBuf = s.tmpl.appendPath(s.pathBuf[:0], m, &s.parser)
		if !bytes.Equal(s.pathBuf, s.lastPath) || m.Dataset != s.lastDataset || m.Partition != s.lastPartition {
			s.lastPath = append(s.lastPath[:0], s.pathBuf...)
			s.lastDataset, s.lastPartition = m.Dataset, m.Partition
			s.lastKey, s.lastW = writerKey(s.pathBuf, m.Dataset, m.Partition), nil
		}
		key := s.lastKey
		w := s.lastW
		if w == nil {
			if w = s.writers[key]; w == nil {
				if w, err = s.open(ctx, key, string(s.pathBuf), m.Dataset, m.Partition); err != nil {
					break
				}
			}
			s.lastW = w
		}
		if m.Offset <= s.marks[key] || w.first >= 0 && m.Offset <= w.last {
			continue // in a file already, or in the open one (a retry, or a delivery again after a crash)
		}
		if !w.touched {
			w.touched = true
			s.touched = append(s.touched, w)
		}
		w.used = now
		if err = s.add(ctx, w, m.Value, m.Offset); err != nil {
			var ce *codecs.ArrowConvertError
			if errors.As(err, &ce) {
				failures = append(failures, connectors.Failure{Index: i, Err: fmt.Errorf("sinks: parquet: %w", err)})
				err = nil
				continue
			}
			s.abort(w)
			break
		}
	}
	for _, w := range s.touched {
		w.touched = false
	}
	clear(s.touched)
	s.touched = s.touched[:0]
	if len(s.lost) > 0 {
		// The pipeline reads again from its committed offsets, which
		// are below the lost files' first records.
		if err == nil {
			err = errors.New("a file being written was lost")
		}
		clear(s.lost)
		return connectors.Redeliver(err)
	}
	if err != nil {
		return connectors.Unavailable(err)
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// open returns the writer for key, finishing the least recently used
// file if too many are open.
func (s *parquetSink) open(ctx context.Context, key, path, dataset string, partition int32) (*pqWriter, error) {
	if _, ok := s.marks[key]; !ok {
		if err := s.loadMark(ctx, key, path, partition); err != nil {
			return nil, err
		}
	}
	for len(s.writers) >= s.maxOpen {
		var lru *pqWriter
		for _, w := range s.writers {
			if !w.touched && (lru == nil || w.used.Before(lru.used)) {
				lru = w
			}
		}
		if lru == nil {
			break // all written in this batch: allow more for now
		}
		if err := s.publish(ctx, lru); err != nil {
			s.abort(lru)
			return nil, err
		}
		s.dropWriter(lru)
	}
	w, err := s.newWriter(key, path, dataset, partition)
	if err != nil {
		return nil, err
	}
	s.writers[key] = w
	return w, nil
}

// add converts one record into w, cutting row groups and finishing the
// file as the limits say.
func (s *parquetSink) add(ctx context.Context, w *pqWriter, value []byte, offset int64) error {
	err := w.b.Append(value)
	if errors.Is(err, codecs.ErrArrowSchemaLocked) {
		// The file's schema is fixed: finish it; the record starts the
		// next one with a wider schema.
		if err := s.publish(ctx, w); err != nil {
			return err
		}
		w.b.Unlock()
		err = w.b.Append(value)
	}
	if err != nil {
		return err
	}
	if w.first < 0 {
		w.first = offset
		w.opened = s.now()
	}
	w.last = offset
	w.rows++
	s.account(w)
	if w.b.Size() >= s.groupBytes {
		if err := s.flushGroup(w); err != nil {
			return err
		}
	}
	for s.buffered > s.memBytes {
		var big *pqWriter
		for _, o := range s.writers {
			if big == nil || o.size > big.size {
				big = o
			}
		}
		if big == nil || big.size == 0 {
			break
		}
		if err := s.flushGroup(big); err != nil {
			if big != w {
				s.abort(big)
			}
			return err
		}
	}
	if s.rotRows > 0 && w.rows >= s.rotRows || s.rotBytes > 0 && w.cw.n+w.b.Size() >= s.rotBytes {
		return s.publish(ctx, w)
	}
	return nil
}

// account brings the sink's buffered total up to date with w's builder.
func (s *parquetSink) account(w *pqWriter) {
	n := w.b.Size()
	s.buffered += n - w.size
	w.size = n
}

// flushGroup writes w's buffered rows as a row group, creating the
// temporary file first if needed; the file's schema is then fixed.
func (s *parquetSink) flushGroup(w *pqWriter) error {
	if w.b.Len() == 0 {
		return nil
	}
	if w.fw == nil {
		dir := s.staging
		if s.run != nil {
			dir = s.run.dir
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sinks: parquet: %w", err)
		}
		f, err := os.CreateTemp(dir, "part-*.parquet.tmp")
		if err != nil {
			return fmt.Errorf("sinks: parquet: %w", err)
		}
		w.f = f
		w.cw = countWriter{w: f}
		w.bw = bufio.NewWriterSize(&w.cw, 256<<10)
		w.fw, err = pqarrow.NewFileWriter(w.b.Schema(), w.bw, s.fileProps(w.b.Schema()), s.arrowProps)
		if err != nil {
			return fmt.Errorf("sinks: parquet: %w", err)
		}
	}
	w.b.Lock()
	rec := w.b.NewRecordBatch()
	err := w.fw.Write(rec)
	rec.Release()
	s.account(w)
	if err != nil {
		return fmt.Errorf("sinks: parquet: write %s: %w", w.f.Name(), err)
	}
	return nil
}

// fileProps are the writer properties of a file of this schema: the
// sink's, with the dictionary dropped for the columns where it is no
// smaller than the plain values (unique ids, times, random strings, whose
// plain pages compress better), decided per column chunk.
func (s *parquetSink) fileProps(schema *arrow.Schema) *parquet.WriterProperties {
	sc, err := pqarrow.ToParquet(schema, s.props, s.arrowProps)
	if err != nil {
		return s.props // NewFileWriter reports the same error
	}
	opts := slices.Clip(s.propOpts)
	for i := range sc.NumColumns() {
		opts = append(opts, parquet.WithDictionaryCostFallbackPath(sc.Column(i).ColumnPath(), true))
	}
	return parquet.NewWriterProperties(opts...)
}

// publish finishes w's file and renames it into place: the sink holds
// its records no more. The writer stays open for the next file.
func (s *parquetSink) publish(ctx context.Context, w *pqWriter) error {
	if err := s.flushGroup(w); err != nil {
		return err
	}
	if w.fw != nil {
		err := w.fw.Close()
		if err == nil {
			err = w.bw.Flush()
		}
		if err == nil {
			err = w.f.Sync()
		}
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sinks: parquet: finish %s: %w", w.f.Name(), err)
		}
		name := fmt.Sprintf("part-%d-%d-%d.parquet", w.partition, w.first, w.last)
		key := name
		if w.dir != "" {
			key = w.dir + "/" + name
		}
		if err := objstore.PutFile(ctx, s.store, key, w.f.Name()); err != nil {
			return fmt.Errorf("sinks: parquet: %w", err)
		}
		s.log.Debug("weir: parquet file published", "key", key, "rows", w.rows, "bytes", w.cw.n)
		s.marks[w.key] = w.last
	}
	w.f, w.bw, w.fw, w.cw = nil, nil, nil, countWriter{}
	w.first, w.rows = -1, 0
	w.b.Unlock()
	return nil
}

// abort drops w after an I/O error: its temporary file is removed and
// its records are forgotten. Those the pipeline had been told were
// written are noted as lost, for the next Write to say so.
func (s *parquetSink) abort(w *pqWriter) {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
	if w.first >= 0 {
		tp := hub.TopicPartition{Topic: w.dataset, Partition: w.partition}
		if o, ok := s.lost[tp]; !ok || w.first < o {
			s.lost[tp] = w.first
		}
	}
	s.dropWriter(w)
	delete(s.marks, w.key)
}

func (s *parquetSink) dropWriter(w *pqWriter) {
	if s.writers[w.key] == w {
		delete(s.writers, w.key)
	}
	if s.lastW == w {
		s.lastW = nil
	}
	s.buffered -= w.size
	w.size = 0
	w.b.Release()
}

// MemoryBudget is memory_bytes, the most the buffered rows of all open
// files take (connectors.Budgeter).
func (s *parquetSink) MemoryBudget() int64 { return s.memBytes }

// Held reports the first offset of every file not yet renamed into
// place, and of those lost since the last Write (connectors.Holder).
func (s *parquetSink) Held(fn func(dataset string, partition int32, offset int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.writers {
		if w.first >= 0 {
			fn(w.dataset, w.partition, w.first)
		}
	}
	for tp, o := range s.lost {
		fn(tp.Topic, tp.Partition, o)
	}
}

// Release drops the open files of partitions that move to another
// member of the pipeline's group, unpublished, and forgets their marks
// (connectors.Releaser): the new owner reads their records again from the
// committed offsets and writes them itself, and should they come back
// here, the marks are read again from the names of the files published
// meanwhile. Records already published stay, and are skipped by whoever
// reads them again.
func (s *parquetSink) Release(partitions []hub.TopicPartition) {
	if len(partitions) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := make(map[hub.TopicPartition]bool, len(partitions))
	for _, tp := range partitions {
		gone[tp] = true
		delete(s.lost, tp) // read again by their new owner anyway
	}
	dropped := 0
	for _, w := range s.writers {
		if !gone[hub.TopicPartition{Topic: w.dataset, Partition: w.partition}] {
			continue
		}
		if w.f != nil {
			w.f.Close()
			os.Remove(w.f.Name())
			w.f = nil
		}
		if w.first >= 0 {
			dropped++
		}
		s.dropWriter(w)
	}
	for key := range s.marks {
		// writerKey: path, dataset and partition; a path may hold anything.
		i := strings.LastIndexByte(key, 0)
		j := strings.LastIndexByte(key[:max(i, 0)], 0)
		if i < 0 || j < 0 {
			continue
		}
		if n, err := strconv.ParseInt(key[i+1:], 10, 32); err == nil && gone[hub.TopicPartition{Topic: key[j+1 : i], Partition: int32(n)}] {
			delete(s.marks, key)
		}
	}
	if dropped > 0 {
		s.log.Info("weir: parquet: partitions moved to another member; their unfinished files are dropped and read again by it", "files", dropped)
	}
}

// Flush finishes every open file and renames it into place
// (connectors.Holder).
func (s *parquetSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishAll(ctx)
}

// publishAll finishes every open file, and drops its writer.
func (s *parquetSink) publishAll(ctx context.Context) error {
	if !s.recovered {
		return nil
	}
	var errs []error
	for _, w := range s.writers {
		if err := s.publish(ctx, w); err != nil {
			errs = append(errs, err)
			s.abort(w)
			continue
		}
		s.dropWriter(w)
	}
	return errors.Join(errs...)
}

// rotateAged finishes the files open longer than rotate.interval.
func (s *parquetSink) rotateAged(ctx context.Context) {
	now := s.now()
	for _, w := range s.writers {
		if w.rows > 0 && now.Sub(w.opened) >= s.rotAge {
			if err := s.publish(ctx, w); err != nil {
				s.log.Error("weir: parquet: finishing a file failed; the pipeline will deliver its records again", "path", w.path, "err", err)
				s.abort(w)
				continue
			}
			s.dropWriter(w) // idle partitions do not keep builders
		}
	}
}

func (s *parquetSink) startTimer() {
	runAgeTimer(s.rotAge, &s.mu, &s.closed, func() { s.rotateAged(context.Background()) }, s.stop, s.done)
}

// Close finishes and publishes every open file, and stops the timer.
func (s *parquetSink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.publishAll(ctx)
	s.mu.Unlock()
	s.start.Do(func() { close(s.done) })
	close(s.stop)
	<-s.done
	if s.run != nil {
		err = errors.Join(err, s.run.release())
	}
	return err
}
