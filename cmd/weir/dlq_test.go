package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDLQRedrive: weir dlq redrive moves the dead letters --filter accepts
// back, with their own headers and weir.redrive_count, leaves the others,
// refuses truncated ones, and does not move anything twice.
func TestDLQRedrive(t *testing.T) {
	p := startServe(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.AllowAutoTopicCreation())
	letter := func(value, stage string, extra ...kgo.RecordHeader) *kgo.Record {
		hs := append([]kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + value)}, {Key: "weir.error", Value: []byte("boom")},
			{Key: "weir.stage", Value: []byte(stage)}, {Key: "weir.attempts", Value: []byte("3")}}, extra...)
		return &kgo.Record{Topic: "orders.dead", Key: []byte(value), Value: []byte(value), Headers: hs}
	}
	if err := cl.ProduceSync(ctx,
		letter("a", "sink es"),
		letter("b", "processor map"),
		letter("c", "sink es", kgo.RecordHeader{Key: "weir.redrive_count", Value: []byte("2")}),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runIn(t, "", "topics", "create", "orders", "--brokers", p.addr); err != nil {
		t.Fatalf("create: %v %s", err, errOut)
	}
	out, errOut, err := runIn(t, "", "dlq", "redrive", "orders.dead", "--to", "orders", "--brokers", p.addr,
		"--filter", `_headers["weir.stage"] == "sink es"`)
	if err != nil || !strings.Contains(out, "moved 2 dead letters") || !strings.Contains(out, "1 not matching --filter") {
		t.Fatalf("redrive: %q %q %v", out, errOut, err)
	}
	c := mustClient(t, p.addr, kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]map[string]string{}
	for len(got) < 2 && ctx.Err() == nil {
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			hs := map[string]string{}
			for _, h := range r.Headers {
				hs[h.Key] = string(h.Value)
			}
			got[string(r.Value)] = hs
		})
	}
	if hs := got["a"]; hs["trace"] != "t-a" || hs["weir.redrive_count"] != "1" || hs["weir.error"] != "" || hs["weir.stage"] != "" {
		t.Errorf("a redriven: %v", hs)
	}
	if hs := got["c"]; hs["weir.redrive_count"] != "3" {
		t.Errorf("c redriven: %v", hs)
	}
	if _, ok := got["b"]; ok {
		t.Error("b was redriven against --filter")
	}
	// Again: nothing new.
	out, _, err = runIn(t, "", "dlq", "redrive", "orders.dead", "--to", "orders", "--brokers", p.addr)
	if err != nil || !strings.Contains(out, "moved 0 dead letters") {
		t.Fatalf("second redrive: %q %v", out, err)
	}
	// A truncated letter is refused.
	if err := cl.ProduceSync(ctx, letter("d", "sink es", kgo.RecordHeader{Key: "weir.truncated", Value: []byte("true")})).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if out, _, err = runIn(t, "", "dlq", "redrive", "orders.dead", "--to", "orders", "--brokers", p.addr); err == nil || !strings.Contains(err.Error(), "weir.truncated") {
		t.Fatalf("redrive of a truncated letter: %q %v", out, err)
	}
}
