package kafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

// startColdBroker runs a hub whose cold store is store, with retention
// (and so local deletion of uploaded segments) checked often.
func startColdBroker(t *testing.T, dir string, store objstore.Store) *testBroker {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: dir, Defaults: hub.DatasetConfig{Fsync: "always"},
		RetentionCheckInterval: 20 * time.Millisecond, ColdStore: store})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, Options{})
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBroker{hub: h, srv: srv, addr: ln.Addr().String(), dir: dir, done: make(chan error, 1)}
	go func() { b.done <- srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func localSegmentFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "datasets", "*", "0", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// consumeFromZero reads records [0, n) of topic's partition 0 with franz-go
// from offset 0 and checks each value.
func consumeFromZero(t *testing.T, addr, topic string, n int) {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}),
		kgo.FetchMaxBytes(256<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := int64(0)
	for next < int64(n) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records from offset 0: %v", next, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch at offset %d: %v", next, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next || !strings.HasPrefix(string(r.Value), fmt.Sprintf("v%d;", next)) {
				t.Fatalf("record at offset %d (want %d) has value %.20q", r.Offset, next, r.Value)
			}
			next++
		})
	}
}

// TestColdTierS3 runs the cold tier against a real S3 server (versitygw):
// a topic created from a Kafka client with remote.storage.enable and a
// small local.retention.bytes moves its closed segments to the bucket, and
// a Kafka consumer reads every offset from 0 after the local segment files
// are gone: ListOffsets gives 0 as the earliest offset, fetches of cold
// offsets come from the store. It reads them again after a restart, and
// from a new server with an empty data directory on the same prefix.
func TestColdTierS3(t *testing.T) {
	s3 := s3test.Start(t)
	store, err := objstore.NewS3(s3.Options("hub1"))
	if err != nil {
		t.Fatal(err)
	}
	testColdTier(t, store)
}

// TestColdTierDir is TestColdTierS3 on the directory store, whose cold
// segments are read as files (and fetched with sendfile) rather than
// through the cold cache.
func TestColdTierDir(t *testing.T) {
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testColdTier(t, store)
}

func testColdTier(t *testing.T, store objstore.Store) {
	dir := t.TempDir()
	b := startColdBroker(t, dir, store)
	adm := kadm.NewClient(newClient(t, b.addr))
	ctx := context.Background()
	seg, local := "16384", "32768"
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"remote.storage.enable": kadm.StringPtr("true"),
		"segment.bytes": &seg, "local.retention.bytes": &local}, "cold")
	if err != nil || resp.Err != nil {
		t.Fatalf("CreateTopic: %v %v", err, resp.Err)
	}
	const n = 3000
	pcl := newClient(t, b.addr, kgo.DefaultProduceTopic("cold"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(4096),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := range n {
		v := fmt.Sprintf("v%d;%s", i, strings.Repeat("x", 200))
		pcl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := pcl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var st hub.PartitionStats
	for i := 0; ; i++ {
		for _, p := range b.hub.Stats() {
			if p.Dataset == "cold" {
				st = p
			}
		}
		if st.LocalStartOffset > n/2 && localSegmentFiles(t, dir) <= 5 {
			break
		}
		if i == 1000 {
			t.Fatalf("local segments not moved to the cold store: %+v, %d local files", st, localSegmentFiles(t, dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.RemoteSegments < 10 || st.RemoteBytes == 0 {
		t.Fatalf("stats %+v: want the remote segments counted", st)
	}
	objs, err := store.List(ctx, "cold/0/")
	if err != nil || len(objs) < 30 {
		t.Fatalf("bucket holds %d objects under cold/0/ (%v)", len(objs), err)
	}
	offs, err := adm.ListStartOffsets(ctx, "cold")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup("cold", 0); o.Offset != 0 {
		t.Fatalf("ListOffsets earliest = %d, want 0 (the cold start)", o.Offset)
	}
	consumeFromZero(t, b.addr, "cold", n)

	b.stop()
	b = startColdBroker(t, dir, store)
	consumeFromZero(t, b.addr, "cold", n)
	b.stop()

	// Disaster recovery: a new server with an empty data directory (and
	// the dataset's config given again) serves the prefix.
	dir2 := t.TempDir()
	b = startColdBroker(t, dir2, store)
	adm = kadm.NewClient(newClient(t, b.addr))
	if resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"remote.storage.enable": kadm.StringPtr("true"),
		"segment.bytes": &seg}, "cold"); err != nil || resp.Err != nil {
		t.Fatalf("CreateTopic on the new server: %v %v", err, resp.Err)
	}
	consumeFromZero(t, b.addr, "cold", n-n/10) // the last segments may not have been uploaded yet
	if _, err := os.Stat(dir2); err != nil {
		t.Fatal(err)
	}
}

// TestColdTierFencedProduce: two servers on one prefix of the cold store.
// The second is fenced out once the first writes the manifest after it
// read it; from then on a produce to the second answers
// KAFKA_STORAGE_ERROR (retriable) with a message naming the fencing,
// instead of storing records it can never upload.
func TestColdTierFencedProduce(t *testing.T) {
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seg, local := "4096", "8192"
	cfg := map[string]*string{"remote.storage.enable": kadm.StringPtr("true"), "segment.bytes": &seg, "local.retention.bytes": &local}
	brokers := make([]*testBroker, 2)
	clients := make([]*kgo.Client, 2)
	for i := range brokers {
		brokers[i] = startColdBroker(t, t.TempDir(), store)
		clients[i] = newClient(t, brokers[i].addr)
		if resp, err := kadm.NewClient(clients[i]).CreateTopic(ctx, 1, 1, cfg, "fenced"); err != nil || resp.Err != nil {
			t.Fatalf("CreateTopic on server %d: %v %v", i, err, resp.Err)
		}
	}
	produce := func(i int) (int16, string) {
		req := produceRequest("fenced", []byte(strings.Repeat("v", 500)))
		resp, err := req.RequestWith(ctx, clients[i])
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		var msg string
		if p.ErrorMessage != nil {
			msg = *p.ErrorMessage
		}
		return p.ErrorCode, msg
	}
	// The first server writes the manifest the second has read.
	for i := range 40 {
		if code, msg := produce(0); code != 0 {
			t.Fatalf("produce %d to the first server: error %d %s", i, code, msg)
		}
	}
	fenced := func(b *testBroker) bool {
		for _, p := range b.hub.Stats() {
			if p.Dataset == "fenced" && p.Tier.Fenced {
				return true
			}
		}
		return false
	}
	var code int16
	var msg string
	for i := 0; i < 500 && code == 0; i++ {
		if code, msg = produce(1); code == 0 && i > 40 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code != kerr.KafkaStorageError.Code || !strings.Contains(msg, "another server owns the cold tier's prefix") {
		t.Fatalf("produce to the fenced server: error %d %q; want KAFKA_STORAGE_ERROR naming the fencing", code, msg)
	}
	if !fenced(brokers[1]) || fenced(brokers[0]) {
		t.Fatal("want the second server fenced, the first not")
	}
	if code, msg := produce(0); code != 0 {
		t.Fatalf("produce to the first server after the fencing: error %d %s", code, msg)
	}
}
