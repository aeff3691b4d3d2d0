package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/brokertest"
	"github.com/weirhub/weir/pipelines"
)

// runRelay loads testdata/kafka-relay.yaml for a data directory and broker
// and runs it until until returns true or the deadline passes (then it
// fails the test), then stops it gracefully.
func runRelay(t *testing.T, dataDir, brokers string, deadline time.Duration, until func(*pipelines.Engine) bool) {
	t.Helper()
	runFile(t, "testdata/kafka-relay.yaml", map[string]string{"DATA_DIR": dataDir, "BROKERS": brokers}, deadline, until)
}

// runFile runs a pipeline file with env until until returns true or the
// deadline passes (then it fails the test), then stops it gracefully.
func runFile(t *testing.T, file string, env map[string]string, deadline time.Duration, until func(*pipelines.Engine) bool) {
	t.Helper()
	cfg, err := pipelines.LoadFile(file, pipelines.LoadOptions{Env: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	e, err := pipelines.New(cfg, pipelines.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		DrainTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := time.After(deadline)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !until(e) {
		select {
		case err := <-done:
			t.Fatalf("the relay stopped: %v\n%s", err, logs.String())
		case <-stop:
			cancel()
			<-done
			t.Fatalf("the relay did not finish in %v: stats %+v\n%s", deadline, e.Stats(), logs.String())
		case <-tick.C:
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the relay failed: %v\n%s", err, logs.String())
	}
}

// TestKafkaRelayThroughWeirServe runs the example pipeline file
// testdata/kafka-relay.yaml against a `weir serve` process: records of
// dataset a go out through the kafka sink to topic relay, come back
// through the kafka source and land in dataset b, every one once, with
// their keys. A second run finds everything committed on both sides and
// moves nothing.
func TestKafkaRelayThroughWeirServe(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, filepath.Join(dir, "serve"))
	data := filepath.Join(dir, "data")
	const n = 20000
	prefill(t, data, "a", 3, n)

	var count int64
	runRelay(t, data, srv.addr, 25*time.Second, func(e *pipelines.Engine) bool {
		count = brokertest.Count(e.Hub(), "b")
		return count >= n
	})
	if count != n {
		t.Errorf("dataset b holds %d records, want %d", count, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(mustClient(t, srv.addr))
	topicCount := func() int64 {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, "relay")
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		return total
	}
	if got := topicCount(); got != n {
		t.Errorf("topic relay holds %d records, want %d", got, n)
	}

	// Again: both sides resume from their commits, so nothing moves.
	start := time.Now()
	runRelay(t, data, srv.addr, 10*time.Second, func(e *pipelines.Engine) bool {
		count = brokertest.Count(e.Hub(), "b")
		return time.Since(start) > 1500*time.Millisecond || count != n
	})
	if count != n {
		t.Errorf("after a second run dataset b holds %d records, want still %d", count, n)
	}
	if got := topicCount(); got != n {
		t.Errorf("after a second run topic relay holds %d records, want still %d", got, n)
	}

	// Every record of a is in b once, with its key.
	checkRelayed(t, data, n)
}

// checkRelayed reads dataset b from the data directory and checks every id
// of prefill is there once, keyed as prefill keyed it.
func checkRelayed(t *testing.T, data string, n int) {
	t.Helper()
	checkCopied(t, openHubAt(t, data), "b", n, func(id int) string { return fmt.Sprint(id % 97) })
}

// checkCopied checks every id of prefill is in dataset once, with the key
// key(id).
func checkCopied(t *testing.T, h *hub.Hub, dataset string, n int, key func(int) string) {
	t.Helper()
	seen := make([]int, n)
	for _, r := range brokertest.ReadAll(t, h, dataset, n, 10*time.Second) {
		var v struct{ ID int }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.ID < 0 || v.ID >= n {
			t.Fatalf("unexpected record %q in %s", r.Value, dataset)
		}
		seen[v.ID]++
		if want := key(v.ID); string(r.Key) != want {
			t.Errorf("record %d arrived in %s with key %q, want %q", v.ID, dataset, r.Key, want)
		}
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("record %d is in %s %d times", id, dataset, c)
		}
	}
}

// TestDatasetCopy runs testdata/dataset-copy.yaml: the dataset source
// copies a into b, a pipeline's dataset sink b into c keyed by a field;
// every record arrives once in each, and a second run moves nothing.
func TestDatasetCopy(t *testing.T) {
	data := t.TempDir()
	const n = 20000
	prefill(t, data, "a", 3, n)
	env := map[string]string{"DATA_DIR": data}
	var b, c int64
	runFile(t, "testdata/dataset-copy.yaml", env, 25*time.Second, func(e *pipelines.Engine) bool {
		b, c = brokertest.Count(e.Hub(), "b"), brokertest.Count(e.Hub(), "c")
		return b >= n && c >= n
	})
	start := time.Now()
	runFile(t, "testdata/dataset-copy.yaml", env, 10*time.Second, func(e *pipelines.Engine) bool {
		b, c = brokertest.Count(e.Hub(), "b"), brokertest.Count(e.Hub(), "c")
		return time.Since(start) > time.Second || b != n || c != n
	})
	if b != n || c != n {
		t.Errorf("b and c hold %d and %d records, want %d each", b, c, n)
	}
	h := openHubAt(t, data)
	checkCopied(t, h, "b", n, func(id int) string { return fmt.Sprint(id % 97) })
	checkCopied(t, h, "c", n, func(id int) string { return fmt.Sprint(id) })
}

// openHubAt opens the hub in dir, closed at the end of the test.
func openHubAt(t *testing.T, dir string) *hub.Hub {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
