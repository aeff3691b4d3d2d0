package main

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestServeDelayedDeliveryAcrossKill9: records produced through the Kafka
// front door with a weir.delay header (up to 3 s; a third with none) reach
// a consumer never before they are due; `weir serve` is killed with
// SIGKILL while most are pending, and after the restart every record is
// delivered. It logs the lateness of those that fell due after the
// restart.
func TestServeDelayedDeliveryAcrossKill9(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, "--fsync", "always", "--delayed-delivery")
	// The proof at full scale: WEIR_DELAY_TEST_N=100000
	// WEIR_DELAY_TEST_MAX=60s (the default is small enough for every run).
	n, maxDelay := 3000, 3*time.Second
	if v, err := strconv.Atoi(os.Getenv("WEIR_DELAY_TEST_N")); err == nil && v > 0 {
		n = v
	}
	if v, err := time.ParseDuration(os.Getenv("WEIR_DELAY_TEST_MAX")); err == nil && v > time.Second {
		maxDelay = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+2*maxDelay)
	defer cancel()
	due := make([]time.Time, n)
	cl := mustClient(t, p.addr, kgo.DefaultProduceTopic("dl"), kgo.AllowAutoTopicCreation())
	var rs []*kgo.Record
	for i := range n {
		ts := time.Now()
		r := &kgo.Record{Value: []byte(strconv.Itoa(i)), Timestamp: ts}
		due[i] = ts
		if i%3 != 0 {
			d := (time.Duration(rand.Int64N(int64(maxDelay-500*time.Millisecond))) + 500*time.Millisecond).Truncate(time.Millisecond)
			r.Headers = []kgo.RecordHeader{{Key: "weir.delay", Value: []byte(d.String())}}
			due[i] = ts.Truncate(time.Millisecond).Add(d) // the record carries its time in ms
		}
		rs = append(rs, r)
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	time.Sleep(300 * time.Millisecond)
	p.kill9(t)
	restart := time.Now()
	p = startServe(t, dir, "--fsync", "always", "--delayed-delivery")

	c := mustClient(t, p.addr, kgo.ConsumeTopics("dl"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	seen := make([]int, n)
	got := 0
	var late []time.Duration
	for got < n && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := c.PollFetches(pctx)
		pcancel()
		at := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			i, err := strconv.Atoi(string(r.Value))
			if err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected record %q", r.Value)
			}
			if at.Before(due[i]) {
				t.Errorf("record %d arrived %v before it was due", i, due[i].Sub(at))
			}
			if seen[i] == 0 {
				got++
				if due[i].After(restart.Add(time.Second)) {
					late = append(late, at.Sub(due[i]))
				}
			}
			seen[i]++
		})
	}
	if got < n {
		t.Fatalf("%d of %d records delivered\n%s", got, n, p.output())
	}
	dups := 0
	for _, s := range seen {
		dups += s - 1
	}
	slices.Sort(late)
	if len(late) > 0 {
		t.Logf("%d records; %d delivered twice (at least once across SIGKILL); lateness after the restart over %d records: p50 %v, p99 %v, max %v",
			n, dups, len(late), late[len(late)/2], late[len(late)*99/100], late[len(late)-1])
	} else {
		t.Logf("%d records, %d duplicates", n, dups)
	}
}

// TestTopicsDescribeShowsPendingDelayed: weir topics describe lists how
// many batches of a dataset wait and when the next is due.
func TestTopicsDescribeShowsPendingDelayed(t *testing.T) {
	p := startServe(t, t.TempDir(), "--delayed-delivery")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.DefaultProduceTopic("later"), kgo.AllowAutoTopicCreation())
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	r := &kgo.Record{Value: []byte("x"), Headers: []kgo.RecordHeader{{Key: "weir.deliver_at", Value: []byte(at.Format(time.RFC3339Nano))}}}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runIn(t, "", "topics", "describe", "later", "--brokers", p.addr)
	if err != nil {
		t.Fatalf("topics describe: %v %s", err, errOut)
	}
	if !strings.Contains(out, "weir.delayed.pending=1") || !strings.Contains(out, "weir.delayed.next_due="+at.Format(time.RFC3339Nano)) {
		t.Fatalf("topics describe does not show the pending record:\n%s", out)
	}
}
