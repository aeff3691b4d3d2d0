package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// member is one group member's view, filled by its client as it runs.
type member struct {
	name  string
	mu    sync.Mutex
	owned map[int32]bool
	recs  []rec
	errs  []string // errors the client reported and kept going after
}

func newMember(name string) *member { return &member{name: name, owned: map[int32]bool{}} }

func (m *member) assign(ps []int32, add bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		if add {
			m.owned[p] = true
		} else {
			delete(m.owned, p)
		}
	}
}

// setOwned replaces the assignment (the confluent script prints it whole).
func (m *member) setOwned(ps []int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owned = map[int32]bool{}
	for _, p := range ps {
		m.owned[p] = true
	}
}

func (m *member) assigned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []int32
	for p := range m.owned {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (m *member) add(r rec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, r)
}

func (m *member) error(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, s)
}

func (m *member) errors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.errs)
}

func (m *member) records() []rec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs)
}

// count is how many of vs the member consumed (with repeats).
func (m *member) count(vs map[string]bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.recs {
		if vs[r.Value] {
			n++
		}
	}
	return n
}

// starter starts a group member on topic and returns it with a function that
// makes it leave the group and waits for it.
type starter func(e *env, name, group, topic string) (*member, func())

// caseRebalance: member a joins a group on a four-partition topic alone and
// must own all four partitions; it consumes (and commits) 40 records. Then b
// joins while 40 more are produced, and the group must settle with a and b
// owning disjoint, non-empty sets that cover all four (2/2 is logged, not
// required). Then 40 more are produced. Both members commit every record
// synchronously before they poll again, so the suite asserts:
//   - records produced before b joined: consumed exactly once, by a;
//   - records produced while b joined: consumed at least once (a record a
//     had consumed but not yet committed when it lost the partition may be
//     consumed again by b);
//   - records produced after the group settled: consumed exactly once, by
//     the member that owns the partition.
//
// The counts are taken after both members have left the group.
func caseRebalance(e *env) {
	e.run("franz-go", func(e *env) { rebalance(e, "franz-go", franzMember(nil), franzMember(nil)) })
	e.run("confluent", func(e *env) { rebalance(e, "confluent", confluentMember(""), confluentMember("")) })
	// One group, two clients: both must speak the range assignor.
	e.run("franz-go+confluent", func(e *env) {
		rebalance(e, "mixed", franzMember(kgo.RangeBalancer()), confluentMember("range"))
	})
}

func rebalance(e *env, label string, startA, startB starter) {
	topic, group := e.name(label), e.name(label, "group")
	e.createTopic(topic, 4)
	all := []int32{0, 1, 2, 3}
	batch := func(phase string) map[string]int32 {
		vs := map[string]int32{}
		var recs []*kgo.Record
		for p := int32(0); p < 4; p++ {
			for i := 0; i < 10; i++ {
				v := fmt.Sprintf("%s-%s-p%d-%02d", label, phase, p, i)
				vs[v] = p
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)})
			}
		}
		e.produce(recs...)
		return vs
	}
	set := func(vs ...map[string]int32) map[string]bool {
		out := map[string]bool{}
		for _, m := range vs {
			for v := range m {
				out[v] = true
			}
		}
		return out
	}

	a, stopA := startA(e, "a", group, topic)
	var stopped bool
	defer func() {
		if !stopped {
			stopA()
		}
	}()
	state := func(ms ...*member) func() string {
		return func() string {
			var parts []string
			for _, m := range ms {
				parts = append(parts, fmt.Sprintf("%s owns %v, consumed %d, errors %v", m.name, m.assigned(), len(m.records()), m.errors()))
			}
			return strings.Join(parts, "; ")
		}
	}
	e.waitFor("member a, alone in the group, to own all 4 partitions",
		func() bool { return slices.Equal(a.assigned(), all) }, state(a))

	before := batch("before")
	e.waitFor("member a to consume the 40 records produced before b joins",
		func() bool { return a.count(set(before)) >= len(before) }, state(a))
	committed := map[int32]int64{0: 10, 1: 10, 2: 10, 3: 10}
	var seen string
	e.waitFor("member a's commits of those 40 records", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		resp, err := e.franz.adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			seen = fmt.Sprintf("OffsetFetch: %v", err)
			return false
		}
		got := map[int32]int64{}
		for p := range committed {
			if o, ok := resp.Lookup(topic, p); ok {
				got[p] = o.At
			}
		}
		seen = fmt.Sprintf("committed %v, want %v", got, committed)
		return maps.Equal(got, committed)
	}, func() string { return seen + "; " + state(a)() })

	b, stopB := startB(e, "b", group, topic)
	defer func() {
		if !stopped {
			stopB()
		}
	}()
	during := batch("during")
	settled := func() bool {
		pa, pb := a.assigned(), b.assigned()
		union := append(slices.Clone(pa), pb...)
		slices.Sort(union)
		return len(pa) > 0 && len(pb) > 0 && slices.Equal(union, all)
	}
	start := time.Now()
	e.waitFor("the group to settle: a and b own disjoint, non-empty sets of partitions covering all 4", settled, state(a, b))
	ownA, ownB := a.assigned(), b.assigned()
	e.t.Logf("settled %v after b started: a owns %v, b owns %v", time.Since(start).Round(time.Millisecond), ownA, ownB)

	after := batch("after")
	every := set(before, during, after)
	e.waitFor("every one of the 120 records to be consumed", func() bool {
		seen := map[string]bool{}
		for _, m := range []*member{a, b} {
			for _, r := range m.records() {
				seen[r.Value] = true
			}
		}
		for v := range every {
			if !seen[v] {
				return false
			}
		}
		return true
	}, state(a, b))
	if !slices.Equal(a.assigned(), ownA) || !slices.Equal(b.assigned(), ownB) {
		e.t.Errorf("the assignment changed without a member joining or leaving: was a %v b %v, now %s", ownA, ownB, state(a, b)())
	}
	stopB()
	stopA()
	stopped = true

	count := map[string]map[string]int{} // value -> member -> times
	for _, m := range []*member{a, b} {
		for _, err := range m.errors() {
			e.t.Logf("member %s reported (and went on): %s", m.name, err)
		}
		for _, r := range m.records() {
			if r.Topic != topic || !every[r.Value] {
				e.t.Errorf("member %s consumed an unexpected record %s/%d@%d %q", m.name, r.Topic, r.Partition, r.Offset, short(r.Value))
				continue
			}
			if count[r.Value] == nil {
				count[r.Value] = map[string]int{}
			}
			count[r.Value][m.name]++
		}
	}
	total := func(v string) int { return count[v]["a"] + count[v]["b"] }
	var bad []string
	report := func(format string, args ...any) {
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	for _, v := range sortedKeys(before) {
		if count[v]["a"] != 1 || count[v]["b"] != 0 {
			report("%s (before b joined): a consumed it %d times, b %d, want a once", v, count[v]["a"], count[v]["b"])
		}
	}
	for _, v := range sortedKeys(during) {
		if total(v) == 0 {
			report("%s (while b joined): lost", v)
		}
	}
	owner := func(p int32) string {
		if slices.Contains(ownA, p) {
			return "a"
		}
		return "b"
	}
	for _, v := range sortedKeys(after) {
		o := owner(after[v])
		if count[v][o] != 1 || total(v) != 1 {
			report("%s (after the group settled): a consumed it %d times, b %d, want %s (owner of partition %d) once",
				v, count[v]["a"], count[v]["b"], o, after[v])
		}
	}
	if len(bad) > 0 {
		e.t.Errorf("rebalance %s: a owned %v, b owned %v:\n\t%s", label, ownA, ownB, strings.Join(bad, "\n\t"))
	}
	dups := 0
	for _, v := range sortedKeys(during) {
		dups += total(v) - 1
	}
	e.t.Logf("a consumed %d records, b %d; %d redelivered around the rebalance (allowed)", len(a.records()), len(b.records()), dups)
}

