package http

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/weirhub/weir/hub"
)

type wsEvent struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func wsNext(t *testing.T, c *websocket.Conn) wsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	var e wsEvent
	if typ != websocket.MessageText || json.Unmarshal(b, &e) != nil {
		t.Fatalf("message %q is not a JSON text message", b)
	}
	return e
}

// TestWebSocketSubscription: the same protocol over a WebSocket on the
// same path: snapshot, snapshot_end, live events, and resuming with the
// last id (last_event_id) without a new snapshot.
func TestWebSocketSubscription(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/datasets/cache/subscribe"
	put(t, h, "a", []byte(`{"x":1}`))
	put(t, h, "b", []byte("B"))
	put(t, h, "b", nil)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := func(e wsEvent, typ, key, value string) {
		t.Helper()
		if e.Type != typ || e.Key != key || (value != "" && string(e.Value) != value) || e.ID == "" {
			t.Fatalf("got %+v, want %s %s=%s with an id", e, typ, key, value)
		}
	}
	want(wsNext(t, c), "record", "a", `{"x":1}`)
	want(wsNext(t, c), "snapshot_end", "", "")
	put(t, h, "c", []byte(`"C"`))
	want(wsNext(t, c), "record", "c", `"C"`)
	put(t, h, "a", nil)
	last := wsNext(t, c)
	want(last, "delete", "a", "")
	c.Close(websocket.StatusNormalClosure, "")

	put(t, h, "d", []byte("4"))
	c, _, err = websocket.Dial(ctx, url+"?last_event_id="+last.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(websocket.StatusNormalClosure, "")
	want(wsNext(t, c), "record", "d", "4")

	r, _, err := websocket.Dial(ctx, url+"?last_event_id=bogus", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(websocket.StatusNormalClosure, "")
	want(wsNext(t, r), "reset", "", "")
}

// TestWebSocketSlowSubscriberCut: a subscriber that stops reading is cut
// after WriteTimeout instead of having events buffered for it (its socket
// is full, so no close reason can reach it), and resuming with the last id
// it got delivers the rest with nothing lost or repeated.
func TestWebSocketSlowSubscriberCut(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{WriteTimeout: 200 * time.Millisecond})
	big := []byte(`"` + strings.Repeat("v", 64<<10) + `"`)
	const total = 300 // 19 MiB: more than the socket buffers hold
	for i := range total {
		put(t, h, string(rune('a'+i%26)), big)
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/datasets/cache/subscribe?from=earliest"
	c, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	time.Sleep(time.Second) // not reading
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var offsets []int64
	var lastID string
	read := func(c *websocket.Conn, until int) error {
		for len(offsets) < until {
			_, b, err := c.Read(ctx)
			if err != nil {
				return err
			}
			var e struct {
				ID     string `json:"id"`
				Offset int64  `json:"offset"`
			}
			json.Unmarshal(b, &e)
			offsets = append(offsets, e.Offset)
			lastID = e.ID
		}
		return nil
	}
	if err := read(c, total); err == nil {
		t.Fatalf("all %d messages arrived: the slow subscriber was not cut", total)
	}
	cut := len(offsets)
	// Resume until everything arrived (a loaded machine may cut a resumed
	// reader too: each resume goes on from its last id).
	for attempt := 0; len(offsets) < total; attempt++ {
		if attempt == 20 {
			t.Fatalf("%d of %d messages after 20 resumes", len(offsets), total)
		}
		r, _, err := websocket.Dial(ctx, url+"&last_event_id="+lastID, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.SetReadLimit(1 << 20)
		read(r, total)
		r.Close(websocket.StatusNormalClosure, "")
	}
	for i, off := range offsets {
		if off != int64(i) {
			t.Fatalf("message %d has offset %d (cut after %d): lost or repeated", i, off, cut)
		}
	}
}

// TestWebSocketFrames: appendWSMessage frames events, one after another
// in one buffer, as coder/websocket frames the same JSON written as text
// messages, byte for byte, for payloads on both sides of each length
// form (7, 16 and 64 bits).
func TestWebSocketFrames(t *testing.T) {
	event := func(payload int) *hub.Event {
		e := &hub.Event{Type: hub.EventRecord, Token: "1a2b3c4d-7", Key: []byte("k"), Offset: 6}
		if payload == 0 {
			return &hub.Event{Type: hub.EventSnapshotEnd, Token: "1a2b3c4d-7"}
		}
		e.Value = []byte(`""`)
		n := len(hub.AppendEventJSON(nil, e, true))
		if payload < n {
			t.Fatalf("no event has a payload of %d bytes (the least is %d)", payload, n)
		}
		e.Value = []byte(`"` + strings.Repeat("v", payload-n) + `"`)
		return e
	}
	var events []*hub.Event
	for _, n := range []int{0, 125, 126, 127, 1000, 65535, 65536, 70000} {
		events = append(events, event(n))
	}
	var want []byte
	for _, e := range events {
		want = appendWSMessage(want, e)
	}
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.CloseNow()
		for _, e := range events {
			if err := c.Write(r.Context(), websocket.MessageText, hub.AppendEventJSON(nil, e, true)); err != nil {
				t.Error(err)
				return
			}
		}
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := nethttp.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != nethttp.StatusSwitchingProtocols {
		t.Fatalf("the upgrade: %v %v", resp, err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading coder/websocket's frames: %v", err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("appendWSMessage differs from coder/websocket at byte %d of %d: % x, coder/websocket wrote % x", i, len(want),
				want[i:min(i+12, len(want))], got[i:min(i+12, len(got))])
		}
	}
}

// TestWebSocketSharedFrames: WebSocket subscribers get the frames that
// the fan-out encoded once (written by its shared writers while they are
// caught up) next to an SSE subscriber of the same dataset: every
// message is the SSE event's data with its type and id, in order, for
// events that come one by one, in bursts, and large enough to fill the
// socket while the client does not read and pings (the pongs come
// between messages, never inside one: coder/websocket's client fails the
// connection otherwise).
func TestWebSocketSharedFrames(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{})
	url := "/v1/datasets/cache/subscribe?from=latest"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wss []*websocket.Conn
	for range 3 {
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+url, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		defer c.CloseNow()
		wss = append(wss, c)
	}
	sse := subscribe(t, srv.URL+url, "")
	// One by one (the subscribers are caught up and parked between
	// them), then bursts.
	var keys []string
	for i := range 20 {
		keys = append(keys, "one"+strconv.Itoa(i))
		put(t, h, keys[len(keys)-1], []byte(strconv.Itoa(i)))
		time.Sleep(20 * time.Millisecond)
	}
	for b := range 5 {
		for i := range 50 {
			keys = append(keys, "burst"+strconv.Itoa(b*50+i))
			put(t, h, keys[len(keys)-1], []byte(`{"n":`+strconv.Itoa(i)+`}`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, k := range keys {
		e := sse.next(t, false)
		if !strings.Contains(e.data, `"key":"`+k+`"`) {
			t.Fatalf("SSE event %d is %s, want key %s", i, e.data, k)
		}
		want := `{"type":"record","id":"` + e.id + `",` + e.data[1:]
		for j, c := range wss {
			typ, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("WebSocket subscriber %d, message %d: %v", j, i, err)
			}
			if typ != websocket.MessageText || string(b) != want {
				t.Fatalf("WebSocket subscriber %d, message %d: %v %s, want %s", j, i, typ, b, want)
			}
		}
	}
	// Large events while one subscriber does not read but pings.
	big := strings.Repeat("v", 100<<10)
	const total = 100 // 10 MiB: more than the socket buffers hold
	go func() {
		for i := range total {
			put(t, h, "big"+strconv.Itoa(i), []byte(`"`+big+`"`))
		}
	}()
	c := wss[0]
	pinged := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the socket fills meanwhile
		var err error
		for range 5 {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.Ping(pctx) // answered once the reader below reads
			cancel()
			if err != nil {
				break
			}
		}
		pinged <- err
	}()
	for i := range total {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("large message %d: %v", i, err)
		}
		if want := `"key":"big` + strconv.Itoa(i) + `"`; !strings.Contains(string(b[:min(len(b), 200)]), want) || len(b) < len(big) {
			t.Fatalf("large message %d: %.100s (%d bytes), want %s", i, b, len(b), want)
		}
		if i == 0 {
			time.Sleep(time.Second) // not reading while the pings come
		}
	}
	// The pongs of the last pings are read by a read that ends when
	// the pings did (closing the connection).
	rctx, rcancel := context.WithCancel(ctx)
	perrs := make(chan error, 1)
	go func() { err := <-pinged; rcancel(); perrs <- err }()
	if _, b, err := c.Read(rctx); err == nil {
		t.Fatalf("a message after the last: %.100s", b)
	}
	if perr := <-perrs; perr != nil {
		t.Fatalf("pinging while the messages came: %v", perr)
	}
}

// TestWebSocketPongBetweenFrames: a ping that comes while a shared
// writer has written part of a frame (the socket was full) is answered
// after the rest of the frame, which the subscription's goroutine
// writes, and not inside it.
func TestWebSocketPongBetweenFrames(t *testing.T) {
	if !canTryWrite {
		t.Skip("no TryWrite here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	s := &wsStream{writeDeadline: writeDeadline{timeout: 10 * time.Second}}
	s.start(server, true)
	e := &hub.Event{Type: hub.EventRecord, Token: "t-1", Key: []byte("k"), Value: []byte(`"` + strings.Repeat("v", 32<<20) + `"`)}
	frame := appendWSMessage(nil, e)
	n, err := s.tryWrite([][]byte{frame})
	if err != nil || n == 0 || n >= len(frame) {
		t.Fatalf("tryWrite of %d bytes to a socket nobody reads = %d, %v: want part of it", len(frame), n, err)
	}
	pinged := make(chan struct{})
	go func() {
		s.onPing(context.Background(), []byte("p1"))
		close(pinged)
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("onPing waits for the full socket: it writes the pong inside the frame")
	}
	wrote := make(chan error, 1)
	go func() { wrote <- s.writeFrames(frame[n:], 0) }()
	want := append(frame, 0x8a, 2, 'p', '1')
	got := make([]byte, len(want))
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byte %d of %d (the frame has %d) is %x, want %x", i, len(want), len(frame), got[i], want[i])
		}
	}
}
