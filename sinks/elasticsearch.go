package sinks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

var elasticsearchSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "elasticsearch",
	Summary: "Index records into Elasticsearch with the Bulk API: daily indices, ids that make redelivery overwrite, rejected documents to the dead-letter dataset.",
	Doc: "Each record's value must be a JSON object (parse it first); it becomes the document's source. A write is " +
		"split into bulk requests of at most flush_bytes, sent by up to `workers` at once, and returns once " +
		"Elasticsearch answered for every record, so the pipeline commits only what is indexed.\n\n" +
		"The index comes from a template evaluated per record: `{{ .date }}` is the record's time as YYYY-MM-DD " +
		"(UTC; `{{ .date \"2006.01\" }}` takes a Go layout, at most hourly), `{{ .dataset }}` the dataset it came " +
		"from, `{{ .field \"service\" }}` a field of the record (lowercased, as index names must be). " +
		"By default (id: origin) the document _id says where the record came from, so that a record delivered twice " +
		"overwrites itself instead of making a duplicate: effectively once. A record read from a file (the file " +
		"source's headers weir.file.id and weir.offset) gets <file id>-<offset>: the same line gets the same id even " +
		"when it was stored in the dataset twice, as lines read again after a crash of the source are. Other records " +
		"get <dataset>-<partition>-<offset> (or <file>-<offset> from the weir.file and weir.offset headers of " +
		"records not read from a dataset). id_field takes the id from a field instead.\n\n" +
		"Failures: a 429 or 5xx answer to a request, and a 429 or 5xx for single documents, are transient: the " +
		"pipeline retries them (the sink's retry setting: without limit by default, with capped exponential backoff), " +
		"holding the pipeline back; the sink itself does not retry. A 413 splits the request in halves. A document " +
		"Elasticsearch rejects (a mapping conflict, a 409 version conflict on create, any other 4xx) goes to the " +
		"dead-letter dataset at once with Elasticsearch's error type and reason. An unreachable cluster, a request timeout " +
		"or refused credentials (401, 403) hold the pipeline back: nothing is committed or dropped, and the " +
		"pipeline logs why until the cluster answers.",
	Fields: []connectors.Field{
		{Name: "urls", Type: connectors.TypeStrings, Default: []string{"http://127.0.0.1:9200"}, Doc: "Nodes of the cluster, used in turn; a path after the host is kept (https://proxy/es).", Example: []string{"https://es1:9200", "https://es2:9200"}},
		{Name: "index", Type: connectors.TypeString, Default: "{{ .dataset }}-{{ .date }}", Doc: "Index name template: literal text with {{ .date }}, {{ .date \"layout\" }}, {{ .dataset }} and {{ .field \"name\" }}.", Example: "logs-{{ .date }}"},
		{Name: "id", Type: connectors.TypeString, Default: "origin", Enum: []string{"origin", "auto"}, Doc: "Document ids: origin derives them from where each record came from (<file id>-<offset> for lines of files, else <dataset>-<partition>-<offset>), so redelivery overwrites; auto lets Elasticsearch assign them (redelivery duplicates)."},
		{Name: "id_field", Type: connectors.TypeString, Doc: "Take each document's id from this field (a dotted path) instead; records without it go to the dead-letter dataset.", Example: "event.id"},
		{Name: "action", Type: connectors.TypeString, Default: "index", Enum: []string{"index", "create", "delete"}, Doc: "Bulk action: index (create or replace), create (fail with 409 if the id exists; what data streams need), delete (needs id_field)."},
		{Name: "username", Type: connectors.TypeString, Doc: "User for basic authentication."},
		{Name: "password", Type: connectors.TypeString, Doc: "Password for basic authentication."},
		{Name: "api_key", Type: connectors.TypeString, Doc: "API key, base64-encoded as Elasticsearch returns it (Authorization: ApiKey ...); instead of username and password.", Example: "${ES_API_KEY}"},
		{Name: "tls", Type: connectors.TypeObject, Doc: "TLS for https:// URLs.", Fields: []connectors.Field{
			{Name: "ca_file", Type: connectors.TypeString, Doc: "PEM file of the certificate authorities to trust (default: the system's).", Example: "/etc/weir/es-ca.pem"},
			{Name: "skip_verify", Type: connectors.TypeBool, Default: false, Doc: "Accept any server certificate (testing only)."},
		}},
		{Name: "compression", Type: connectors.TypeString, Default: "gzip", Enum: []string{"gzip", "none"}, Doc: "Compression of request bodies (Content-Encoding)."},
		{Name: "flush_bytes", Type: connectors.TypeSize, Default: "5MiB", Min: "1B", Doc: "Most bytes of one bulk request body, before compression (a single larger document goes alone)."},
		{Name: "flush_interval", Type: connectors.TypeDuration, Doc: "Not used by this sink, which sends every write at once: the pipeline gathers records for it. Set the sink's batching.period (default 500ms) and batching.bytes instead; setting this field is an error that says so."},
		{Name: "workers", Type: connectors.TypeInt, Default: 2, Min: 1, Doc: "Bulk requests of one write in flight at once. A write larger than flush_bytes goes as several requests; a smaller one is split into `workers` about equal requests of at least 64KiB, so that they go at once (not with id_field, where documents sharing an id must keep their order)."},
		{Name: "timeout", Type: connectors.TypeDuration, Default: "60s", Min: "1ms", Doc: "Longest wait for the answer to one bulk request; past it the cluster counts as unreachable."},
		{Name: "max_retries", Type: connectors.TypeInt, Doc: "Not used: the pipeline retries failed writes (the sink's retry setting), so that there is one retry loop; setting this field is an error that says so."},
	},
	Example: `pipelines:
  logs-to-es:
    from: logs
    to:
      - elasticsearch:
          urls: [https://es1:9200, https://es2:9200]
          index: logs-{{ .date }}
          api_key: ${ES_API_KEY}
          tls: {ca_file: /etc/weir/es-ca.pem}
          workers: 4
        batching: {bytes: 20MiB, period: 1s}`,
}

