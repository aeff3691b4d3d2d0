package http

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// subHub opens a hub with a compacted dataset "cache" and serves the
// subscriptions of it.
func subHub(t *testing.T, opts SubscribeOptions) (*hub.Hub, *httptest.Server) {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never", SegmentBytes: 4096},
		CompactInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateDataset("cache", hub.DatasetConfig{CleanupPolicy: "compact", DeleteRetention: -1}); err != nil {
		t.Fatal(err)
	}
	s := NewServer(Options{})
	MountSubscriptions(s, h, opts)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); h.Close() })
	return h, srv
}

// put writes one record (nil value: a delete) to the cache dataset.
func put(t *testing.T, h *hub.Hub, key string, value []byte) {
	t.Helper()
	ds, _ := h.Dataset("cache")
	p, _ := ds.Partition(0)
	var b codecs.Builder
	b.Append(time.Now().UnixMilli(), []byte(key), value, []codecs.RecordHeader{{Key: []byte("src"), Value: []byte("test")}})
	batch, _ := b.Build()
	if _, err := p.Produce(batch, true); err != nil {
		t.Fatal(err)
	}
}

type sseEvent struct {
	typ, id, data string
}

// sseClient reads an event stream: events, and comments as type ":".
type sseClient struct {
	resp   *nethttp.Response
	events chan sseEvent
	cancel context.CancelFunc
}

func subscribe(t *testing.T, url, lastID string) *sseClient {
	t.Helper()
	return openSSE(t, nethttp.DefaultClient, url, func(req *nethttp.Request) {
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
	})
}

// openSSE GETs url on cl, with setup's headers, and reads its event
// stream in the background until the test ends.
func openSSE(t *testing.T, cl *nethttp.Client, url string, setup func(*nethttp.Request)) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := nethttp.NewRequestWithContext(ctx, "GET", url, nil)
	setup(req)
	resp, err := cl.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("GET %s: %s %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 1000), cancel: cancel}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.typ != "" {
					c.events <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, ":"):
				c.events <- sseEvent{typ: ":", data: line}
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { c.cancel(); c.resp.Body.Close() }

// next returns the next event, skipping comments unless comments is set.
func (c *sseClient) next(t *testing.T, comments bool) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("the stream ended")
			}
			if e.typ == ":" && !comments {
				continue
			}
			return e
		case <-timeout:
			t.Fatalf("no event within 10s")
		}
	}
}

