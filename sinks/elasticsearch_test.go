package sinks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

// newESSink builds an elasticsearch sink from YAML, with short backoffs.
func newESSink(t testing.TB, src string) *esSink {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml %q: %v", src, err)
	}
	var node *yaml.Node
	if len(doc.Content) > 0 {
		node = doc.Content[0]
	}
	conf, errs := connectors.ParseConfig(&elasticsearchSpec, node)
	if len(errs) > 0 {
		t.Fatalf("ParseConfig(%q) = %v", src, errs)
	}
	s, err := newElasticsearch(conf, connectors.Resources{})
	if err != nil {
		t.Fatalf("newElasticsearch(%q) = %v", src, err)
	}
	es := s.(*esSink)
	t.Cleanup(func() { es.Close(context.Background()) })
	return es
}

// esDay is the time of the first test record: 2026-11-21 22:00 UTC. Two
// hours per record spreads a batch over days.
var esDay = time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC)

// esBatch makes n records of dataset web as the runtime hands them over:
// JSON values, origin set, times from esDay on, step apart.
func esBatch(n int, step time.Duration) []*connectors.Message {
	batch := make([]*connectors.Message, n)
	for i := range batch {
		batch[i] = &connectors.Message{
			Value:     fmt.Appendf(nil, `{"n":%d,"service":"Checkout","msg":"request %d served"}`, i, i),
			Time:      esDay.Add(time.Duration(i) * step),
			Dataset:   "web",
			Partition: int32(i % 2),
			Offset:    int64(100 + i),
		}
	}
	return batch
}

// writeErr returns Write's *WriteError, failing the test on another answer.
func writeErr(t *testing.T, err error) *connectors.WriteError {
	t.Helper()
	var we *connectors.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write = %v, want a *connectors.WriteError", err)
	}
	return we
}

func TestElasticsearchConfigErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{`{urls: ["ftp://x"]}`, "not an http"},
		{`{index: "Logs-{{ .date }}"}`, "lowercase"},
		{`{index: "logs-{{ .nope }}"}`, "unknown {{ .nope }}"},
		{`{index: "logs-{{ .date"}`, "unclosed"},
		{`{index: "logs-{{ .date \"2006-01-02T15:04\" }}"}`, "within an hour"},
		{`{index: "logs-{{ .field service }}"}`, "quoted field name"},
		{`{index: "_logs"}`, "cannot start with"},
		{`{index: "lo gs"}`, "cannot contain"},
		{`{action: delete}`, "needs id_field"},
		{`{flush_interval: 1s}`, "batching.period"},
		{`{max_retries: 3}`, "sink's retry"},
		{`{workers: 0}`, "workers: must be at least 1, not 0"},
		{`{api_key: k, username: u}`, "either api_key"},
	}
	for _, tt := range tests {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tt.yaml), &doc); err != nil {
			t.Fatal(err)
		}
		// A field out of its spec's bounds is refused by ParseConfig,
		// the rest by the constructor.
		conf, errs := connectors.ParseConfig(&elasticsearchSpec, doc.Content[0])
		var err error
		if len(errs) > 0 {
			err = errs[0]
		} else {
			_, err = newElasticsearch(conf, connectors.Resources{})
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newElasticsearch(%s) = %v, want an error containing %q", tt.yaml, err, tt.want)
		}
	}
}

