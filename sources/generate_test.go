package sources

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

func newTestGenerate(t testing.TB, src string) *generateSource {
	t.Helper()
	s, err := newGenerate(parseConfig(t, &generateSpec, src), connectors.Resources{})
	if err != nil {
		t.Fatalf("newGenerate(%q): %v", src, err)
	}
	return s.(*generateSource)
}

// readAllRecords reads a finite source to its end, at most max records.
func readAllRecords(t *testing.T, s connectors.Source, max int) []*connectors.Message {
	t.Helper()
	var out []*connectors.Message
	for len(out) <= max {
		batch, _, err := s.Read(context.Background())
		out = append(out, batch...)
		if errors.Is(err, connectors.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatalf("more than %d records", max)
	return nil
}

func TestGenerateDeterministic(t *testing.T) {
	for _, format := range []string{"json", "logfmt", "line"} {
		conf := "format: " + format + "\ncount: 3000\nkey_field: host\nstart: 2026-01-01T00:00:00Z"
		a := readAllRecords(t, newTestGenerate(t, conf), 3000)
		b := readAllRecords(t, newTestGenerate(t, conf+"\nbatch_size: 7"), 3000)
		c := readAllRecords(t, newTestGenerate(t, conf+"\nseed: 2"), 3000)
		if len(a) != 3000 || len(b) != 3000 {
			t.Fatalf("%s: %d and %d records, want 3000", format, len(a), len(b))
		}
		same := 0
		for i := range a {
			if !bytes.Equal(a[i].Value, b[i].Value) || !bytes.Equal(a[i].Key, b[i].Key) || !a[i].Time.Equal(b[i].Time) {
				t.Fatalf("%s: record %d differs between runs with seed 1:\n%s\n%s", format, i, a[i].Value, b[i].Value)
			}
			if bytes.Equal(a[i].Value, c[i].Value) {
				same++
			}
		}
		if same > 30 {
			t.Errorf("%s: %d of 3000 records are the same with seeds 1 and 2", format, same)
		}
	}
}

// TestGenerateStampsNow: without start, records are stamped near the
// current time, so that retention treats them as live data (issue 10
// item 1: they were stamped from 2026-01-01 and a 7d retention deleted
// the backlog).
func TestGenerateStampsNow(t *testing.T) {
	before := time.Now().Add(-time.Second)
	recs := readAllRecords(t, newTestGenerate(t, "count: 5000"), 5000)
	after := time.Now().Add(time.Second)
	for i, m := range recs {
		if m.Time.Before(before) || m.Time.After(after) {
			t.Fatalf("record %d stamped %v, want between %v and %v", i, m.Time, before, after)
		}
		if i > 0 && m.Time.Before(recs[i-1].Time) {
			t.Fatalf("record %d stamped %v before record %d (%v)", i, m.Time, i-1, recs[i-1].Time)
		}
	}
	fixed := readAllRecords(t, newTestGenerate(t, "count: 2\nstart: 2026-01-01T00:00:00Z"), 2)
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !fixed[0].Time.Equal(want) {
		t.Fatalf("with start: first record stamped %v, want %v", fixed[0].Time, want)
	}
}

func TestGenerateCount(t *testing.T) {
	tests := []struct {
		conf  string
		sizes []int
	}{
		{"count: 2500", []int{1000, 1000, 500}},
		{"count: 5\nbatch_size: 2", []int{2, 2, 1}},
		{"rate: 100000\nduration: 30ms\nbatch_size: 1000", []int{1000, 1000, 1000}},
		{"rate: 100000\nduration: 1h\ncount: 10", []int{10}},
	}
	for _, tt := range tests {
		s := newTestGenerate(t, tt.conf)
		var sizes []int
		for range 10 {
			batch, ack, err := s.Read(context.Background())
			if errors.Is(err, connectors.ErrEndOfInput) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := ack(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(batch))
		}
		total, want := 0, 0
		for i := range sizes {
			total += sizes[i]
		}
		for i := range tt.sizes {
			want += tt.sizes[i]
		}
		if total != want || (!strings.Contains(tt.conf, "rate") && !equalInts(sizes, tt.sizes)) {
			t.Errorf("generate(%q) batches = %v, want %v", tt.conf, sizes, tt.sizes)
		}
		if _, _, err := s.Read(context.Background()); !errors.Is(err, connectors.ErrEndOfInput) {
			t.Errorf("generate(%q): Read after the end = %v, want ErrEndOfInput", tt.conf, err)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGenerateJSON(t *testing.T) {
	const n = 50000
	recs := readAllRecords(t, newTestGenerate(t, "count: 50000\nkey_field: status\nstart: 2026-11-21T10:00:00Z"), n)
	var p fastjson.Parser
	levels := map[string]int{}
	size := 0
	prev := time.Time{}
	for i, m := range recs {
		v, err := p.ParseBytes(m.Value)
		if err != nil {
			t.Fatalf("record %d is not JSON: %v\n%s", i, err, m.Value)
		}
		for _, f := range []string{"ts", "level", "host", "method", "path", "ua", "ip", "trace"} {
			if len(v.GetStringBytes(f)) == 0 {
				t.Fatalf("record %d has no string %s: %s", i, f, m.Value)
			}
		}
		status := v.GetInt("status")
		if status < 200 || status > 599 || v.Get("latency_ms") == nil || v.Get("bytes") == nil {
			t.Fatalf("record %d: %s", i, m.Value)
		}
		level := string(v.GetStringBytes("level"))
		levels[level]++
		if status >= 500 && level != "error" || status >= 400 && status < 500 && level != "warn" {
			t.Fatalf("record %d: status %d at level %s", i, status, level)
		}
		ts, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes("ts")))
		if err != nil || !ts.Equal(m.Time) {
			t.Fatalf("record %d: ts %s, Time %v", i, v.GetStringBytes("ts"), m.Time)
		}
		if i == 0 && !ts.Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("first ts = %v, want the start", ts)
		}
		if i > 0 && ts.Sub(prev) != time.Millisecond {
			t.Fatalf("record %d: %v after the previous one, want 1ms (rate 0)", i, ts.Sub(prev))
		}
		if string(m.Key) != strconv.Itoa(status) {
			t.Fatalf("record %d: key %q, status %d", i, m.Key, status)
		}
		prev = ts
		size += len(m.Value)
	}
	share := func(l string) float64 { return float64(levels[l]) / n }
	if d := share("debug"); d < 0.20 || d > 0.30 {
		t.Errorf("debug share = %.3f, want about a quarter", d)
	}
	if e, w := share("error"), share("warn"); e < 0.01 || e > 0.04 || w < 0.04 || w > 0.10 {
		t.Errorf("error share = %.3f, warn share = %.3f", e, w)
	}
	if avg := size / n; avg < 240 || avg > 300 {
		t.Errorf("average record = %d bytes, want about 270", avg)
	}
}

func TestGenerateKeys(t *testing.T) {
	tests := []struct{ format, key, field string }{
		{"json", "host", "host"},
		{"json", "trace", "trace"},
		{"logfmt", "ip", "ip"},
		{"line", "host", "host"}, // not in the line
		{"line", "level", "level"},
	}
	for _, tt := range tests {
		recs := readAllRecords(t, newTestGenerate(t, "count: 200\nformat: "+tt.format+"\nkey_field: "+tt.key), 200)
		json := readAllRecords(t, newTestGenerate(t, "count: 200"), 200) // same seed: same choices
		for i, m := range recs {
			want := fastjson.GetString(json[i].Value, tt.field)
			if string(m.Key) != want {
				t.Fatalf("%s key_field %s: record %d key = %q, want %q", tt.format, tt.key, i, m.Key, want)
			}
			if tt.format != "line" && !bytes.Contains(m.Value, m.Key) {
				t.Fatalf("%s: key %q not in %s", tt.format, m.Key, m.Value)
			}
		}
	}
}

func TestGenerateRate(t *testing.T) {
	s := newTestGenerate(t, "rate: 2000\ncount: 300")
	start := time.Now()
	recs := readAllRecords(t, s, 300)
	elapsed := time.Since(start)
	if len(recs) != 300 {
		t.Fatalf("%d records, want 300", len(recs))
	}
	// 300 records at 2000/s: the last is due at 149.5ms.
	if elapsed < 140*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("300 records at 2000/s took %v, want about 150ms", elapsed)
	}
	if d := recs[1].Time.Sub(recs[0].Time); d > time.Millisecond {
		t.Errorf("records %v apart at 2000/s", d)
	}
	if d := recs[299].Time.Sub(recs[0].Time); d < 148*time.Millisecond || d > 151*time.Millisecond {
		t.Errorf("300 records at 2000/s span %v, want 149.5ms", d)
	}
	if lag := time.Since(recs[0].Time); lag < 0 || lag > 10*time.Second {
		t.Errorf("with a rate and no start, times follow the wall clock; the first is %v ago", lag)
	}
}

func TestGenerateDurationWallClock(t *testing.T) {
	s := newTestGenerate(t, "duration: 50ms\nbatch_size: 10")
	start := time.Now()
	for i := 0; ; i++ {
		_, _, err := s.Read(context.Background())
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		if err != nil || time.Since(start) > 5*time.Second {
			t.Fatalf("Read %d: %v after %v", i, err, time.Since(start))
		}
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("ended after %v, want 50ms", d)
	}
}

func TestGenerateCancel(t *testing.T) {
	s := newTestGenerate(t, "rate: 1")
	if _, _, err := s.Read(context.Background()); err != nil { // the first is due at once
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := s.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read with an ending ctx = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Read took %v to notice its ctx", d)
	}
}

func TestGenerateConfigErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"rate: -1", `1:7: rate: must be 0 or a positive number`},
		{"start: yesterday", `1:8: start: "yesterday" is not an RFC 3339 time`},
		{"batch_size: 0", `1:13: batch_size: must be at least 1`},
		{"count: -5", `1:8: count: must be at least 0, not -5`},
	}
	for _, tt := range tests {
		c, err := parseOrErr(t, &generateSpec, tt.src)
		if err == nil {
			_, err = newGenerate(c, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newGenerate(%q) = %v, want %s", tt.src, err, tt.want)
		}
	}
}

// BenchmarkGenerate measures records made per second on one goroutine,
// in batches of 1000.
func BenchmarkGenerate(b *testing.B) {
	for _, format := range []string{"json", "logfmt", "line"} {
		b.Run(format, func(b *testing.B) {
			s := newTestGenerate(b, "format: "+format+"\nkey_field: host")
			bytes := 0
			b.ReportAllocs()
			for i := 0; i < b.N; i += 1000 {
				batch, _, err := s.Read(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range batch {
					bytes += len(m.Value)
				}
			}
			n := (b.N + 999) / 1000 * 1000
			b.SetBytes(int64(bytes / n))
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
