package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func joinReq(group, member string) JoinGroupRequest {
	return JoinGroupRequest{Group: group, MemberID: member, ClientID: "test", ProtocolType: "consumer",
		Protocols:      []GroupProtocol{{Name: "range", Metadata: []byte("m-" + member)}},
		SessionTimeout: time.Second, RebalanceTimeout: 2 * time.Second, RequireKnownMemberID: true}
}

// join performs the KIP-394 two-step join of a new member.
func join(t *testing.T, h *Hub, group string) JoinGroupResult {
	t.Helper()
	res := h.JoinGroup(context.Background(), joinReq(group, ""))
	if !errors.Is(res.Err, ErrMemberIDRequired) || res.MemberID == "" {
		t.Fatalf("first join = %+v, want ErrMemberIDRequired with an id", res)
	}
	return h.JoinGroup(context.Background(), joinReq(group, res.MemberID))
}

// TestGroupProtocol runs in a synctest bubble: calls are ordered by
// synctest.Wait (every goroutine blocked), not by sleeps, and session
// timeouts run on the bubble's clock, without margins.
func TestGroupProtocol(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := openHub(t, testOptions(t.TempDir()))
		defer h.Close()
		ctx := context.Background()

		a := join(t, h, "g")
		if a.Err != nil || a.Generation != 1 || a.Leader != a.MemberID || len(a.Members) != 1 || a.Protocol != "range" {
			t.Fatalf("first member: %+v", a)
		}
		sa := h.SyncGroup(ctx, SyncGroupRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Assignments: map[string][]byte{a.MemberID: []byte("all")}})
		if sa.Err != nil || string(sa.Assignment) != "all" {
			t.Fatalf("leader sync: %+v", sa)
		}
		if err := h.Heartbeat("g", a.MemberID, 1); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if d := h.DescribeGroup("g"); d.State != GroupStable || len(d.Members) != 1 {
			t.Fatalf("describe: %+v", d)
		}

		// A second member: the first learns of the rebalance by heartbeat and
		// rejoins; both land in generation 2.
		bDone := make(chan JoinGroupResult)
		go func() { bDone <- join(t, h, "g") }()
		deadline := time.Now().Add(3 * time.Second)
		for h.Heartbeat("g", a.MemberID, 1) == nil {
			if time.Now().After(deadline) {
				t.Fatal("heartbeat never reported the rebalance")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := h.Heartbeat("g", a.MemberID, 1); !errors.Is(err, ErrRebalanceInProgress) {
			t.Fatalf("heartbeat during rebalance: %v", err)
		}
		a2 := h.JoinGroup(ctx, joinReq("g", a.MemberID))
		b := <-bDone
		if a2.Err != nil || b.Err != nil || a2.Generation != 2 || b.Generation != 2 || a2.Leader != a.MemberID || len(a2.Members) != 2 || len(b.Members) != 0 {
			t.Fatalf("generation 2: a=%+v b=%+v", a2, b)
		}
		// The follower's sync waits for the leader's.
		sbDone := make(chan SyncGroupResult)
		go func() { sbDone <- h.SyncGroup(ctx, SyncGroupRequest{Group: "g", MemberID: b.MemberID, Generation: 2}) }()
		synctest.Wait() // the follower's sync is blocked, waiting for the leader's
		select {
		case sb := <-sbDone:
			t.Fatalf("the follower's sync returned before the leader's: %+v", sb)
		default:
		}
		h.SyncGroup(ctx, SyncGroupRequest{Group: "g", MemberID: a.MemberID, Generation: 2,
			Assignments: map[string][]byte{a.MemberID: []byte("p0"), b.MemberID: []byte("p1")}})
		if sb := <-sbDone; sb.Err != nil || string(sb.Assignment) != "p1" {
			t.Fatalf("follower sync: %+v", sb)
		}
		// Commits are checked against membership and generation.
		offs := map[TopicPartition]CommittedOffset{{"t", 0}: {Offset: 5}}
		if err := h.CommitOffsets(OffsetCommitRequest{Group: "g", MemberID: a.MemberID, Generation: 1, Offsets: offs}); !errors.Is(err, ErrIllegalGeneration) {
			t.Fatalf("commit with an old generation: %v", err)
		}
		if err := h.CommitOffsets(OffsetCommitRequest{Group: "g", MemberID: "stranger", Generation: 2, Offsets: offs}); !errors.Is(err, ErrUnknownMemberID) {
			t.Fatalf("commit by a stranger: %v", err)
		}
		if err := h.CommitOffsets(OffsetCommitRequest{Group: "g", Generation: -1, Offsets: offs}); !errors.Is(err, ErrUnknownMemberID) {
			t.Fatalf("standalone commit into an active group: %v", err)
		}
		if err := h.CommitOffsets(OffsetCommitRequest{Group: "g", MemberID: a.MemberID, Generation: 2, Offsets: offs}); err != nil {
			t.Fatal(err)
		}
		if got := h.FetchOffsets("g", nil); got[TopicPartition{"t", 0}].Offset != 5 {
			t.Fatalf("FetchOffsets = %v", got)
		}

		// b leaves: a is alone again after a rebalance.
		if errs := h.LeaveGroup("g", []string{b.MemberID}, nil); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if err := h.Heartbeat("g", a.MemberID, 2); !errors.Is(err, ErrRebalanceInProgress) {
			t.Fatalf("heartbeat after a leave: %v", err)
		}
		a3 := h.JoinGroup(ctx, joinReq("g", a.MemberID))
		if a3.Err != nil || a3.Generation != 3 || len(a3.Members) != 1 {
			t.Fatalf("generation 3: %+v", a3)
		}
		if err := h.Heartbeat("g", b.MemberID, 3); !errors.Is(err, ErrUnknownMemberID) {
			t.Fatalf("heartbeat of a member that left: %v", err)
		}

		// A member that stops heartbeating is dropped after its session
		// (1s), and not before (the bubble's clock is exact).
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if d := h.DescribeGroup("g"); len(d.Members) != 1 {
			t.Fatalf("before the session expired: %+v", d)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if d := h.DescribeGroup("g"); d.State != GroupEmpty || len(d.Members) != 0 {
			t.Fatalf("after the session expired: %+v", d)
		}
		if err := h.CommitOffsets(OffsetCommitRequest{Group: "g", Generation: -1, Offsets: offs}); err != nil {
			t.Fatalf("standalone commit into an empty group: %v", err)
		}
		groups := h.ListGroups()
		if len(groups) != 1 || groups[0].Name != "g" || groups[0].State != GroupEmpty {
			t.Fatalf("ListGroups = %+v", groups)
		}
		if d := h.DescribeGroup("nope"); d.State != GroupDead {
			t.Fatalf("unknown group described as %v", d.State)
		}
	})
}