func TestElasticsearchIndexTemplate(t *testing.T) {
	m := &connectors.Message{Value: []byte(`{"service":"Checkout","k":{"env":"prod"},"n":7}`), Dataset: "Web",
		Time: time.Date(2026, 11, 21, 23, 59, 59, 0, time.FixedZone("CET", 3600))}
	tests := []struct{ tmpl, want string }{
		{"logs-{{ .date }}", "logs-2026-11-21"}, // 22:59:59 UTC
		{"logs-{{.date}}", "logs-2026-11-21"},
		{`logs-{{ .date "2006.01" }}`, "logs-2026.11"},
		{`logs-{{ .date "2006.01.02.15" }}`, "logs-2026.11.21.22"},
		{"{{ .dataset }}-{{ .date }}", "web-2026-11-21"},
		{`{{ .field "service" }}-{{ .field "k.env" }}-{{ .field "n" }}`, "checkout-prod-7"},
		{"static", "static"},
	}
	for _, tt := range tests {
		tmpl, err := parseESIndexTemplate(tt.tmpl)
		if err != nil {
			t.Fatalf("parseESIndexTemplate(%q) = %v", tt.tmpl, err)
		}
		var fr connectors.FieldReader
		got, err := tmpl.render(nil, m, &fr)
		if err != nil || string(got) != tt.want {
			t.Errorf("render(%q) = %q, %v; want %q", tt.tmpl, got, err, tt.want)
		}
	}
	// The hour cache follows the time across days.
	tmpl, _ := parseESIndexTemplate("logs-{{ .date }}")
	var fr connectors.FieldReader
	for i, want := range []string{"logs-2026-11-21", "logs-2026-11-21", "logs-2026-11-22", "logs-2026-11-21"} {
		ts := []time.Time{esDay, esDay.Add(time.Hour + 59*time.Minute), esDay.Add(2 * time.Hour), esDay.Add(-time.Hour)}[i]
		got, _ := tmpl.render(nil, &connectors.Message{Time: ts}, &fr)
		if string(got) != want {
			t.Errorf("render(%v) = %q, want %q", ts, got, want)
		}
	}
	tmpl, _ = parseESIndexTemplate(`x-{{ .field "missing" }}`)
	if _, err := tmpl.render(nil, m, &fr); err == nil || !strings.Contains(err.Error(), `no field "missing"`) {
		t.Errorf("render(missing field) = %v, want an error naming the field", err)
	}
}

