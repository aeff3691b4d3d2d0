package sinks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// esStub is an Elasticsearch 8 for tests: the info and bulk APIs answered
// as Elasticsearch documents them, over an httptest server. It keeps the
// documents it indexed, so it answers create on an existing id with 409,
// a field of a type other than its first document's with a 400
// document_parsing_exception, and delete of a missing id with 404
// not_found. Hooks inject the failures a healthy node does not produce
// (429, 503, 413). Safe for concurrent requests.
type esStub struct {
	t   testing.TB
	srv *httptest.Server

	// Set before use:
	// whole, if set, may fail request n (0-based) as a whole with a status.
	whole func(n int) int
	// item, if set, may fail one document of request n with a status
	// (429 or 503); 0 processes it normally.
	item func(n int, op *esOp) int
	// maxContent makes larger request bodies (as sent) a 413.
	maxContent int
	// auth, if set, is the Authorization header every request needs.
	auth string
	// noProduct leaves out the X-Elastic-Product header (not Elasticsearch).
	noProduct bool
	// quiet answers bulk requests without parsing or recording them
	// (for benchmarks).
	quiet bool

	mu       sync.Mutex
	requests []*esRequest
	docs     map[string][]byte            // index/id → source
	types    map[string]map[string]string // index → field → JSON type
	seq      int
}

// esRequest is a bulk request as the stub received it.
type esRequest struct {
	Gzip        bool
	ContentType string
	Auth        string
	Query       string
	Size        int // body bytes as sent
	Ops         []*esOp
}

// esOp is one action of a bulk request.
type esOp struct {
	Action, Index, ID string
	Source            []byte
}

func newESStub(t testing.TB) *esStub {
	s := &esStub{t: t, docs: map[string][]byte{}, types: map[string]map[string]string{}}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *esStub) URL() string { return s.srv.URL }

// Requests returns the bulk requests received so far.
func (s *esStub) Requests() []*esRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*esRequest(nil), s.requests...)
}

// Doc returns a stored document's source, or nil.
func (s *esStub) Doc(index, id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.docs[index+"/"+id]
}

// DocCount is the number of stored documents.
func (s *esStub) DocCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.docs)
}

