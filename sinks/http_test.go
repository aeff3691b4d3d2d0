package sinks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/weirhub/weir/connectors"
)

// recorder is a test endpoint: it records requests and answers with the
// statuses given, in turn (the last one repeats).
type recorder struct {
	mu       sync.Mutex
	bodies   []string
	headers  []http.Header
	statuses []int
	reply    string
	delay    time.Duration
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, string(b))
	rec.headers = append(rec.headers, r.Header.Clone())
	status := http.StatusOK
	if n := len(rec.bodies); len(rec.statuses) > 0 {
		status = rec.statuses[min(n, len(rec.statuses))-1]
	}
	rec.mu.Unlock()
	if rec.delay > 0 {
		select {
		case <-time.After(rec.delay):
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(status)
	io.WriteString(w, rec.reply)
}

func newTestHTTP(t *testing.T, rec *recorder, conf string) (*httpSink, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(rec) // on 127.0.0.1
	t.Cleanup(srv.Close)
	s, err := newHTTP(parseConfig(t, &httpSpec, "url: "+srv.URL+"/in\n"+conf), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s.(*httpSink), srv
}

func TestHTTPSinkRequests(t *testing.T) {
	tests := []struct {
		name   string
		conf   string
		values []string
		bodies []string
		check  func(h http.Header) string
	}{
		{"one request", "", []string{`{"a":1}`, `{"b":2}`}, []string{"{\"a\":1}\n{\"b\":2}\n"}, nil},
		{"split by size", "max_batch_bytes: 16", []string{"aaaaaaa", "bbbbbbb", "ccccccc", "a record longer than the limit", "d"},
			[]string{"aaaaaaa\nbbbbbbb\n", "ccccccc\n", "a record longer than the limit\n", "d\n"}, nil},
		{"gzip", "compression: gzip", []string{"x"}, []string{"x\n"}, func(h http.Header) string {
			return h.Get("Content-Encoding")
		}},
		{"headers", "headers: {X-Source: weir, X-Env: test}", []string{"x"}, []string{"x\n"}, func(h http.Header) string {
			return h.Get("X-Source") + " " + h.Get("X-Env") + " " + h.Get("Content-Type")
		}},
		{"basic auth", "user: u\npassword: p", []string{"x"}, []string{"x\n"}, func(h http.Header) string { return h.Get("Authorization") }},
		{"bearer", "token: secret", []string{"x"}, []string{"x\n"}, func(h http.Header) string { return h.Get("Authorization") }},
	}
	wantHeader := map[string]string{"gzip": "gzip", "headers": "weir test application/x-ndjson", "basic auth": "Basic dTpw", "bearer": "Bearer secret"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s, _ := newTestHTTP(t, rec, tt.conf)
			if err := s.Write(context.Background(), messages(tt.values...)); err != nil {
				t.Fatalf("Write = %v", err)
			}
			if !slices.Equal(rec.bodies, tt.bodies) {
				t.Errorf("Write(%q) sent %q, want %q", tt.values, rec.bodies, tt.bodies)
			}
			if tt.check != nil {
				if got := tt.check(rec.headers[0]); got != wantHeader[tt.name] {
					t.Errorf("%s: header = %q, want %q", tt.name, got, wantHeader[tt.name])
				}
			}
		})
	}
}

func TestHTTPSinkResponses(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		reply    string
		// want: "" for nil, "plain" for an error that is not a WriteError,
		// else the failures as index:retryable.
		want      string
		wantInErr string
	}{
		{"ok", []int{200}, "", "", ""},
		{"no content", []int{204}, "", "", ""},
		{"server error", []int{500}, "database down\n", "plain", "status 500 Internal Server Error: database down"},
		{"too many", []int{429}, "slow down", "plain", "status 429"},
		{"bad request", []int{400}, `{"error":"bad field"}`, "0:false 1:false 2:false 3:false", `status 400 Bad Request: {\"error\":\"bad field\"}`},
		{"second bad", []int{200, 413}, "too large", "2:false 3:false", "status 413"},
		{"second unavailable", []int{200, 503}, "", "2:true 3:true", "status 503"},
		{"bad then down", []int{422, 502}, "", "0:false 1:false 2:true 3:true", "status 422"},
		{"long body", []int{500}, strings.Repeat("x", 2000), "plain", strings.Repeat("x", 512) + "..."},
		{"redirect", []int{302}, "", "0:false 1:false 2:false 3:false", "status 302 Found"},
		{"request timeout", []int{408}, "", "plain", "status 408"},
		{"unauthorized", []int{401}, "", "unavailable", "status 401"},
		{"forbidden later", []int{200, 403}, "", "unavailable", "status 403"},
		{"wrong url", []int{404}, "", "unavailable", "status 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{statuses: tt.statuses, reply: tt.reply}
			s, _ := newTestHTTP(t, rec, "max_batch_bytes: 10")
			err := s.Write(context.Background(), messages("aaaa", "bbbb", "cccc", "dddd")) // two requests
			var got string
			var we *connectors.WriteError
			switch {
			case err == nil:
			case errors.Is(err, connectors.ErrUnavailable):
				got = "unavailable"
			case errors.As(err, &we):
				var parts []string
				for _, f := range we.Failures {
					parts = append(parts, itoa(f.Index)+":"+map[bool]string{true: "true", false: "false"}[f.Retryable])
				}
				got = strings.Join(parts, " ")
				err = we.Failures[0].Err
			default:
				got = "plain"
			}
			if got != tt.want {
				t.Errorf("%s: Write = %v (%s), want %s", tt.name, err, got, tt.want)
			}
			if tt.wantInErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantInErr)) {
				t.Errorf("%s: error %v does not contain %q", tt.name, err, tt.wantInErr)
			}
		})
	}
}

func TestHTTPSinkUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	s, err := newHTTP(parseConfig(t, &httpSpec, "url: "+url+"\ntimeout: 2s"), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Write(context.Background(), messages("x")); !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("Write to a closed port = %v, want ErrUnavailable", err)
	}
}

func TestHTTPSinkTimeout(t *testing.T) {
	rec := &recorder{delay: 5 * time.Second}
	s, _ := newTestHTTP(t, rec, "timeout: 100ms")
	start := time.Now()
	err := s.Write(context.Background(), messages("x"))
	if err == nil || !strings.Contains(err.Error(), "no response within 100ms") {
		t.Errorf("Write to a slow endpoint = %v, want a timeout", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Write took %v with a 100ms timeout", time.Since(start))
	}
	s.Close(context.Background())
	s.Close(context.Background())
	if err := s.Write(context.Background(), messages("x")); !errors.Is(err, errSinkClosed) {
		t.Errorf("Write after Close = %v", err)
	}
}

func TestHTTPSinkFollows307(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.Handle("/real", rec)
	mux.HandleFunc("/in", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/real", http.StatusTemporaryRedirect)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s, err := newHTTP(parseConfig(t, &httpSpec, "url: "+srv.URL+"/in"), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Write(context.Background(), messages("a", "b")); err != nil {
		t.Fatalf("Write through a 307 = %v", err)
	}
	if !slices.Equal(rec.bodies, []string{"a\nb\n"}) {
		t.Errorf("after a 307 the endpoint got %q", rec.bodies)
	}
}
