package sinks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/zinctest"
)

// TestElasticsearchZincSearch runs the sink against a real server with an
// Elasticsearch API, ZincSearch (see internal/zinctest; it is built on
// first use): connect, bulk requests over several workers, daily indices,
// every document found by its id, and no duplicates when the same batch
// is written again. ZincSearch answers 200 for every document whatever
// happens, so the error paths are tested against esStub instead.
func TestElasticsearchZincSearch(t *testing.T) {
	zs := zinctest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ZincSearch cannot read gzip request bodies.
	conf := fmt.Sprintf(`{urls: [%q], username: %q, password: %q, index: "weir-it-{{ .date }}", compression: none, flush_bytes: 256KiB, workers: 2}`,
		zs.URL, zs.User, zs.Password)
	s := newESSink(t, conf)
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("Connect = %v", err)
	}
	const n = 5000
	batch := esBatch(n, 15*time.Second) // 22:00 on the 21st to 18:49 on the 22nd
	ids := make([]string, n)
	for i, m := range batch {
		ids[i] = fmt.Sprintf("web-%d-%d", m.Partition, m.Offset)
	}
	start := time.Now()
	if err := s.Write(ctx, batch); err != nil {
		t.Fatalf("Write = %v", err)
	}
	t.Logf("wrote %d documents in %v", n, time.Since(start))
	if got := zs.WaitForIDs(t, "weir-it-*", ids, 20*time.Second); got != n {
		t.Fatalf("%d of %d documents found by id", got, n)
	}
	for _, day := range []string{"2026-11-21", "2026-11-22"} {
		ok, err := zs.IndexExists(ctx, "weir-it-"+day)
		if err != nil || !ok {
			t.Errorf("index weir-it-%s exists = %v, %v; want true", day, ok, err)
		}
	}
	perDay := map[string]int{"2026-11-21": 480, "2026-11-22": n - 480} // 4 a minute, 2 hours on the 21st
	for day, want := range perDay {
		if got := zs.WaitForCount(t, "weir-it-"+day, nil, want, 10*time.Second); got != want {
			t.Errorf("index weir-it-%s holds %d documents, want %d", day, got, want)
		}
	}

	// A redelivery (the pipeline crashed before committing) overwrites.
	if err := s.Write(ctx, batch); err != nil {
		t.Fatalf("second Write = %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // what would be duplicates become searchable
	if got := zs.WaitForCount(t, "weir-it-*", nil, n, 10*time.Second); got != n {
		t.Errorf("after writing the batch twice the indices hold %d documents, want %d", got, n)
	}

	// Gzip, which ZincSearch does not read, is an error, not silent loss.
	gz := newESSink(t, strings.Replace(conf, "compression: none", "compression: gzip", 1))
	err := gz.Write(ctx, esBatch(10, 0))
	var we *connectors.WriteError
	if err == nil || errors.As(err, &we) || !strings.Contains(err.Error(), "0 items for 10 documents") {
		t.Errorf("gzip Write to ZincSearch = %v, want a plain error about 0 items for 10 documents", err)
	}
}