func (s *esStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.noProduct {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	if s.auth != "" && !sameAuth(r.Header.Get("Authorization"), s.auth) {
		w.Header().Set("WWW-Authenticate", `Basic realm="security" charset="UTF-8"`)
		esStubError(w, http.StatusUnauthorized, "security_exception", "unable to authenticate user [weir] for REST request ["+r.URL.Path+"]")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"stub-1","cluster_name":"weir-test","cluster_uuid":"a1b2c3","version":{"number":"8.15.0",`+
			`"build_flavor":"default","build_type":"tar","build_hash":"0","build_date":"2024-08-05T10:05:34.233336849Z",`+
			`"build_snapshot":false,"lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0",`+
			`"minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/_bulk":
		s.bulk(w, r)
	default:
		esStubError(w, http.StatusMethodNotAllowed, "illegal_argument_exception", "unsupported "+r.Method+" "+r.URL.Path)
	}
}

// sameAuth compares Authorization headers as Elasticsearch does: the
// scheme ignoring case.
func sameAuth(got, want string) bool {
	gs, gc, _ := strings.Cut(got, " ")
	ws, wc, _ := strings.Cut(want, " ")
	return strings.EqualFold(gs, ws) && gc == wc
}

// esStubError answers an error as Elasticsearch does.
func esStubError(w http.ResponseWriter, status int, typ, reason string) {
	e := map[string]any{"type": typ, "reason": reason}
	body, _ := json.Marshal(map[string]any{
		"error":  map[string]any{"root_cause": []any{e}, "type": typ, "reason": reason},
		"status": status,
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func (s *esStub) bulk(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if s.maxContent > 0 && len(raw) > s.maxContent {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // as Elasticsearch: no body
		return
	}
	body := raw
	gz := r.Header.Get("Content-Encoding") == "gzip"
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			esStubError(w, http.StatusBadRequest, "parse_exception", "cannot decompress the request body: "+err.Error())
			return
		}
	}
	if s.quiet {
		s.answerQuiet(w, r, body)
		return
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/x-ndjson") && !strings.HasPrefix(ct, "application/json") && !strings.Contains(ct, "x-ndjson") {
		esStubError(w, http.StatusNotAcceptable, "media_type_header_exception", "Content-Type header ["+ct+"] is not supported")
		return
	}
	if len(body) == 0 {
		esStubError(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
		return
	}
	if body[len(body)-1] != '\n' {
		esStubError(w, http.StatusBadRequest, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
		return
	}
	ops, err := parseBulk(body)
	if err != nil {
		esStubError(w, http.StatusBadRequest, "illegal_argument_exception", err.Error())
		return
	}
	req := &esRequest{Gzip: gz, ContentType: ct, Auth: r.Header.Get("Authorization"), Query: r.URL.RawQuery, Size: len(raw), Ops: ops}
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	if s.whole != nil {
		switch status := s.whole(n); status {
		case 0:
		case http.StatusTooManyRequests:
			esStubError(w, status, "es_rejected_execution_exception", "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=1024]")
			return
		default:
			esStubError(w, status, "unavailable_shards_exception", "[logs][0] primary shard is not active Timeout: [1m]")
			return
		}
	}
	items := make([]any, len(ops))
	hasErrors := false
	for i, op := range ops {
		res := s.apply(n, op)
		if _, bad := res["error"]; bad {
			hasErrors = true
		}
		items[i] = map[string]any{op.Action: res}
	}
	out := map[string]any{"took": 3, "errors": hasErrors, "items": items}
	var v any = out
	if fp := r.URL.Query().Get("filter_path"); fp != "" {
		v = filterPath(toGeneric(out), strings.Split(fp, ","))
		if v == nil {
			v = map[string]any{}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// answerQuiet answers every document of an index-only body created
// without parsing it, as Elasticsearch does with a filter_path of
// errors,items.*.status, or in full: the cost of a bulk request to the
// client, not to the server.
func (s *esStub) answerQuiet(w http.ResponseWriter, r *http.Request, body []byte) {
	n := bytes.Count(body, []byte{'\n'}) / 2
	short := r.URL.Query().Get("filter_path") != ""
	b := make([]byte, 0, 64+n*200)
	b = append(b, `{"took":1,"errors":false,"items":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		if short {
			b = append(b, `{"index":{"status":201}}`...)
			continue
		}
		b = append(b, `{"index":{"_index":"bench","_id":"web-0-`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"_primary_term":1,"status":201}}`...)
	}
	b = append(b, "]}"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// parseBulk reads the NDJSON of a bulk request as Elasticsearch does: an
// action line, then (except for delete) a source line.
func parseBulk(body []byte) ([]*esOp, error) {
	var ops []*esOp
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var action map[string]map[string]any
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			return nil, fmt.Errorf("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT: %q", line, sc.Bytes())
		}
		op := &esOp{}
		for k, meta := range action {
			op.Action = k
			for mk, mv := range meta {
				switch mk {
				case "_index":
					op.Index, _ = mv.(string)
				case "_id":
					op.ID, _ = mv.(string)
				case "routing", "require_alias", "pipeline", "version", "version_type", "if_seq_no", "if_primary_term", "dynamic_templates":
				default:
					return nil, fmt.Errorf("Action/metadata line [%d] contains an unknown parameter [%s]", line, mk)
				}
			}
		}
		switch op.Action {
		case "index", "create", "update":
			if !sc.Scan() {
				return nil, fmt.Errorf("Validation Failed: 1: source is missing for the %s action at line [%d];", op.Action, line)
			}
			line++
			op.Source = append([]byte(nil), sc.Bytes()...)
		case "delete":
		default:
			return nil, fmt.Errorf("Malformed action/metadata line [%d], expected one of [create, delete, index, update] but found [%s]", line, op.Action)
		}
		if op.Index == "" {
			return nil, fmt.Errorf("Validation Failed: 1: index is missing;")
		}
		ops = append(ops, op)
	}
	return ops, sc.Err()
}

// apply executes one action and returns its response item.
func (s *esStub) apply(n int, op *esOp) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op.ID == "" {
		s.seq++
		op.ID = "auto" + strconv.Itoa(s.seq)
	}
	res := map[string]any{"_index": op.Index, "_id": op.ID}
	fail := func(status int, typ, reason string, cause map[string]any) map[string]any {
		e := map[string]any{"type": typ, "reason": reason, "index_uuid": "Xs3ZQ7t2Tj6VZb0iE1m0Ng", "shard": "0", "index": op.Index}
		if cause != nil {
			e["caused_by"] = cause
		}
		res["status"] = status
		res["error"] = e
		return res
	}
	if s.item != nil {
		switch status := s.item(n, op); status {
		case 0:
		case http.StatusTooManyRequests:
			return fail(status, "es_rejected_execution_exception", "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=300, max_coordinating_and_primary_bytes=1024]", nil)
		default:
			return fail(status, "unavailable_shards_exception", "["+op.Index+"][0] primary shard is not active Timeout: [1m]", nil)
		}
	}
	key := op.Index + "/" + op.ID
	_, exists := s.docs[key]
	res["_shards"] = map[string]any{"total": 2, "successful": 1, "failed": 0}
	res["_seq_no"], res["_primary_term"], res["_version"] = len(s.docs), 1, 1
	switch op.Action {
	case "delete":
		if !exists {
			res["result"], res["status"] = "not_found", http.StatusNotFound
			return res
		}
		delete(s.docs, key)
		res["result"], res["status"] = "deleted", http.StatusOK
		return res
	case "create":
		if exists {
			return fail(http.StatusConflict, "version_conflict_engine_exception",
				"["+op.ID+"]: version conflict, document already exists (current version [1])", nil)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(op.Source, &doc); err != nil {
		return fail(http.StatusBadRequest, "document_parsing_exception", "[1:1] failed to parse: "+err.Error(),
			map[string]any{"type": "x_content_parse_exception", "reason": err.Error()})
	}
	types := s.types[op.Index]
	if types == nil {
		types = map[string]string{}
		s.types[op.Index] = types
	}
	for f, v := range doc {
		t := jsonType(v)
		if have, ok := types[f]; ok && have != t && t != "null" {
			mapped := map[string]string{"number": "long", "string": "text", "bool": "boolean", "object": "object", "array": "nested"}[have]
			return fail(http.StatusBadRequest, "document_parsing_exception",
				fmt.Sprintf("[1:%d] failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%v'", len(f)+4, f, mapped, op.ID, v),
				map[string]any{"type": "illegal_argument_exception", "reason": fmt.Sprintf("For input string: \"%v\"", v)})
		}
		if _, ok := types[f]; !ok && t != "null" {
			types[f] = t
		}
	}
	s.docs[key] = op.Source
	if exists {
		res["result"], res["status"], res["_version"] = "updated", http.StatusOK, 2
	} else {
		res["result"], res["status"] = "created", http.StatusCreated
	}
	return res
}

func jsonType(v any) string {
	switch v.(type) {
	case float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "null"
}

func toGeneric(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}

// filterPath applies Elasticsearch's filter_path: dotted patterns with *
// wildcards; arrays are transparent; what matches nothing goes.
func filterPath(v any, patterns []string) any {
	var split [][]string
	for _, p := range patterns {
		split = append(split, strings.Split(p, "."))
	}
	return filterValue(v, split)
}

func filterValue(v any, patterns [][]string) any {
	switch x := v.(type) {
	case []any:
		var out []any
		for _, e := range x {
			if f := filterValue(e, patterns); f != nil {
				out = append(out, f)
			}
		}
		if out == nil {
			return nil
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			var rest [][]string
			whole := false
			for _, p := range patterns {
				if ok, _ := path.Match(p[0], k); !ok {
					continue
				}
				if len(p) == 1 {
					whole = true
				} else {
					rest = append(rest, p[1:])
				}
			}
			switch {
			case whole:
				out[k] = e
			case rest != nil:
				if f := filterValue(e, rest); f != nil {
					out[k] = f
				}
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return nil // a leaf with patterns left does not match
}
