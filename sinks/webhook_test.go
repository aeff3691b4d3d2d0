package sinks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// TestWebhookSignedRedelivered: the receiver verifies each request's
// HMAC-SHA256 signature over its timestamp and body, answers the first
// with a 500, and gets the same events again on the retry; events carry
// their ids, and Weir-Event-Id names the last.
func TestWebhookSignedRedelivered(t *testing.T) {
	const secret = "s3cret"
	type delivery struct {
		status int
		events []map[string]any
		lastID string
	}
	got := make(chan delivery, 10)
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		r.Body.Read(body)
		sig := r.Header.Get("Weir-Signature")
		ts, v1, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",v1=")
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		sec, _ := strconv.ParseInt(ts, 10, 64)
		if want := hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(v1), []byte(want)) || time.Since(time.Unix(sec, 0)) > time.Minute {
			http.Error(w, "bad signature", http.StatusBadRequest)
			t.Errorf("signature %q does not verify", sig)
			return
		}
		var d delivery
		for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Errorf("line %q: %v", line, err)
			}
			d.events = append(d.events, e)
		}
		d.lastID = r.Header.Get("Weir-Event-Id")
		calls++
		d.status = http.StatusOK
		if calls == 1 {
			d.status = http.StatusInternalServerError
		}
		got <- d
		w.WriteHeader(d.status)
	}))
	defer srv.Close()
	s, err := newWebhook(parseConfig(t, &webhookSpec, "url: "+srv.URL+"\nsecret: "+secret+"\nmax_events: 2"), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	batch := []*connectors.Message{keyed("a", `{"v":1}`, 10), keyed("b", "", 11), keyed("c", "3", 12)}
	if err := s.Write(context.Background(), batch); err == nil {
		t.Fatal("a 500 was taken for a delivery")
	}
	first := <-got
	if first.status != 500 || len(first.events) != 2 {
		t.Fatalf("first request: %+v", first)
	}
	if err := s.Write(context.Background(), batch); err != nil { // the pipeline's retry
		t.Fatal(err)
	}
	again, rest := <-got, <-got
	if len(again.events) != 2 || again.events[0]["id"] != "0-10" || again.events[1]["type"] != "delete" || again.lastID != "0-11" {
		t.Errorf("redelivery: %+v", again)
	}
	if len(rest.events) != 1 || rest.events[0]["key"] != "c" || rest.lastID != "0-12" {
		t.Errorf("second request: %+v", rest)
	}
}