// TestElasticsearchWrite indexes a batch spread over two days and checks
// what the cluster received: daily indices, ids from the origin, gzip,
// and that a second delivery overwrites instead of duplicating.
func TestElasticsearchWrite(t *testing.T) {
	es := newESStub(t)
	es.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte("weir:secret"))
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: "logs-{{ .date }}", username: weir, password: secret}`, es.URL()))
	if err := s.Connect(context.Background()); err != nil {
		t.Fatalf("Connect = %v", err)
	}
	batch := esBatch(30, time.Hour)
	for round := range 2 {
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatalf("Write round %d = %v", round, err)
		}
	}
	reqs := es.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d bulk requests, want 2 (one per write)", len(reqs))
	}
	r := reqs[0]
	if !r.Gzip || r.ContentType != "application/x-ndjson" {
		t.Errorf("request gzip %v, content type %q; want gzip and application/x-ndjson", r.Gzip, r.ContentType)
	}
	if len(r.Ops) != len(batch) {
		t.Fatalf("request has %d actions, want %d", len(r.Ops), len(batch))
	}
	for i, op := range r.Ops {
		m := batch[i]
		wantIndex := "logs-" + m.Time.UTC().Format("2006-01-02")
		wantID := fmt.Sprintf("web-%d-%d", m.Partition, m.Offset)
		if op.Action != "index" || op.Index != wantIndex || op.ID != wantID || string(op.Source) != string(m.Value) {
			t.Errorf("action %d = %s %s/%s %s, want index %s/%s %s", i, op.Action, op.Index, op.ID, op.Source, wantIndex, wantID, m.Value)
		}
	}
	if es.DocCount() != len(batch) {
		t.Errorf("cluster holds %d documents after writing %d twice, want %d", es.DocCount(), len(batch), len(batch))
	}
	if es.Doc("logs-2026-11-21", "web-0-100") == nil || es.Doc("logs-2026-11-22", "web-0-102") == nil || es.Doc("logs-2026-11-23", "web-1-129") == nil {
		t.Errorf("documents missing from the daily indices")
	}
}

func TestElasticsearchIDs(t *testing.T) {
	es := newESStub(t)
	ids := func(conf string, batch []*connectors.Message) []string {
		t.Helper()
		s := newESSink(t, conf)
		n := len(es.Requests())
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatalf("Write = %v", err)
		}
		var out []string
		for _, op := range es.Requests()[n].Ops {
			out = append(out, op.ID)
		}
		return out
	}
	u := es.URL()
	fromFile := []*connectors.Message{
		{Value: []byte(`{"a":1}`), Headers: []codecs.RecordHeader{{Key: []byte("weir.file"), Value: []byte("/var/log/app.log")}, {Key: []byte("weir.offset"), Value: []byte("4096")}}},
		{Value: []byte(`{"a":2}`)},
	}
	if got, want := ids(fmt.Sprintf(`{urls: [%q], index: x}`, u), fromFile), []string{"/var/log/app.log-4096", "auto1"}; !slices.Equal(got, want) {
		t.Errorf("ids from headers = %q, want %q", got, want)
	}
	// A line of a file, stored twice in the dataset (read again after a
	// crash): one id, from the file's identity and the line's offset,
	// whatever the path and the dataset coordinates.
	line := func(path string, offset int64) *connectors.Message {
		return &connectors.Message{Value: []byte(`{"a":1}`), Dataset: "logs", Partition: 1, Offset: offset, Headers: []codecs.RecordHeader{
			{Key: []byte("weir.file"), Value: []byte(path)},
			{Key: []byte("weir.file.id"), Value: []byte("0123456789abcdef")},
			{Key: []byte("weir.offset"), Value: []byte("4096")}}}
	}
	twice := []*connectors.Message{
		line("/var/log/app.log", 17),
		line("/var/log/app.log.1", 93),                                        // renamed by rotation meanwhile
		{Value: []byte(`{"a":2}`), Dataset: "logs", Partition: 1, Offset: 94}, // syslog: no file
		{Value: []byte(`{"a":3}`), Dataset: "logs", Partition: 0, Offset: 5, Headers: []codecs.RecordHeader{
			{Key: []byte("weir.file.id"), Value: []byte("0123456789abcdef")}}}, // no offset: not a line's origin
	}
	if got, want := ids(fmt.Sprintf(`{urls: [%q], index: x}`, u), twice), []string{"0123456789abcdef-4096", "0123456789abcdef-4096", "logs-1-94", "logs-0-5"}; !slices.Equal(got, want) {
		t.Errorf("ids of file lines from a dataset = %q, want %q", got, want)
	}
	if got := ids(fmt.Sprintf(`{urls: [%q], index: x, id: auto}`, u), esBatch(2, 0)); strings.HasPrefix(got[0], "web-") {
		t.Errorf("id: auto sent ids %q", got)
	}
	byField := []*connectors.Message{{Value: []byte(`{"event":{"id":"e-1"}}`)}, {Value: []byte(`{"event":{"id":42}}`)}}
	if got, want := ids(fmt.Sprintf(`{urls: [%q], index: x, id_field: event.id}`, u), byField), []string{"e-1", "42"}; !slices.Equal(got, want) {
		t.Errorf("ids from id_field = %q, want %q", got, want)
	}
	long := []*connectors.Message{{Value: []byte(`{"id":"` + strings.Repeat("x", 600) + `"}`)}}
	if got := ids(fmt.Sprintf(`{urls: [%q], index: x, id_field: id}`, u), long); len(got[0]) != 64 {
		t.Errorf("a 600-byte id became %q, want a 64-hex-digit hash", got[0])
	}
}

// TestElasticsearchRejected: documents Elasticsearch rejects (mapping
// conflict, 409 on create) fail alone, not retryable, with its reason;
// the others of the batch are delivered. Records that are not JSON
// objects or lack the id field fail before sending.
func TestElasticsearchRejected(t *testing.T) {
	es := newESStub(t)
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, action: create, id_field: id, compression: none}`, es.URL()))
	first := []*connectors.Message{{Value: []byte(`{"id":"a","n":1}`)}, {Value: []byte(`{"id":"b","n":2}`)}}
	if err := s.Write(context.Background(), first); err != nil {
		t.Fatalf("Write = %v", err)
	}
	batch := []*connectors.Message{
		{Value: []byte(`{"id":"c","n":3}`)},
		{Value: []byte(`{"id":"d","n":"three"}`)}, // n is a long
		{Value: []byte(`{"id":"a","n":4}`)},       // exists: create fails
		{Value: []byte(`not json`)},
		{Value: []byte(`{"n":5}`)}, // no id
		{Value: []byte(`{"id":"e","n":6}`)},
	}
	we := writeErr(t, s.Write(context.Background(), batch))
	want := []struct {
		index int
		text  string
	}{
		{1, "(400 Bad Request): document_parsing_exception: [1:5] failed to parse field [n] of type [long] in document with id 'd'. Preview of field's value: 'three'; caused by illegal_argument_exception: For input string: \"three\""},
		{2, "(409 Conflict): version_conflict_engine_exception: [a]: version conflict, document already exists (current version [1])"},
		{3, "not a JSON object"},
		{4, `no id field "id"`},
	}
	if len(we.Failures) != len(want) {
		t.Fatalf("failures = %+v, want %d", we.Failures, len(want))
	}
	for i, f := range we.Failures {
		if f.Index != want[i].index || f.Retryable || !strings.Contains(f.Err.Error(), want[i].text) {
			t.Errorf("failure %d = {%d %v retryable %v}, want {%d ...%s... not retryable}", i, f.Index, f.Err, f.Retryable, want[i].index, want[i].text)
		}
	}
	var ie *esItemError
	if !errors.As(we.Failures[0].Err, &ie) || ie.Status != 400 || ie.Type != "document_parsing_exception" {
		t.Errorf("failure 0 = %#v, want an *esItemError with status 400", we.Failures[0].Err)
	}
	for _, id := range []string{"c", "e"} {
		if es.Doc("logs", id) == nil {
			t.Errorf("document %s was not indexed", id)
		}
	}
	if got := len(es.Requests()[1].Ops); got != 4 {
		t.Errorf("second request has %d actions, want 4 (the records that encode)", got)
	}
}

