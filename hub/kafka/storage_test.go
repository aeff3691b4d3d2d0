package kafka

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
	wlog "github.com/weirhub/weir/log"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStorageErrorsReachTheClient: CreateTopics on a disk that fills up
// mid-create, and Produce to a full disk, answer KAFKA_STORAGE_ERROR with a
// message naming the cause (not UNKNOWN_SERVER_ERROR), the server log says
// why, and the half-created topic does not exist.
func TestStorageErrorsReachTheClient(t *testing.T) {
	var opensLeft atomic.Int64
	var full atomic.Bool
	opensLeft.Store(1 << 30)
	fsys := &wlog.FaultFS{FS: wlog.OSFS(), Fail: func(op, path string) error {
		if !strings.Contains(path, string(filepath.Separator)+"t"+string(filepath.Separator)) {
			return nil
		}
		if op == "open" && opensLeft.Add(-1) < 0 || op == "write" && full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), FS: fsys, Logger: logger, DisableAutoCreate: true,
		Defaults: hub.DatasetConfig{Fsync: "always", SegmentBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, Options{Logger: logger})
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		h.Close()
	}()
	cl := newClient(t, ln.Addr().String())
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	opensLeft.Store(30)
	res, err := adm.CreateTopic(ctx, 100, 1, nil, "t")
	if err != nil && res.Err == nil {
		t.Fatal(err)
	}
	if res.Err != kerr.KafkaStorageError || !strings.Contains(res.ErrMessage, "no space left on device") {
		t.Fatalf("CreateTopics on a full disk = %v %q, want KAFKA_STORAGE_ERROR naming the cause", res.Err, res.ErrMessage)
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Fatalf("the server log does not say why:\n%s", logs.String())
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("t") {
		t.Fatal("the half-created topic exists")
	}

	opensLeft.Store(1 << 30)
	if res, err := adm.CreateTopic(ctx, 2, 1, nil, "t"); err != nil || res.Err != nil {
		t.Fatalf("CreateTopics with room = %v, %v", res.Err, err)
	}
	full.Store(true)
	var b = newBatch()
	b.Append(time.Now().UnixMilli(), nil, []byte("does not fit"), nil)
	records, _ := b.Build()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = 0, records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	out := resp.Topics[0].Partitions[0]
	if out.ErrorCode != kerr.KafkaStorageError.Code || out.ErrorMessage == nil || !strings.Contains(*out.ErrorMessage, "no space left on device") {
		t.Fatalf("Produce to a full disk = %v %v, want KAFKA_STORAGE_ERROR naming the cause", kerr.ErrorForCode(out.ErrorCode), out.ErrorMessage)
	}
	if !strings.Contains(logs.String(), "produce failed to store") {
		t.Fatalf("the server log does not report the failed produce:\n%s", logs.String())
	}
}