type recordData struct {
	Key       string            `json:"key"`
	Value     json.RawMessage   `json:"value"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Time      int64             `json:"time"`
	Headers   map[string]string `json:"headers"`
	ValueEnc  string            `json:"value_encoding"`
}

func (e sseEvent) record(t *testing.T) recordData {
	t.Helper()
	var d recordData
	if err := json.Unmarshal([]byte(e.data), &d); err != nil {
		t.Fatalf("event %s data %q: %v", e.typ, e.data, err)
	}
	return d
}

func expect(t *testing.T, e sseEvent, typ, key, value string) recordData {
	t.Helper()
	if e.typ != typ {
		t.Fatalf("event %s (%s), want %s %s", e.typ, e.data, typ, key)
	}
	if typ != "record" && typ != "delete" {
		return recordData{}
	}
	d := e.record(t)
	if d.Key != key || (typ == "record" && string(d.Value) != value) {
		t.Fatalf("event %s %s=%s, want %s=%s", typ, d.Key, d.Value, key, value)
	}
	if e.id == "" {
		t.Fatalf("event %s without an id", typ)
	}
	return d
}

// TestSubscribeSnapshotThenFollow: the snapshot is the latest value of
// every key with deletes applied, snapshot_end follows (also for an empty
// dataset), then live records and deletes; Last-Event-ID resumes without
// a snapshot; an unknown token gets reset and a snapshot.
func TestSubscribeSnapshotThenFollow(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{})
	url := srv.URL + "/v1/datasets/cache/subscribe"

	empty := subscribe(t, url, "")
	expect(t, empty.next(t, false), "snapshot_end", "", "")
	empty.close()

	put(t, h, "a", []byte(`{"n": 1}`))
	put(t, h, "b", []byte("plain text"))
	put(t, h, "a", []byte(`{"n": 2}`))
	put(t, h, "c", []byte{0xff, 0x00})
	put(t, h, "b", nil)

	c := subscribe(t, url+"?from=snapshot", "")
	d := expect(t, c.next(t, false), "record", "a", `{"n": 2}`)
	if d.Offset != 2 || d.Headers["src"] != "test" || d.Time == 0 {
		t.Errorf("record a: %+v", d)
	}
	if d := c.next(t, false).record(t); d.Key != "c" || d.ValueEnc != "base64" || string(d.Value) != `"/wA="` {
		t.Errorf("binary value: %+v", d)
	}
	expect(t, c.next(t, false), "snapshot_end", "", "")
	put(t, h, "d", []byte(`"live"`))
	expect(t, c.next(t, false), "record", "d", `"live"`)
	put(t, h, "a", nil)
	last := c.next(t, false)
	expect(t, last, "delete", "a", "")
	c.close()

	put(t, h, "e", []byte("1"))
	r := subscribe(t, url, last.id)
	expect(t, r.next(t, false), "record", "e", "1")
	r.close()

	bad := subscribe(t, url+"?from=latest", "00000000-5")
	expect(t, bad.next(t, false), "reset", "", "")
	for _, k := range []string{"c", "d", "e"} {
		if e := bad.next(t, false); e.typ != "record" || e.record(t).Key != k {
			t.Fatalf("after reset: %s %s, want record %s", e.typ, e.data, k)
		}
	}
	expect(t, bad.next(t, false), "snapshot_end", "", "")

	latest := subscribe(t, url+"?from=latest", "")
	put(t, h, "f", []byte("2"))
	expect(t, latest.next(t, false), "record", "f", "2")

	for path, want := range map[string]int{"/v1/datasets/nope/subscribe": 404, "/v1/datasets/cache/subscribe?from=middle": 400} {
		resp, err := nethttp.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestSubscribeResumeAcrossCompaction: a token from before tombstones were
// compacted away gets reset and a snapshot, never a silent gap; a token
// after the horizon resumes.
func TestSubscribeResumeAcrossCompaction(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{})
	url := srv.URL + "/v1/datasets/cache/subscribe"
	put(t, h, "k", []byte("1"))
	c := subscribe(t, url, "")
	expect(t, c.next(t, false), "record", "k", "1")
	end := c.next(t, false)
	expect(t, end, "snapshot_end", "", "")
	c.close()

	put(t, h, "k", nil) // the delete this subscriber has not seen
	for i := range 60 {
		put(t, h, fmt.Sprintf("x%d", i%3), []byte(strings.Repeat("v", 100)))
	}
	ds, _ := h.Dataset("cache")
	p, _ := ds.Partition(0)
	p.Log().Roll()
	deadline := time.Now().Add(10 * time.Second)
	for p.Log().DeleteHorizon() == 0 && time.Now().Before(deadline) {
		h.Compact()
		time.Sleep(10 * time.Millisecond)
	}
	if p.Log().DeleteHorizon() == 0 {
		t.Fatal("compaction removed no tombstone")
	}
	r := subscribe(t, url, end.id)
	expect(t, r.next(t, false), "reset", "", "")
	seen := map[string]bool{}
	for {
		e := r.next(t, false)
		if e.typ == "snapshot_end" {
			break
		}
		seen[e.record(t).Key] = true
	}
	if seen["k"] || len(seen) != 3 {
		t.Errorf("snapshot after reset has keys %v, want x0, x1, x2", seen)
	}
}

// TestSubscribeHeartbeat: an idle subscription gets comment lines.
func TestSubscribeHeartbeat(t *testing.T) {
	_, srv := subHub(t, SubscribeOptions{Heartbeat: 20 * time.Millisecond})
	c := subscribe(t, srv.URL+"/v1/datasets/cache/subscribe?from=latest", "")
	if e := c.next(t, true); e.typ != ":" || e.data != ": heartbeat" {
		t.Errorf("got %+v, want a heartbeat comment", e)
	}
}

// TestSubscribeAllowOrigins: pages of an allowed origin may subscribe
// from elsewhere (Access-Control-Allow-Origin), others get no such header.
func TestSubscribeAllowOrigins(t *testing.T) {
	_, srv := subHub(t, SubscribeOptions{AllowOrigins: []string{"null", "https://app.example.com"}})
	for origin, want := range map[string]string{"null": "null", "https://app.example.com": "https://app.example.com", "https://evil.example": ""} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := nethttp.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/datasets/cache/subscribe", nil)
		req.Header.Set("Origin", origin)
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("Origin %s: Access-Control-Allow-Origin %q, want %q", origin, got, want)
		}
		cancel()
		resp.Body.Close()
	}
}