// TestElasticsearchItemFailuresAreLeftToThePipeline: documents answered
// 429 or 503 come back as retryable failures of one request: the sink
// does not retry under the pipeline's retries (issue 17 item 6), and
// those the pipeline sends again are indexed.
func TestElasticsearchItemFailuresAreLeftToThePipeline(t *testing.T) {
	es := newESStub(t)
	es.item = func(n int, op *esOp) int {
		switch {
		case n == 0 && op.ID == "web-1-101":
			return http.StatusTooManyRequests
		case n == 0 && op.ID == "web-1-103":
			return http.StatusServiceUnavailable
		case n == 0 && op.ID == "web-0-104":
			return http.StatusBadRequest // mapping error: permanent
		}
		return 0
	}
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs}`, es.URL()))
	batch := esBatch(6, 0)
	we := writeErr(t, s.Write(context.Background(), batch))
	var retryable, permanent []int
	for _, f := range we.Failures {
		if f.Retryable {
			retryable = append(retryable, f.Index)
		} else {
			permanent = append(permanent, f.Index)
		}
	}
	if !slices.Equal(retryable, []int{1, 3}) || !slices.Equal(permanent, []int{4}) {
		t.Fatalf("failures = %+v, want 1 and 3 retryable, 4 permanent", we.Failures)
	}
	if n := len(es.Requests()); n != 1 {
		t.Errorf("%d requests for one write, want 1 (no retry inside the sink)", n)
	}
	if err := s.Write(context.Background(), []*connectors.Message{batch[1], batch[3]}); err != nil {
		t.Fatalf("the pipeline's retry: %v", err)
	}
	if es.DocCount() != 5 {
		t.Errorf("%d documents indexed, want 5", es.DocCount())
	}
}

// TestElasticsearchWholeRequestFailures: a 503 or 429 for the whole
// request is a transient error after one request (the pipeline retries,
// without limit by default); another 4xx is permanent.
func TestElasticsearchWholeRequestFailures(t *testing.T) {
	es := newESStub(t)
	es.whole = func(int) int { return http.StatusServiceUnavailable }
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs}`, es.URL()))
	err := s.Write(context.Background(), esBatch(5, 0))
	var we *connectors.WriteError
	if err == nil || errors.As(err, &we) || errors.Is(err, connectors.ErrUnavailable) || errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("Write against a 503 = %v, want a plain (transient) error", err)
	}
	if !strings.Contains(err.Error(), "503 Service Unavailable: unavailable_shards_exception") {
		t.Errorf("error %q does not give the status and Elasticsearch's reason", err)
	}
	if n := len(es.Requests()); n != 1 {
		t.Errorf("%d requests, want 1 (no retry inside the sink)", n)
	}
	es.whole = func(int) int { return http.StatusBadRequest }
	if err := s.Write(context.Background(), esBatch(5, 0)); !errors.Is(err, connectors.ErrPermanent) {
		t.Fatalf("Write answered 400 as a whole = %v, want a permanent error", err)
	}
}