func init() { connectors.MustRegisterSink(elasticsearchSpec, newElasticsearch) }

// esSink writes batches with the Bulk API, building the request bodies
// itself and sending them through the go-elasticsearch client's transport
// (node selection, authentication). Write is called by one goroutine at a
// time (mu guards its buffers regardless); Connect and Close may be called
// from any.
type esSink struct {
	urls       []string
	where      string // the URLs without credentials, for messages
	index      *esIndexTemplate
	idOrigin   bool     // derive ids from the records' origin
	idField    []string // or take them from this field
	action     string
	gzip       bool
	flushBytes int
	workers    int
	timeout    time.Duration
	user       string
	password   string
	apiKey     string
	caFile     string
	skipVerify bool
	log        *slog.Logger

	clientMu  sync.Mutex
	client    *elasticsearch.Client
	transport *http.Transport

	mu       sync.Mutex // held by Write
	fields   connectors.FieldReader
	chunks   []*esChunk
	idxBuf   []byte
	idBuf    []byte
	closed   atomic.Bool
	bulkPath string
}

var (
	_ connectors.Sink      = (*esSink)(nil)
	_ connectors.Connector = (*esSink)(nil)
)

func newElasticsearch(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	s := &esSink{
		action:     conf.String("action"),
		gzip:       conf.String("compression") == "gzip",
		flushBytes: int(conf.Size("flush_bytes")),
		workers:    conf.Int("workers"),
		timeout:    conf.Duration("timeout"),
		user:       conf.String("username"),
		password:   conf.String("password"),
		apiKey:     conf.String("api_key"),
		caFile:     conf.Object("tls").String("ca_file"),
		skipVerify: conf.Object("tls").Bool("skip_verify"),
		log:        res.Logger,
		bulkPath:   "/_bulk?filter_path=errors,error,items.*.status,items.*.error",
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var where []string
	for _, raw := range conf.Strings("urls") {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, conf.Errorf("urls", "%q is not an http:// or https:// URL", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		s.urls = append(s.urls, u.String())
		where = append(where, u.Redacted())
	}
	if len(s.urls) == 0 {
		return nil, conf.Errorf("urls", "needs at least one URL")
	}
	s.where = strings.Join(where, ", ")
	tmpl, err := parseESIndexTemplate(conf.String("index"))
	if err != nil {
		return nil, conf.Errorf("index", "%v", err)
	}
	s.index = tmpl
	if f := conf.String("id_field"); f != "" {
		s.idField = strings.Split(f, ".")
	} else {
		s.idOrigin = conf.String("id") == "origin"
	}
	if s.action == "delete" && s.idField == nil {
		return nil, conf.Errorf("action", "delete needs id_field: the field holding the id of the document to delete")
	}
	if conf.Has("max_retries") {
		return nil, conf.Errorf("max_retries", "the pipeline retries failed writes of every sink; set the sink's retry (attempts, backoff, max_backoff) instead")
	}
	if conf.Has("flush_interval") {
		return nil, conf.Errorf("flush_interval", "the elasticsearch sink sends every write at once; set the sink's batching.period (and batching.bytes) to say how long records wait to be gathered")
	}
	switch {
	case s.apiKey != "" && (s.user != "" || s.password != ""):
		return nil, conf.Errorf("api_key", "use either api_key or username and password, not both")
	}
	return s, nil
}

// esClient returns the client, making it on first use (reading the CA
// file). Safe for concurrent use.
func (s *esSink) esClient() (*elasticsearch.Client, error) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = s.workers + 2
	t.ResponseHeaderTimeout = s.timeout
	if s.caFile != "" || s.skipVerify {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: s.skipVerify} //nolint:gosec // the user asked for it
		if s.caFile != "" {
			pem, err := os.ReadFile(s.caFile)
			if err != nil {
				return nil, fmt.Errorf("sinks: elasticsearch: tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("sinks: elasticsearch: tls.ca_file %s holds no PEM certificate", s.caFile)
			}
			t.TLSClientConfig.RootCAs = pool
		}
	}
	c, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: s.urls,
		Username:  s.user,
		Password:  s.password,
		APIKey:    s.apiKey,
		Transport: t,
		// The sink retries itself: it has to tell a 429 from a 503 from
		// an unreachable node to answer the runtime correctly.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("sinks: elasticsearch: %w", err)
	}
	s.client, s.transport = c, t
	return c, nil
}