func TestGroupRebalanceTimeoutDropsSilentMembers(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ctx := context.Background()
	a := join(t, h, "slow")
	h.SyncGroup(ctx, SyncGroupRequest{Group: "slow", MemberID: a.MemberID, Generation: a.Generation})
	bDone := make(chan JoinGroupResult)
	go func() { bDone <- join(t, h, "slow") }()
	// a never rejoins (nor heartbeats): after the rebalance timeout b
	// completes alone.
	select {
	case b := <-bDone:
		if b.Err != nil || len(b.Members) != 1 || b.Leader != b.MemberID {
			t.Fatalf("b after the rebalance timeout: %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rebalance never completed without the silent member")
	}
}

func TestGroupRejectsBadJoins(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	ctx := context.Background()
	r := joinReq("g", "")
	r.SessionTimeout = time.Hour
	if res := h.JoinGroup(ctx, r); !errors.Is(res.Err, ErrInvalidSessionTimeout) {
		t.Errorf("hour-long session: %v", res.Err)
	}
	if res := h.JoinGroup(ctx, joinReq("g", "made-up")); !errors.Is(res.Err, ErrUnknownMemberID) {
		t.Errorf("made-up member id: %v", res.Err)
	}
	a := join(t, h, "g")
	r = joinReq("g", "")
	r.RequireKnownMemberID = false
	r.Protocols = []GroupProtocol{{Name: "roundrobin"}}
	if res := h.JoinGroup(ctx, r); !errors.Is(res.Err, ErrInconsistentProtocol) {
		t.Errorf("protocol nobody else supports: %v", res.Err)
	}
	_ = a
}

func TestCommittedOffsetsPersistAndCompact(t *testing.T) {
	dir := t.TempDir()
	defer func(n int64) { offsetsCompactBytes = n }(offsetsCompactBytes)
	offsetsCompactBytes = 4096
	h := openHub(t, testOptions(dir))
	for i := range 200 {
		err := h.CommitOffsets(OffsetCommitRequest{Group: fmt.Sprintf("g%d", i%3), Generation: -1,
			Offsets: map[TopicPartition]CommittedOffset{{"t", int32(i % 4)}: {Offset: int64(i), Metadata: "m"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]map[TopicPartition]CommittedOffset{}
	for g := range 3 {
		want[fmt.Sprintf("g%d", g)] = h.FetchOffsets(fmt.Sprintf("g%d", g), nil)
	}
	if err := h.DeleteGroup("g2"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h = openHub(t, testOptions(dir))
	defer h.Close()
	for _, g := range []string{"g0", "g1"} {
		got := h.FetchOffsets(g, nil)
		if len(got) != len(want[g]) {
			t.Fatalf("%s after reopen: %v, want %v", g, got, want[g])
		}
		for tp, c := range want[g] {
			if got[tp].Offset != c.Offset || got[tp].Metadata != "m" {
				t.Fatalf("%s %v after reopen: %+v, want %+v", g, tp, got[tp], c)
			}
		}
	}
	if got := h.FetchOffsets("g2", nil); len(got) != 0 {
		t.Fatalf("deleted group's offsets came back: %v", got)
	}
	// Compaction kept the log short.
	if size := h.offsets.log.Size(); size > 64<<10 {
		t.Fatalf("offsets log is %d bytes after compaction", size)
	}
}

// consumeAll runs a LocalClient group consumer until want records arrived
// (across all consumers) or the deadline; it commits after each poll and
// in OnRevoked.
func runConsumer(t *testing.T, c *LocalClient, group string, seen *sync.Map, total *int64, mu *sync.Mutex, stop <-chan struct{}) {
	ctx := context.Background()
	var cons Consumer
	processed := map[TopicPartition]int64{}
	var err error
	cons, err = c.Consume(ctx, ConsumeOptions{Datasets: []string{"events"}, Group: group, MaxWait: 50 * time.Millisecond,
		SessionTimeout: 500 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond, RebalanceTimeout: 2 * time.Second,
		OnRevoked: func(ctx context.Context, tps []TopicPartition) {
			if len(processed) > 0 {
				if err := cons.Commit(ctx, processed); err != nil {
					t.Errorf("commit on revoke: %v", err)
				}
			}
			processed = map[TopicPartition]int64{}
		}})
	if err != nil {
		t.Error(err)
		return
	}
	defer cons.Close(ctx)
	for {
		select {
		case <-stop:
			return
		default:
		}
		fetches, err := cons.Poll(ctx)
		if err != nil {
			t.Errorf("poll: %v", err)
			return
		}
		for _, f := range fetches {
			for _, r := range f.Records {
				if prev, dup := seen.LoadOrStore(string(r.Value), f.Partition); dup {
					t.Errorf("record %s consumed twice (partitions %v and %d)", r.Value, prev, f.Partition)
				}
				mu.Lock()
				*total++
				mu.Unlock()
				processed[TopicPartition{f.Dataset, f.Partition}] = r.Offset + 1
			}
		}
		if len(processed) > 0 {
			if err := cons.Commit(ctx, processed); err != nil && !errors.Is(err, ErrRebalanceInProgress) {
				t.Errorf("commit: %v", err)
			}
		}
	}
}

func TestLocalClientGroupSharesPartitions(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	if _, err := h.CreateDataset("events", DatasetConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	c := NewLocalClient(h)
	ctx := context.Background()
	produce := func(from, n int) {
		var recs []Record
		for i := from; i < from+n; i++ {
			recs = append(recs, Record{Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("v", i))})
		}
		if err := c.Produce(ctx, "events", recs, ProduceOptions{}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var seen sync.Map
	var total int64
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	halt := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer halt()
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				halt()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	consumed := func(n int64) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return total >= n }
	}
	wg.Add(1)
	go func() { defer wg.Done(); runConsumer(t, c, "workers", &seen, &total, &mu, stop) }()
	produce(0, 500)
	waitFor("the first 500 records", consumed(500))
	wg.Add(1)
	go func() { defer wg.Done(); runConsumer(t, c, "workers", &seen, &total, &mu, stop) }()
	waitFor("two members sharing the partitions", func() bool {
		d := h.DescribeGroup("workers")
		if d.State != GroupStable || len(d.Members) != 2 {
			return false
		}
		for _, m := range d.Members {
			if len(m.Assignment) == 0 {
				return false
			}
		}
		return true
	})
	produce(500, 500)
	waitFor("all 1000 records", consumed(1000))
	halt()
	for i := range 1000 {
		if _, ok := seen.Load(fmt.Sprint("v", i)); !ok {
			t.Fatalf("record v%d never consumed", i)
		}
	}
	// Keys stay on their murmur2 partitions.
	ds, _ := h.Dataset("events")
	for i := int32(0); i < 4; i++ {
		p, _ := ds.Partition(i)
		it := p.Log().NewIterator(0)
		for it.Next() {
			if want := PartitionForKey(it.Record().Key, 4); want != i {
				t.Fatalf("key %s on partition %d, murmur2 says %d", it.Record().Key, i, want)
			}
		}
	}
}

func TestLocalClientResumesAfterCommitAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	h := openHub(t, testOptions(dir))
	c := NewLocalClient(h)
	ctx := context.Background()
	var recs []Record
	for i := range 100 {
		recs = append(recs, Record{Value: []byte(fmt.Sprint(i))})
	}
	if err := c.Produce(ctx, "single", recs, ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	opts := ConsumeOptions{Datasets: []string{"single"}, Group: "resume", MaxWait: 20 * time.Millisecond}
	cons, err := c.Consume(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 100 {
		fs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			for _, r := range f.Records {
				got = append(got, string(r.Value))
			}
		}
	}
	if err := cons.Commit(ctx, map[TopicPartition]int64{{"single", 0}: 42}); err != nil {
		t.Fatal(err)
	}
	cons.Close(ctx)
	h.Close()

	h = openHub(t, testOptions(dir))
	defer h.Close()
	c = NewLocalClient(h)
	cons, err = c.Consume(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close(ctx)
	fs, err := cons.Poll(ctx)
	for err == nil && len(fs) == 0 {
		fs, err = cons.Poll(ctx)
	}
	if err != nil || string(fs[0].Records[0].Value) != "42" || fs[0].Records[0].Offset != 42 {
		t.Fatalf("resumed at %+v, %v; want offset 42", fs, err)
	}
	if lag := cons.Lag()[TopicPartition{"single", 0}]; lag != 100-42-int64(len(fs[0].Records)) {
		t.Fatalf("lag %d", lag)
	}
}

func TestBroadcastConsumersEachGetEverything(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	h.CreateDataset("cache", DatasetConfig{Partitions: 3})
	c := NewLocalClient(h)
	ctx := context.Background()
	var recs []Record
	for i := range 300 {
		recs = append(recs, Record{Key: []byte(fmt.Sprint("key", i%37)), Value: []byte(fmt.Sprint(i))})
	}
	c.Produce(ctx, "cache", recs, ProduceOptions{})
	for n := range 2 {
		cons, err := c.Consume(ctx, ConsumeOptions{Datasets: []string{"cache"}, Broadcast: true, MaxWait: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for tries := 0; len(got) < 300 && tries < 100; tries++ {
			fs, err := cons.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				for _, r := range f.Records {
					got = append(got, string(r.Value))
				}
			}
		}
		sort.Strings(got)
		if len(got) != 300 {
			t.Fatalf("broadcast consumer %d got %d records", n, len(got))
		}
		cons.Close(ctx)
	}
}

// Records more than one batch may hold are produced as several batches.
func TestLocalProduceSplitsAtMaxMessageBytes(t *testing.T) {
	h := openHub(t, testOptions(t.TempDir()))
	defer h.Close()
	if _, err := h.CreateDataset("big", DatasetConfig{Partitions: 1, MaxMessageBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: bytes.Repeat([]byte{'a' + byte(i%26)}, 1000)}
	}
	if err := NewLocalClient(h).Produce(context.Background(), "big", recs, ProduceOptions{}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ds, _ := h.Dataset("big")
	p, _ := ds.Partition(0)
	if hw := p.HighWatermark(); hw != 1000 {
		t.Fatalf("high watermark %d, want 1000", hw)
	}
}