// TestElasticsearchSplitsOn413: a request larger than the cluster takes
// is split in halves until it fits; a single document too large fails
// alone.
func TestElasticsearchSplitsOn413(t *testing.T) {
	es := newESStub(t)
	es.maxContent = 1000
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, compression: none}`, es.URL()))
	batch := esBatch(16, 0) // ~130 bytes each: 2080 bytes
	batch[9] = &connectors.Message{Value: []byte(`{"big":"` + strings.Repeat("x", 1200) + `"}`), Dataset: "web", Offset: 9}
	we := writeErr(t, s.Write(context.Background(), batch))
	if len(we.Failures) != 1 || we.Failures[0].Index != 9 || we.Failures[0].Retryable || !strings.Contains(we.Failures[0].Err.Error(), "413") {
		t.Fatalf("failures = %+v, want message 9 not retryable with 413", we.Failures)
	}
	if es.DocCount() != 15 {
		t.Errorf("%d documents indexed, want 15", es.DocCount())
	}
	for _, r := range es.Requests() {
		if r.Size > es.maxContent {
			t.Errorf("a request of %d bytes was accepted", r.Size)
		}
	}
}

// TestElasticsearchUnavailable: no cluster listening is ErrUnavailable
// with a message naming it, from Connect and from Write; refused
// credentials hold the pipeline back too.
func TestElasticsearchUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs}`, addr))
	for name, err := range map[string]error{"Connect": s.Connect(context.Background()), "Write": s.Write(context.Background(), esBatch(3, 0))} {
		if !errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "elasticsearch at "+addr+" unreachable") ||
			!strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s = %v, want ErrUnavailable saying elasticsearch at %s unreachable: ...connection refused", name, err, addr)
		}
	}

	es := newESStub(t)
	es.auth = "ApiKey right"
	s = newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, api_key: wrong}`, es.URL()))
	for name, err := range map[string]error{"Connect": s.Connect(context.Background()), "Write": s.Write(context.Background(), esBatch(3, 0))} {
		if !errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "security_exception") {
			t.Errorf("%s with a wrong API key = %v, want ErrUnavailable with 401 security_exception", name, err)
		}
	}
	s = newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, api_key: right}`, es.URL()))
	if err := s.Write(context.Background(), esBatch(3, 0)); err != nil {
		t.Errorf("Write with the API key = %v", err)
	}
}

// TestElasticsearchFailover: with a dead node first in urls, requests go
// to the next.
func TestElasticsearchFailover(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	es := newESStub(t)
	s := newESSink(t, fmt.Sprintf(`{urls: [%q, %q], index: logs}`, dead, es.URL()))
	for i := range 3 {
		if err := s.Write(context.Background(), esBatch(3, 0)); err != nil {
			t.Fatalf("Write %d = %v", i, err)
		}
	}
}

func TestElasticsearchNotElasticsearch(t *testing.T) {
	es := newESStub(t)
	es.noProduct = true
	s := newESSink(t, fmt.Sprintf(`{urls: [%q]}`, es.URL()))
	err := s.Connect(context.Background())
	if err == nil || errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Errorf("Connect to a server without X-Elastic-Product = %v, want an error saying it is not Elasticsearch", err)
	}
}