// Connect checks that the cluster answers, and is Elasticsearch (the
// client's product check), with the Info API.
func (s *esSink) Connect(ctx context.Context) error {
	c, err := s.esClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := c.Info(c.Info.WithContext(ctx))
	if err != nil {
		if strings.Contains(err.Error(), "not Elasticsearch") {
			return fmt.Errorf("sinks: elasticsearch at %s: %w", s.where, err)
		}
		return connectors.Unavailable(fmt.Errorf("sinks: elasticsearch at %s unreachable: %w", s.where, err))
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden {
		return connectors.Unavailable(fmt.Errorf("sinks: elasticsearch at %s refused the credentials: %s", s.where, esStatusText(res.StatusCode, body)))
	}
	if res.IsError() {
		return fmt.Errorf("sinks: elasticsearch at %s: info: %s", s.where, esStatusText(res.StatusCode, body))
	}
	var p fastjson.Parser
	if v, err := p.ParseBytes(body); err == nil {
		s.log.Info("weir: connected to elasticsearch", "urls", s.where,
			"cluster", string(v.GetStringBytes("cluster_name")), "version", string(v.GetStringBytes("version", "number")))
	}
	return nil
}

// Close releases the client's connections; it does not wait for a Write
// in progress, and is safe to call more than once.
func (s *esSink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client != nil {
		s.client.Close(ctx)
		s.transport.CloseIdleConnections()
	}
	return nil
}

// esChunk is one bulk request of a write, and what became of it.
type esChunk struct {
	body  []byte   // NDJSON: action line, source line (except for delete)
	items []esItem // in body order

	failures    []connectors.Failure // documents that failed for a reason of their own
	pending     []esItem             // documents not settled when err or unavailable was set
	err         error                // the request failed as a whole, retries spent
	unavailable error                // the cluster could not be reached
}

// esItem is one document of a bulk request.
type esItem struct {
	msg        int32 // index in the batch given to Write
	start, end int32 // its lines in the request body
}

func (c *esChunk) reset() {
	c.body, c.items, c.failures, c.pending, c.err, c.unavailable = c.body[:0], c.items[:0], c.failures[:0], c.pending[:0], nil, nil
}

// Write indexes the batch and returns once Elasticsearch answered for
// every record (see the package contract).
func (s *esSink) Write(ctx context.Context, batch []*connectors.Message) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	client, err := s.esClient()
	if err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	// A FieldReader caches the last value parsed by its address: start
	// afresh, as the runtime reuses memory between writes.
	s.fields = connectors.FieldReader{}
	var failures []connectors.Failure
	chunks := s.encode(batch, &failures)
	s.sendAll(ctx, client, chunks)
	err = s.outcome(ctx, batch, chunks, failures)
	// Keep the buffers for the next write, unless they grew large.
	for _, c := range chunks {
		if cap(c.body) > 2*s.flushBytes+1<<20 {
			c.body = nil
		}
	}
	return err
}

