package http

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
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