// TestElasticsearchResponseMismatch: a 200 answer with fewer items than
// documents (what ZincSearch does when it gives up midway) is not taken
// as success.
func TestElasticsearchResponseMismatch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Write([]byte(`{"took":0,"errors":false,"error":"bulk index data format error","items":[{"index":{"status":200}}]}`))
	}))
	defer srv.Close()
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs}`, srv.URL))
	err := s.Write(context.Background(), esBatch(3, 0))
	if err == nil || errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "1 items for 3 documents: bulk index data format error") {
		t.Errorf("Write = %v, want a plain error about 1 item for 3 documents", err)
	}
}

func TestElasticsearchDelete(t *testing.T) {
	es := newESStub(t)
	w := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, id_field: id}`, es.URL()))
	if err := w.Write(context.Background(), []*connectors.Message{{Value: []byte(`{"id":"a"}`)}}); err != nil {
		t.Fatal(err)
	}
	d := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, id_field: id, action: delete}`, es.URL()))
	del := []*connectors.Message{{Value: []byte(`{"id":"a"}`)}, {Value: []byte(`{"id":"never-there"}`)}}
	if err := d.Write(context.Background(), del); err != nil {
		t.Fatalf("delete Write = %v, want nil (a missing document is deleted already)", err)
	}
	if es.DocCount() != 0 {
		t.Errorf("%d documents left", es.DocCount())
	}
	if ops := es.Requests()[1].Ops; ops[0].Action != "delete" || ops[0].Source != nil {
		t.Errorf("delete sent %+v", ops[0])
	}
}

// TestElasticsearchConcurrentRequests: a write larger than flush_bytes
// goes as several requests in flight at once, each within the limit, and
// every record is accounted for.
func TestElasticsearchConcurrentRequests(t *testing.T) {
	es := newESStub(t)
	es.item = func(n int, op *esOp) int {
		if op.ID == "web-1-333" && n < 20 {
			return http.StatusTooManyRequests
		}
		return 0
	}
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, flush_bytes: 4KiB, workers: 4, compression: none}`, es.URL()))
	if err := s.Write(context.Background(), esBatch(1, 0)); err != nil { // n is a long from now on
		t.Fatal(err)
	}
	batch := esBatch(2000, time.Minute)
	batch[700].Value = []byte(`{"n":"seven hundred"}`) // a mapping conflict
	we := writeErr(t, s.Write(context.Background(), batch))
	// The pipeline retries the 429s until they are indexed.
	for tries := 0; tries < 30; tries++ {
		var again []*connectors.Message
		var idx []int
		for _, f := range we.Failures {
			if f.Retryable {
				again, idx = append(again, batch[f.Index]), append(idx, f.Index)
			}
		}
		if len(again) == 0 {
			break
		}
		err := s.Write(context.Background(), again)
		var rest []connectors.Failure
		for _, f := range we.Failures {
			if !f.Retryable {
				rest = append(rest, f)
			}
		}
		if err != nil {
			for _, f := range writeErr(t, err).Failures {
				f.Index = idx[f.Index]
				rest = append(rest, f)
			}
		}
		we.Failures = rest
	}
	if len(we.Failures) != 1 || we.Failures[0].Index != 700 || we.Failures[0].Retryable {
		t.Fatalf("failures = %+v, want only message 700, permanent", we.Failures)
	}
	if es.DocCount() != 1999 {
		t.Errorf("%d documents indexed, want 1999", es.DocCount())
	}
	reqs := es.Requests()[1:]
	if len(reqs) < 2000*90/4096 {
		t.Errorf("only %d requests for ~180KB in 4KiB requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Size > 4096 {
			t.Errorf("a request of %d bytes, over flush_bytes", r.Size)
		}
	}
}

func TestElasticsearchTLS(t *testing.T) {
	es := &esStub{t: t, docs: map[string][]byte{}, types: map[string]map[string]string{}}
	srv := httptest.NewUnstartedServer(es)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake refused below
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := srv.Certificate()
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{
		fmt.Sprintf(`{urls: [%q], index: logs, tls: {ca_file: %q}}`, srv.URL, caFile),
		fmt.Sprintf(`{urls: [%q], index: logs, tls: {skip_verify: true}}`, srv.URL),
	} {
		s := newESSink(t, conf)
		if err := s.Connect(context.Background()); err != nil {
			t.Errorf("Connect(%s) = %v", conf, err)
		}
		if err := s.Write(context.Background(), esBatch(3, 0)); err != nil {
			t.Errorf("Write(%s) = %v", conf, err)
		}
	}
	s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs}`, srv.URL))
	if err := s.Connect(context.Background()); !errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Connect without the CA = %v, want ErrUnavailable about the certificate", err)
	}
}

// TestElasticsearchFilterPathStub checks the stub's filter_path against
// the answer Elasticsearch documents for it.
func TestElasticsearchFilterPathStub(t *testing.T) {
	in := toGeneric(map[string]any{"took": 3, "errors": true, "items": []any{
		map[string]any{"index": map[string]any{"_id": "1", "status": 201, "result": "created"}},
		map[string]any{"create": map[string]any{"_id": "2", "status": 409, "error": map[string]any{"type": "t"}}},
	}})
	got, _ := json.Marshal(filterPath(in, []string{"errors", "items.*.status", "items.*.error"}))
	want := `{"errors":true,"items":[{"index":{"status":201}},{"create":{"error":{"type":"t"},"status":409}}]}`
	if string(got) != want {
		t.Errorf("filterPath = %s, want %s", got, want)
	}
}