// encode builds the bulk request bodies of a batch, flushBytes each.
// Records that cannot be encoded (not a JSON object, no id field) become
// failures.
func (s *esSink) encode(batch []*connectors.Message, failures *[]connectors.Failure) []*esChunk {
	n := 0
	c := s.chunk(n)
	for i, m := range batch {
		start := len(c.body)
		body, err := s.appendDoc(c.body, m)
		if err != nil {
			c.body = body[:start]
			*failures = append(*failures, connectors.Failure{Index: i, Err: err})
			continue
		}
		if len(body) > s.flushBytes && len(c.items) > 0 {
			// This document starts the next request.
			next := s.chunk(n + 1)
			next.body = append(next.body, body[start:]...)
			c.body = body[:start]
			n++
			c, body, start = next, next.body, 0
		}
		c.body = body
		c.items = append(c.items, esItem{msg: int32(i), start: int32(start), end: int32(len(body))})
	}
	if len(c.items) == 0 {
		return s.chunks[:n]
	}
	if n == 0 {
		return s.spread(c)
	}
	return s.chunks[:n+1]
}

// esSplitMin is the smallest request spread makes.
const esSplitMin = 64 << 10

// spread splits the single request c of a write into up to s.workers
// requests of about equal size (none under esSplitMin), so that they go
// at once: with the pipeline's default batching (1MiB) and flush_bytes
// (5MiB), every write would otherwise be one request, the other workers
// idle, and the cluster would index one request at a time. It leaves c
// whole with id_field, where documents sharing an id must keep their
// order. It returns the requests of the write.
func (s *esSink) spread(c *esChunk) []*esChunk {
	k := min(s.workers, len(c.body)/esSplitMin, len(c.items))
	if k < 2 || s.idField != nil {
		return s.chunks[:1]
	}
	per := (len(c.body) + k - 1) / k
	items, body := c.items, c.body // the items' lines follow each other in body
	part, first := 0, len(items)
	var cur *esChunk
	for i, it := range items {
		if part < k-1 && int(it.start) >= (part+1)*per {
			part++
			if part == 1 {
				first = i
			}
			cur = s.chunk(part)
		}
		if part > 0 {
			start := len(cur.body)
			cur.body = append(cur.body, body[it.start:it.end]...)
			cur.items = append(cur.items, esItem{msg: it.msg, start: int32(start), end: int32(len(cur.body))})
		}
	}
	if part > 0 {
		c.items, c.body = items[:first], body[:items[first].start]
	}
	return s.chunks[:part+1]
}

// chunk returns the i-th request of this write, reset.
func (s *esSink) chunk(i int) *esChunk {
	for len(s.chunks) <= i {
		s.chunks = append(s.chunks, &esChunk{})
	}
	s.chunks[i].reset()
	return s.chunks[i]
}

// appendDoc appends one record's action line and source line.
func (s *esSink) appendDoc(dst []byte, m *connectors.Message) ([]byte, error) {
	if s.action != "delete" && !isObjectValue(m) {
		return dst, errESNotObject
	}
	idx, err := s.index.render(s.idxBuf[:0], m, &s.fields)
	s.idxBuf = idx
	if err != nil {
		return dst, err
	}
	id, hasID, err := s.docID(m)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"`...)
	dst = append(dst, s.action...)
	dst = append(dst, `":{"_index":`...)
	dst = codecs.AppendJSONString(dst, idx)
	if hasID {
		dst = append(dst, `,"_id":`...)
		dst = codecs.AppendJSONString(dst, id)
	}
	dst = append(dst, "}}\n"...)
	if s.action == "delete" {
		return dst, nil
	}
	dst = appendCompactLine(dst, m.Value) // one NDJSON line
	return append(dst, '\n'), nil
}

var errESNotObject = errors.New("sinks: elasticsearch: the value is not a JSON object (parse records before this sink)")

// esMaxIDBytes is the longest _id Elasticsearch accepts.
const esMaxIDBytes = 512

// docID returns the record's document id, or false to let Elasticsearch
// assign one.
func (s *esSink) docID(m *connectors.Message) ([]byte, bool, error) {
	b := s.idBuf[:0]
	defer func() { s.idBuf = b }()
	switch {
	case s.idField != nil:
		v := s.fields.Get(m, s.idField...)
		if v != nil {
			b = connectors.AppendText(b, v)
		}
		if len(b) == 0 {
			return nil, false, fmt.Errorf("sinks: elasticsearch: no id field %q in the record", strings.Join(s.idField, "."))
		}
	case !s.idOrigin:
		return nil, false, nil
	case esFileOrigin(m):
		b = append(append(append(b, m.Header(esHeaderFileID)...), '-'), m.Header(esHeaderOffset)...)
	case m.Dataset != "":
		b = append(b, m.Dataset...)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(m.Partition), 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, m.Offset, 10)
	default:
		file, off := m.Header(esHeaderFile), m.Header(esHeaderOffset)
		if len(file) == 0 || len(off) == 0 {
			return nil, false, nil // nothing to derive an id from
		}
		b = append(b, file...)
		b = append(b, '-')
		b = append(b, off...)
	}
	if len(b) > esMaxIDBytes {
		sum := sha256.Sum256(b)
		b = hex.AppendEncode(b[:0], sum[:])
	}
	return b, true, nil
}

