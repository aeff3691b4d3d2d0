package sources

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/weirhub/weir/connectors"
)

// newTestHTTP starts an http source on a free port of 127.0.0.1 and
// returns it with its URL.
func newTestHTTP(t *testing.T, conf string) (*httpSource, string) {
	t.Helper()
	s, err := newHTTP(parseConfig(t, &httpSpec, "address: 127.0.0.1:0\n"+conf), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	src := s.(*httpSource)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Connect(ctx); err != nil { // again: nothing happens
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		src.Close(ctx)
	})
	return src, "http://" + src.addr().String() + "/ingest"
}

var testClient = &http.Client{Timeout: 10 * time.Second}

type response struct {
	status int
	body   string
	header http.Header
	err    error
}

// post sends a request on a goroutine; its response arrives on the
// channel.
func post(url, contentType, encoding string, body []byte, header ...string) <-chan response {
	ch := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := testClient.Do(req)
		if err != nil {
			ch <- response{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- response{status: resp.StatusCode, body: string(b), header: resp.Header}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan response) response {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no response in 10s")
	}
	return response{}
}

// read reads one batch within a bound.
func read(t *testing.T, s *httpSource) ([]*connectors.Message, connectors.AckFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch, ack, err := s.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return batch, ack
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

func TestHTTPSourceBodies(t *testing.T) {
	tests := []struct {
		name, contentType, encoding string
		body                        []byte
		want                        []string
	}{
		{"ndjson", "application/x-ndjson", "", []byte("{\"a\":1}\n{\"b\":2}\n"), []string{`{"a":1}`, `{"b":2}`}},
		{"text lines", "", "", []byte("one\r\n\n  \ntwo"), []string{"one", "two"}},
		{"json object", "application/json", "", []byte(` {"a":1} `), []string{`{"a":1}`}},
		{"json array", "application/json; charset=utf-8", "", []byte(`[{"a":1}, {"b":[2, 3]}]`), []string{`{"a":1}`, `{"b":[2,3]}`}},
		{"gzip", "application/x-ndjson", "gzip", gzipped("{\"a\":1}\n{\"b\":2}\n"), []string{`{"a":1}`, `{"b":2}`}},
	}
	s, url := newTestHTTP(t, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := post(url, tt.contentType, tt.encoding, tt.body)
			batch, ack := read(t, s)
			var got []string
			for _, m := range batch {
				got = append(got, string(m.Value))
				if time.Since(m.Time) > time.Minute {
					t.Errorf("record time %v", m.Time)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("POST %s %q = %q, want %q", tt.contentType, tt.body, got, tt.want)
			}
			select {
			case r := <-ch:
				t.Fatalf("answered %d before the ack", r.status)
			case <-time.After(20 * time.Millisecond):
			}
			ack(context.Background(), nil)
			if r := wait(t, ch); r.status != http.StatusNoContent {
				t.Errorf("after ack(nil): %d %s, want 204", r.status, r.body)
			}
		})
	}
}

func TestHTTPSourceRejects(t *testing.T) {
	s, url := newTestHTTP(t, "max_body_bytes: 100\ntoken: secret")
	auth := []string{"Authorization", "Bearer secret"}
	tests := []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		header      []string
		status      int
		inBody      string
	}{
		{"no token", "", "", []byte("a\n"), nil, 401, "bearer token"},
		{"wrong token", "", "", []byte("a\n"), []string{"Authorization", "Bearer nope"}, 401, "bearer token"},
		{"too large", "", "", bytes.Repeat([]byte("a\n"), 60), auth, 413, "larger than 100"},
		{"too large unzipped", "", "gzip", gzipped(strings.Repeat("a\n", 60)), auth, 413, "larger than 100"},
		{"bad gzip", "", "gzip", []byte("not gzip"), auth, 400, "bad gzip"},
		{"bad encoding", "", "br", []byte("x"), auth, 415, "not supported"},
		{"bad json", "application/json", "", []byte(`{"a":`), auth, 400, "not JSON"},
		{"json scalar", "application/json", "", []byte(`42`), auth, 400, "JSON number"},
		{"json array of scalars", "application/json", "", []byte(`[{}, 1]`), auth, 400, "item 1"},
		{"empty", "", "", nil, auth, 204, ""},
	}
	for _, tt := range tests {
		r := wait(t, post(url, tt.contentType, tt.encoding, tt.body, tt.header...))
		if r.status != tt.status || !strings.Contains(r.body, tt.inBody) {
			t.Errorf("%s: POST = %d %q, want %d with %q", tt.name, r.status, r.body, tt.status, tt.inBody)
		}
	}
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET = %d, Allow %q, want 405 and POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// None of them left a batch or held a slot.
	if n := len(s.batches) + len(s.slots); n != 0 {
		t.Errorf("%d batches or slots held after rejected requests", n)
	}
}

