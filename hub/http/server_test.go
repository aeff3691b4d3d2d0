package http

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "9644", want: "127.0.0.1:9644"},
		{in: ":9644", want: "127.0.0.1:9644"},
		{in: "0.0.0.0:9644", want: "0.0.0.0:9644"},
		{in: "[::1]:9644", want: "[::1]:9644"},
		{in: "localhost:0", want: "localhost:0"},
		{in: "", err: "empty"},
		{in: "host:", err: "no port"},
		{in: "a:b:c", err: "want PORT or HOST:PORT"},
	} {
		got, err := ListenAddr(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ListenAddr(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

type readyBody struct {
	Ready    bool              `json:"ready"`
	Checks   []string          `json:"checks"`
	NotReady map[string]string `json:"not_ready"`
}

func get(t *testing.T, h nethttp.Handler, path string) (int, readyBody, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var b readyBody
	if strings.HasPrefix(path, "/readyz") {
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
		}
	}
	if ct := rec.Header().Get("Content-Type"); rec.Code < 400 && path != "/metrics" && ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	return rec.Code, b, rec.Body.String()
}

func TestReadiness(t *testing.T) {
	metrics := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { w.Write([]byte("m 1\n")) })
	s := NewServer(Options{Metrics: metrics})
	var hubErr error
	s.AddCheck("hub", func() error { return hubErr })
	s.AddCheck("kafka", func() error { return nil })
	h := s.Handler()

	if code, _, body := get(t, h, "/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	if code, _, body := get(t, h, "/metrics"); code != 200 || body != "m 1\n" {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	code, b, _ := get(t, h, "/readyz")
	if code != 200 || !b.Ready || strings.Join(b.Checks, ",") != "hub,kafka" || len(b.NotReady) != 0 {
		t.Fatalf("/readyz = %d %+v", code, b)
	}
	hubErr = errors.New("hub: closed")
	code, b, _ = get(t, h, "/readyz")
	if code != 503 || b.Ready || b.NotReady["hub"] != "hub: closed" || len(b.NotReady) != 1 {
		t.Fatalf("/readyz with the hub closed = %d %+v", code, b)
	}
	hubErr = nil
	s.StartShutdown()
	code, b, _ = get(t, h, "/readyz")
	if code != 503 || b.NotReady["shutdown"] == "" {
		t.Fatalf("/readyz while shutting down = %d %+v", code, b)
	}
	if code, _, _ := get(t, h, "/nothing"); code != 404 {
		t.Fatalf("/nothing = %d", code)
	}
}

func TestListenBusyPortFails(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := NewServer(Options{})
	if ln, err := s.Listen(busy.Addr().String()); err == nil {
		ln.Close()
		t.Fatalf("Listen(%s) on a busy port succeeded", busy.Addr())
	}
}

// TestShutdownEndsStreams: a streaming handler's request context ends at
// Shutdown, so Shutdown does not wait for the stream's client.
func TestShutdownEndsStreams(t *testing.T) {
	s := NewServer(Options{})
	started := make(chan struct{})
	s.Handle("GET /stream", nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	resp, err := nethttp.Get("http://" + ln.Addr().String() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown waited %v for a stream", d)
	}
}