// Headers that sources reading files set, from which ids are derived.
const (
	esHeaderFile   = "weir.file"    // the path of the file a record was read from
	esHeaderFileID = "weir.file.id" // the identity of that file, which outlives renames
	esHeaderOffset = "weir.offset"  // the record's byte offset in that file
)

// esFileOrigin reports whether m carries the identity of a line of a file,
// weir.file.id and weir.offset, which stays the same when the line is read
// again (after a crash of the source) and stored in the dataset a second
// time at another offset.
func esFileOrigin(m *connectors.Message) bool {
	return len(m.Header(esHeaderFileID)) > 0 && len(m.Header(esHeaderOffset)) > 0
}

// sendAll sends the requests of a write, up to s.workers at once. When one
// finds the cluster unreachable, the others stop.
func (s *esSink) sendAll(ctx context.Context, client *elasticsearch.Client, chunks []*esChunk) {
	if len(chunks) == 1 || s.workers == 1 {
		for _, c := range chunks {
			s.send(ctx, client, c, c.items, c.body)
			if c.unavailable != nil {
				break
			}
		}
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int32
	var wg sync.WaitGroup
	for range min(s.workers, len(chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(chunks) || ctx.Err() != nil {
					return
				}
				c := chunks[i]
				s.send(ctx, client, c, c.items, c.body)
				if c.unavailable != nil {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
}

// send posts the documents items (their lines in body) as one bulk
// request and settles each of them into c: delivered, failed (for good,
// or retryable: 429 and 5xx for single documents), or split (413). What
// it cannot settle it leaves in c.pending with c.err or c.unavailable
// set. It does not retry: the pipeline does.
func (s *esSink) send(ctx context.Context, client *elasticsearch.Client, c *esChunk, items []esItem, body []byte) {
	if ctx.Err() != nil {
		c.pending = append(c.pending, items...)
		if c.err == nil {
			c.err = ctx.Err()
		}
		return
	}
	w := esWorkers.Get().(*esWorker)
	defer esWorkers.Put(w)
	status, resp, err := s.post(ctx, client, w, body)
	if err != nil {
		c.pending = append(c.pending, items...)
		if ctx.Err() != nil {
			c.err = fmt.Errorf("sinks: elasticsearch: %w", ctx.Err())
		} else {
			c.unavailable = err
		}
		return
	}
	switch {
	case status == http.StatusRequestEntityTooLarge:
		if len(items) == 1 {
			c.failures = append(c.failures, connectors.Failure{Index: int(items[0].msg),
				Err: fmt.Errorf("sinks: elasticsearch: a document of %d bytes is larger than the cluster accepts (413; see http.max_content_length)", items[0].end-items[0].start)})
			return
		}
		// Halves; a half that is still too large splits again.
		half := len(items) / 2
		for _, part := range [][]esItem{items[:half], items[half:]} {
			part, sub := esRebase(part, body)
			s.send(ctx, client, c, part, sub)
			if c.unavailable != nil {
				return
			}
		}
		return
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		c.pending = append(c.pending, items...)
		c.unavailable = fmt.Errorf("sinks: elasticsearch at %s refused the request: %s", s.where, esStatusText(status, resp))
		return
	case status == http.StatusTooManyRequests || status >= 500:
		// Transient: the pipeline retries.
		c.pending = append(c.pending, items...)
		c.err = fmt.Errorf("sinks: elasticsearch: bulk request failed: %s", esStatusText(status, resp))
		return
	case status < 200 || status >= 300:
		// Another 4xx to the whole request: sending it again gets the
		// same answer.
		c.pending = append(c.pending, items...)
		c.err = connectors.Permanent(fmt.Errorf("sinks: elasticsearch: bulk request failed: %s", esStatusText(status, resp)))
		return
	}
	retry, err := s.settle(c, items, resp, w)
	if err != nil {
		c.pending = append(c.pending, items...)
		c.err = err
		return
	}
	for i, it := range retry {
		c.failures = append(c.failures, connectors.Failure{Index: int(it.msg), Err: w.retryErrs[i], Retryable: true})
	}
}

// esRebase copies the lines of items out of body into a new body, and
// returns the items pointing into it.
func esRebase(items []esItem, body []byte) ([]esItem, []byte) {
	size := 0
	for _, it := range items {
		size += int(it.end - it.start)
	}
	nb := make([]byte, 0, size)
	out := make([]esItem, len(items))
	for i, it := range items {
		start := len(nb)
		nb = append(nb, body[it.start:it.end]...)
		out[i] = esItem{msg: it.msg, start: int32(start), end: int32(len(nb))}
	}
	return out, nb
}

// esWorker is the memory one request needs, pooled.
type esWorker struct {
	zbuf      bytes.Buffer
	zw        *gzip.Writer
	resp      bytes.Buffer
	parser    fastjson.Parser
	retry     []esItem
	retryErrs []error
}

var esWorkers = sync.Pool{New: func() any { return new(esWorker) }}

// post sends one bulk request body and returns the status and response
// body (valid until the worker's next post). An error means no answer:
// the cluster is unreachable (each URL was tried), or ctx ended.
func (s *esSink) post(ctx context.Context, client *elasticsearch.Client, w *esWorker, body []byte) (int, []byte, error) {
	payload := body
	if s.gzip {
		w.zbuf.Reset()
		if w.zw == nil {
			w.zw, _ = gzip.NewWriterLevel(&w.zbuf, gzip.BestSpeed)
		} else {
			w.zw.Reset(&w.zbuf)
		}
		w.zw.Write(body) // writes to a bytes.Buffer do not fail
		w.zw.Close()
		payload = w.zbuf.Bytes()
	}
	var lastErr error
	for try := 0; try < len(s.urls); try++ { // the client moves to the next node after a failure
		status, err := s.roundTrip(ctx, client, w, payload)
		if err == nil {
			return status, w.resp.Bytes(), nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
	}
	return 0, nil, fmt.Errorf("sinks: elasticsearch at %s unreachable: %w", s.where, lastErr)
}

func (s *esSink) roundTrip(ctx context.Context, client *elasticsearch.Client, w *esWorker, payload []byte) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.bulkPath, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := client.Perform(req)
	if err != nil {
		if ctx.Err() == nil && rctx.Err() != nil {
			return 0, fmt.Errorf("no answer within %v (timeout): %w", s.timeout, err)
		}
		return 0, err
	}
	defer res.Body.Close()
	w.resp.Reset()
	if _, err := w.resp.ReadFrom(res.Body); err != nil {
		if ctx.Err() == nil && rctx.Err() != nil {
			return 0, fmt.Errorf("no complete answer within %v (timeout): %w", s.timeout, err)
		}
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	return res.StatusCode, nil
}

// settle reads a bulk response: it adds the documents Elasticsearch
// rejected to c.failures and returns those worth retrying (429, 5xx) with
// their errors in w.retryErrs. An error means the response cannot be
// matched to the request: none of items is settled.
func (s *esSink) settle(c *esChunk, items []esItem, resp []byte, w *esWorker) ([]esItem, error) {
	w.retry, w.retryErrs = w.retry[:0], w.retryErrs[:0]
	v, err := w.parser.ParseBytes(resp)
	if err != nil {
		return nil, fmt.Errorf("sinks: elasticsearch: unreadable bulk response: %w", err)
	}
	answers := v.GetArray("items")
	if len(answers) != len(items) {
		// Elasticsearch answers every action, in order. (ZincSearch, for
		// one, answers 200 with fewer items when it gives up midway.)
		msg := fmt.Sprintf("sinks: elasticsearch: bulk response has %d items for %d documents", len(answers), len(items))
		if e := v.Get("error"); e != nil {
			msg += ": " + esErrorText(e)
		}
		return nil, errors.New(msg)
	}
	if !v.GetBool("errors") {
		return nil, nil
	}
	for i, a := range answers {
		var r *fastjson.Value
		if o := a.GetObject(); o != nil {
			o.Visit(func(_ []byte, v *fastjson.Value) {
				if r == nil {
					r = v
				}
			})
		}
		if r == nil {
			return nil, fmt.Errorf("sinks: elasticsearch: bulk response item %d is not an object", i)
		}
		status := r.GetInt("status")
		e := r.Get("error")
		switch {
		case status >= 200 && status < 300 && e == nil:
		case status == http.StatusNotFound && e == nil && s.action == "delete":
			// Deleting a document that is not there: it is gone.
		case status == http.StatusTooManyRequests || status >= 500:
			w.retry = append(w.retry, items[i])
			w.retryErrs = append(w.retryErrs, newESItemError(status, e))
		default:
			c.failures = append(c.failures, connectors.Failure{Index: int(items[i].msg), Err: newESItemError(status, e)})
		}
	}
	return w.retry, nil
}

// esItemError is Elasticsearch's reason for not indexing one document, as
// its bulk response gives it.
type esItemError struct {
	Status int    // HTTP status of the item: 400, 409, 429...
	Type   string // mapper_parsing_exception, version_conflict_engine_exception...
	Reason string
	Cause  string // "type: reason" of its caused_by, if any
}

func newESItemError(status int, e *fastjson.Value) *esItemError {
	ie := &esItemError{Status: status}
	if e == nil {
		return ie
	}
	if e.Type() == fastjson.TypeString {
		ie.Reason = string(e.GetStringBytes())
		return ie
	}
	ie.Type = string(e.GetStringBytes("type"))
	ie.Reason = string(e.GetStringBytes("reason"))
	if c := e.Get("caused_by"); c != nil {
		ie.Cause = string(c.GetStringBytes("type"))
		if r := c.GetStringBytes("reason"); len(r) > 0 {
			ie.Cause += ": " + string(r)
		}
	}
	return ie
}

func (e *esItemError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sinks: elasticsearch rejected the document (%d", e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	b.WriteString(")")
	if e.Type != "" {
		b.WriteString(": " + e.Type)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	if e.Cause != "" {
		b.WriteString("; caused by " + e.Cause)
	}
	return b.String()
}

// esErrorText renders the error of a response: an object with type and
// reason (Elasticsearch), or a string (others).
func esErrorText(e *fastjson.Value) string {
	if e.Type() == fastjson.TypeString {
		return string(e.GetStringBytes())
	}
	if t := e.GetStringBytes("type"); len(t) > 0 {
		return string(t) + ": " + string(e.GetStringBytes("reason"))
	}
	return string(e.MarshalTo(nil))
}

// esStatusText describes a failed response: its status and Elasticsearch's
// error, or the start of its body.
func esStatusText(status int, body []byte) string {
	s := strconv.Itoa(status) + " " + http.StatusText(status)
	var p fastjson.Parser
	if v, err := p.ParseBytes(body); err == nil {
		if e := v.Get("error"); e != nil {
			return s + ": " + esErrorText(e)
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return s
	}
	return s + ": " + textSnippet(body[:min(len(body), 512)], len(body) > 512)
}

// outcome turns the requests' results into Write's answer.
func (s *esSink) outcome(ctx context.Context, batch []*connectors.Message, chunks []*esChunk, failures []connectors.Failure) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sinks: elasticsearch: %w", err)
	}
	for _, c := range chunks {
		if c.unavailable != nil {
			// Not a failure of these records: the runtime retries the
			// batch without limit, committing nothing (documents already
			// indexed are overwritten by their ids).
			return connectors.Unavailable(c.unavailable)
		}
	}
	whole := 0
	var first error
	for _, c := range chunks {
		failures = append(failures, c.failures...)
		if c.err != nil {
			if first == nil {
				first = c.err
			}
			transient := !errors.Is(c.err, connectors.ErrPermanent)
			for _, it := range c.pending {
				failures = append(failures, connectors.Failure{Index: int(it.msg), Err: c.err, Retryable: transient})
			}
			whole += len(c.pending)
		}
	}
	switch {
	case len(failures) == 0:
		return nil
	case whole == len(batch):
		return first // every request failed as a whole
	}
	slices.SortFunc(failures, func(a, b connectors.Failure) int { return a.Index - b.Index })
	return &connectors.WriteError{Failures: failures}
}

// --- index templates

// esIndexTemplate is a parsed index name template: literal text and
// {{ .date }}, {{ .date "layout" }}, {{ .dataset }}, {{ .field "path" }}.
// Rendering allocates nothing; it is not safe for concurrent use (date
// parts cache their last hour).
type esIndexTemplate struct {
	src   string
	parts []esIndexPart
}

type esPartKind uint8

const (
	esPartText esPartKind = iota
	esPartDate
	esPartDataset
	esPartField
)

type esIndexPart struct {
	kind   esPartKind
	text   string   // esPartText
	layout string   // esPartDate
	path   []string // esPartField

	hour int64  // esPartDate: the hour of out
	out  []byte // esPartDate: the last rendering
}

// esIndexForbidden are characters Elasticsearch refuses in index names.
const esIndexForbidden = `\/*?"<>| ,#:`

func parseESIndexTemplate(src string) (*esIndexTemplate, error) {
	t := &esIndexTemplate{src: src}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, esIndexPart{kind: esPartText, text: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, esIndexPart{kind: esPartText, text: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("%q: unclosed {{", src)
		}
		p, err := parseESIndexAction(strings.TrimSpace(rest[i+2 : i+j]))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", src, err)
		}
		t.parts = append(t.parts, p)
		rest = rest[i+j+2:]
	}
	if len(t.parts) == 0 {
		return nil, errors.New("an index name is needed")
	}
	for _, p := range t.parts {
		if p.kind == esPartText {
			if p.text != strings.ToLower(p.text) {
				return nil, fmt.Errorf("%q: index names must be lowercase", src)
			}
			if k := strings.IndexAny(p.text, esIndexForbidden); k >= 0 {
				return nil, fmt.Errorf("%q: index names cannot contain %q", src, p.text[k])
			}
		}
	}
	if p := t.parts[0]; p.kind == esPartText && strings.IndexAny(p.text[:1], "-_+") == 0 {
		return nil, fmt.Errorf("%q: index names cannot start with %q", src, p.text[:1])
	}
	return t, nil
}

func parseESIndexAction(a string) (esIndexPart, error) {
	name, arg, _ := strings.Cut(a, " ")
	arg = strings.TrimSpace(arg)
	unquote := func() (string, error) {
		s, err := strconv.Unquote(arg)
		if err != nil {
			return "", fmt.Errorf("{{ %s }}: the argument must be a quoted string", a)
		}
		return s, nil
	}
	switch name {
	case ".date":
		layout := "2006-01-02"
		if arg != "" {
			var err error
			if layout, err = unquote(); err != nil {
				return esIndexPart{}, err
			}
		}
		// The rendering is cached per hour: a layout with minutes or
		// seconds would also make an index per minute.
		base := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
		if base.Format(layout) != base.Add(time.Hour-time.Nanosecond).Format(layout) {
			return esIndexPart{}, fmt.Errorf("{{ %s }}: the layout changes within an hour; use at most hours (2006.01.02.15)", a)
		}
		return esIndexPart{kind: esPartDate, layout: layout, hour: -1 << 62}, nil
	case ".dataset":
		if arg != "" {
			return esIndexPart{}, fmt.Errorf("{{ %s }}: .dataset takes no argument", a)
		}
		return esIndexPart{kind: esPartDataset}, nil
	case ".field":
		f, err := unquote()
		if err != nil || f == "" {
			return esIndexPart{}, fmt.Errorf("{{ %s }}: .field takes a quoted field name, like {{ .field \"service\" }}", a)
		}
		return esIndexPart{kind: esPartField, path: strings.Split(f, ".")}, nil
	}
	return esIndexPart{}, fmt.Errorf("unknown {{ %s }}; use {{ .date }}, {{ .date \"2006.01\" }}, {{ .dataset }} or {{ .field \"name\" }}", a)
}

// render appends the index name of m to dst. Field values are read with
// fields; a missing field is an error.
func (t *esIndexTemplate) render(dst []byte, m *connectors.Message, fields *connectors.FieldReader) ([]byte, error) {
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case esPartText:
			dst = append(dst, p.text...)
		case esPartDate:
			ts := m.Time
			if ts.IsZero() {
				ts = time.Now()
			}
			if h := esFloorDiv(ts.Unix(), 3600); h != p.hour {
				p.out = ts.UTC().AppendFormat(p.out[:0], p.layout)
				p.hour = h
			}
			dst = append(dst, p.out...)
		case esPartDataset:
			dst = esAppendLower(dst, m.Dataset)
		case esPartField:
			v := fields.Get(m, p.path...)
			if v == nil {
				return dst, fmt.Errorf("sinks: elasticsearch: index %s: no field %q in the record", t.src, strings.Join(p.path, "."))
			}
			start := len(dst)
			dst = connectors.AppendText(dst, v)
			esLowerASCII(dst[start:])
		}
	}
	return dst, nil
}

func esFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func esAppendLower(dst []byte, s string) []byte {
	start := len(dst)
	dst = append(dst, s...)
	esLowerASCII(dst[start:])
	return dst
}

func esLowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}