func TestHTTPSourceAckError(t *testing.T) {
	s, url := newTestHTTP(t, "")
	ch := post(url, "", "", []byte("a\n"))
	_, ack := read(t, s)
	ack(context.Background(), errors.New("hub full"))
	ack(context.Background(), nil) // a second ack is ignored
	if r := wait(t, ch); r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "hub full") {
		t.Errorf("after ack(err): %d %q, want 503 with the reason", r.status, r.body)
	}
}

func TestHTTPSourceAckTimeout(t *testing.T) {
	s, url := newTestHTTP(t, "ack_timeout: 50ms")
	ch := post(url, "", "", []byte("a\n"))
	_, ack := read(t, s)
	if r := wait(t, ch); r.status != http.StatusServiceUnavailable {
		t.Errorf("without an ack: %d %q, want 503", r.status, r.body)
	}
	ack(context.Background(), nil) // late: frees the slot
	if len(s.slots) != 0 {
		t.Errorf("%d slots held after the late ack", len(s.slots))
	}
}

func TestHTTPSourceBackpressure(t *testing.T) {
	s, url := newTestHTTP(t, "max_pending: 2")
	first, second := post(url, "", "", []byte("1\n")), post(url, "", "", []byte("2\n"))
	deadline := time.Now().Add(5 * time.Second)
	for len(s.slots) < 2 { // both requests are waiting
		if time.Now().After(deadline) {
			t.Fatal("the first two requests did not arrive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := wait(t, post(url, "", "", []byte("3\n")))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" {
		t.Errorf("a third request with max_pending 2 = %d, Retry-After %q, want 429 and 1", r.status, r.header.Get("Retry-After"))
	}
	for range 2 {
		_, ack := read(t, s)
		ack(context.Background(), nil)
	}
	for _, ch := range []<-chan response{first, second} {
		if r := wait(t, ch); r.status != http.StatusNoContent {
			t.Errorf("a pending request = %d, want 204", r.status)
		}
	}
	// Room again.
	ch := post(url, "", "", []byte("4\n"))
	_, ack := read(t, s)
	ack(context.Background(), nil)
	if r := wait(t, ch); r.status != http.StatusNoContent {
		t.Errorf("after the acks = %d, want 204", r.status)
	}
}

// TestHTTPSourceClose checks the graceful stop: a request whose batch was
// not read gets 503, one whose batch was read gets its ack, and Close
// returns once both are answered.
func TestHTTPSourceClose(t *testing.T) {
	s, url := newTestHTTP(t, "")
	readCh := post(url, "", "", []byte("read\n"))
	_, ack := read(t, s)
	queuedCh := post(url, "", "", []byte("queued\n"))
	deadline := time.Now().Add(5 * time.Second)
	for len(s.batches) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second request did not arrive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- s.Close(ctx)
	}()
	if r := wait(t, queuedCh); r.status != http.StatusServiceUnavailable {
		t.Errorf("a queued request at Close = %d, want 503", r.status)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the read batch was acknowledged", err)
	case <-time.After(50 * time.Millisecond):
	}
	ack(context.Background(), nil)
	if r := wait(t, readCh); r.status != http.StatusNoContent {
		t.Errorf("a read request at Close = %d, want 204 after its ack", r.status)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, _, err := s.Read(context.Background()); !errors.Is(err, errSourceClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := testClient.Post(url, "", strings.NewReader("x\n")); err == nil {
		t.Error("the server still answers after Close")
	}
	if err := s.Connect(context.Background()); err == nil {
		t.Error("Connect after Close = nil")
	}
}

func TestHTTPSourceConcurrent(t *testing.T) {
	s, url := newTestHTTP(t, "max_pending: 64")
	const clients, each = 8, 20
	ctx, cancel := context.WithCancel(context.Background())
	var reader sync.WaitGroup
	reader.Add(1)
	got := 0
	go func() { // the runtime: read and ack
		defer reader.Done()
		for {
			batch, ack, err := s.Read(ctx)
			if err != nil {
				return
			}
			got += len(batch)
			ack(ctx, nil)
		}
	}()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := <-post(url, "", "", []byte(strings.Repeat("x\n", 1+(c+i)%3)))
				if r.err != nil || r.status != http.StatusNoContent {
					t.Errorf("client %d request %d: %d %v", c, i, r.status, r.err)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	reader.Wait()
	want := 0
	for c := range clients {
		for i := range each {
			want += 1 + (c+i)%3
		}
	}
	if got != want {
		t.Errorf("read %d records, want %d", got, want)
	}
}

func TestHTTPSourceConfigErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"address: nocolon", `1:10: address: "nocolon" is not host:port`},
		{"path: ingest", `1:7: path: "ingest" does not start with /`},
		{"max_pending: 0", `1:14: max_pending: must be at least 1`},
	}
	for _, tt := range tests {
		c, err := parseOrErr(t, &httpSpec, tt.src)
		if err == nil {
			_, err = newHTTP(c, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newHTTP(%q) = %v, want %s", tt.src, err, tt.want)
		}
	}
}
