package sinks

import (
	"context"
	"fmt"
	"testing"
)

// TestElasticsearchSpreadsWrites: a write smaller than flush_bytes goes as
// `workers` requests of about equal size, at least 64KiB each, with every
// record indexed; a small write, a write with id_field and a sink with one
// worker send one request.
func TestElasticsearchSpreadsWrites(t *testing.T) {
	for _, tt := range []struct {
		conf string
		docs int
		want int // requests; 0: as many as make requests of 64KiB
	}{
		{"workers: 2", 4000, 2},
		{"workers: 3", 4000, 3},
		{"workers: 8", 4000, 0}, // ~400KB
		{"workers: 2", 500, 1},  // ~50KB
		{"workers: 2, id_field: n", 4000, 1},
		{"workers: 1", 4000, 1},
	} {
		es := newESStub(t)
		s := newESSink(t, fmt.Sprintf(`{urls: [%q], index: logs, compression: none, %s}`, es.URL(), tt.conf))
		if err := s.Write(context.Background(), esBatch(tt.docs, 0)); err != nil {
			t.Fatalf("%s: Write = %v", tt.conf, err)
		}
		reqs := es.Requests()
		want := tt.want
		if want == 0 {
			size := 0
			for _, r := range reqs {
				size += r.Size
			}
			want = size / (64 << 10)
		}
		if len(reqs) != want || es.DocCount() != tt.docs {
			t.Errorf("%s: Write(%d documents) = %d requests, %d documents indexed; want %d requests", tt.conf, tt.docs, len(reqs), es.DocCount(), want)
			continue
		}
		lo, hi := reqs[0].Size, reqs[0].Size
		for _, r := range reqs {
			lo, hi = min(lo, r.Size), max(hi, r.Size)
		}
		if len(reqs) > 1 && (float64(hi) > 1.1*float64(lo) || lo < 64<<10) {
			t.Errorf("%s: requests of %d to %d bytes, want about equal and at least 64KiB", tt.conf, lo, hi)
		}
	}
}