func sortedKeys(m map[string]int32) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// franzMember starts franz-go members: commit every polled batch
// synchronously, and block rebalances while a batch is processed
// (BlockRebalanceOnPoll), so that nothing consumed is uncommitted when a
// partition moves. balancer nil keeps franz-go's default
// (cooperative-sticky).
func franzMember(balancer kgo.GroupBalancer) starter {
	return func(e *env, name, group, topic string) (*member, func()) {
		m := newMember(name)
		opts := []kgo.Opt{
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.SessionTimeout(10 * time.Second),
			kgo.HeartbeatInterval(500 * time.Millisecond),
			kgo.FetchMaxWait(500 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.assign(a[topic], true) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { m.assign(r[topic], false) }),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) { m.assign(l[topic], false) }),
		}
		if balancer != nil {
			opts = append(opts, kgo.Balancers(balancer))
		}
		cl := e.client(opts...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				fs := cl.PollRecords(ctx, 100)
				fs.EachError(func(t string, p int32, err error) {
					if !errors.Is(err, context.Canceled) {
						m.error(fmt.Sprintf("fetch %s/%d: %v", t, p, err))
					}
				})
				recs := fs.Records()
				for _, r := range recs {
					m.add(fromKgo(r))
				}
				if len(recs) > 0 {
					if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
						m.error(fmt.Sprintf("commit: %v", err))
					}
				}
				cl.AllowRebalance()
			}
		}()
		stop := func() {
			cancel()
			select {
			case <-done:
			case <-time.After(opTimeout):
				e.t.Errorf("franz-go member %s: poll loop did not end within %v", name, opTimeout)
			}
			cl.Close() // leaves the group
		}
		return m, stop
	}
}

// confluentMember starts confluent-kafka members in their own processes
// (the script's member command commits every record synchronously).
// assignor "" keeps librdkafka's default (range,roundrobin).
func confluentMember(assignor string) starter {
	return func(e *env, name, group, topic string) (*member, func()) {
		m := newMember(name)
		args := []string{"member", "--group", group, "--topic", topic}
		if assignor != "" {
			args = append(args, "--assignor", assignor)
		}
		p := e.startPy(confluentScript, func(l line) {
			switch l.Event {
			case "assignment":
				m.setOwned(l.Partitions)
			case "record":
				m.add(l.rec())
			case "error", "commit_error":
				if l.Error != nil {
					m.error(l.Event + ": " + *l.Error)
				}
			}
		}, args...)
		return m, func() { p.stop(e.t, "confluent member "+name) }
	}
}
