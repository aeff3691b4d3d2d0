package kafkatest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// rec is a consumed record, whichever client read it.
type rec struct {
	Topic      string
	Partition  int32
	Offset     int64
	Key        *string
	Value      string
	ProducerID int64 // read by franz-go: -1 when not produced idempotently; else 0
}

// filler makes every value compress well, so that no client falls back to
// sending a batch uncompressed because compressing did not pay (kafka-python
// and librdkafka both do), even a batch of one record.
var filler = strings.Repeat("weir ", 40)

// values returns n distinct values label-00000-<filler>, label-00001-...,
// in produce order.
func values(label string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s-%05d-%s", label, i, filler)
	}
	return vs
}

// lines joins values for a producer's stdin, one record per line.
func lines(vs []string) string { return strings.Join(vs, "\n") + "\n" }

// checkExactlyOnce checks that got holds each of want exactly once and
// nothing else, and that within each partition the values come in produce
// order (the order of want). It reports every problem in one message:
//
//	kcat gzip read by franz-go: got 97 records, want 100; missing [3 17 42]
func checkExactlyOnce(t testing.TB, what string, want []string, got []rec) bool {
	t.Helper()
	index := make(map[string]int, len(want))
	for i, v := range want {
		index[v] = i
	}
	seen := make(map[int]int, len(want))
	var unexpected []string
	var disorder []string
	last := map[int32]int{} // partition -> want index of its previous record
	for _, r := range got {
		i, ok := index[r.Value]
		if !ok {
			unexpected = append(unexpected, short(r.Value))
			continue
		}
		seen[i]++
		if prev, ok := last[r.Partition]; ok && i < prev && len(disorder) < 5 {
			disorder = append(disorder, fmt.Sprintf("partition %d offset %d has #%d after #%d", r.Partition, r.Offset, i, prev))
		}
		last[r.Partition] = i
	}
	var missing, dup []int
	for i := range want {
		switch n := seen[i]; {
		case n == 0:
			missing = append(missing, i)
		case n > 1:
			dup = append(dup, i)
		}
	}
	if len(missing)+len(dup)+len(unexpected)+len(disorder) == 0 && len(got) == len(want) {
		return true
	}
	msg := fmt.Sprintf("%s: got %d records, want %d", what, len(got), len(want))
	if len(missing) > 0 {
		msg += fmt.Sprintf("; missing %d: %v", len(missing), firstInts(missing))
	}
	if len(dup) > 0 {
		msg += fmt.Sprintf("; duplicated %d: %v", len(dup), firstInts(dup))
	}
	if len(unexpected) > 0 {
		msg += fmt.Sprintf("; unexpected %d: %q", len(unexpected), unexpected[:min(len(unexpected), 3)])
	}
	if len(disorder) > 0 {
		msg += "; out of order: " + strings.Join(disorder, ", ")
	}
	t.Error(msg)
	return false
}

// checkRange checks that got is exactly offsets [from, to) of one partition,
// in order, each with the key and value that produce gave offset o.
//
//	kcat from offset 42: first record is offset 0 ("v-000"), want 42
func checkRange(t testing.TB, what string, got []rec, partition int32, from, to int64, key, value func(o int64) string) bool {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: got no records, want offsets [%d, %d)", what, from, to)
		return false
	}
	if got[0].Offset != from {
		t.Errorf("%s: first record is offset %d (%q), want %d", what, got[0].Offset, short(got[0].Value), from)
		return false
	}
	for i, r := range got {
		o := from + int64(i)
		switch {
		case r.Partition != partition:
			t.Errorf("%s: record %d is from partition %d, want %d", what, i, r.Partition, partition)
		case r.Offset != o:
			t.Errorf("%s: record %d has offset %d, want %d (a gap or a duplicate)", what, i, r.Offset, o)
		case r.Value != value(o):
			t.Errorf("%s: offset %d has value %q, want %q", what, o, short(r.Value), value(o))
		case key != nil && (r.Key == nil || *r.Key != key(o)):
			t.Errorf("%s: offset %d has key %s, want %q", what, o, keyString(r.Key), key(o))
		default:
			continue
		}
		return false
	}
	if n := to - from; int64(len(got)) != n {
		t.Errorf("%s: got %d records (offsets [%d, %d)), want %d (offsets [%d, %d))",
			what, len(got), from, got[len(got)-1].Offset+1, n, from, to)
		return false
	}
	return true
}

// checkResume checks a resumed group member's records for one topic: in
// every partition, exactly offsets [start[p], end[p]) in order.
func checkResume(t testing.TB, what string, got []rec, start, end map[int32]int64) bool {
	t.Helper()
	byPart := map[int32][]rec{}
	for _, r := range got {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	ok := true
	for p := int32(0); p < int32(len(end)); p++ {
		rs := byPart[p]
		if len(rs) == 0 {
			t.Errorf("%s: partition %d: got no records, want offsets [%d, %d)", what, p, start[p], end[p])
			ok = false
			continue
		}
		var offs []int64
		for _, r := range rs {
			offs = append(offs, r.Offset)
		}
		want := make([]int64, 0, end[p]-start[p])
		for o := start[p]; o < end[p]; o++ {
			want = append(want, o)
		}
		if !slices.Equal(offs, want) {
			t.Errorf("%s: partition %d: got offsets %s, want [%d, %d) (committed %d)",
				what, p, spans(offs), start[p], end[p], start[p])
			ok = false
		}
	}
	return ok
}

// spans renders sorted-ish offsets compactly: [0-9 12 14-20].
func spans(offs []int64) string {
	var parts []string
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(offs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", offs[i], offs[j]))
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func firstInts(xs []int) string {
	if len(xs) > 20 {
		return fmt.Sprintf("%v...", xs[:20])
	}
	return fmt.Sprint(xs)
}

// short cuts the filler off a value for messages.
func short(v string) string {
	v = strings.TrimSuffix(v, "-"+filler)
	if len(v) > 60 {
		v = v[:60] + "..."
	}
	return v
}

func keyString(k *string) string {
	if k == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *k)
}
