package kafka

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/kafkatest"
)

// TestRealClients runs the client conformance suite (kcat, kafka-python,
// confluent-kafka/librdkafka, franz-go) against a Weir broker: a hub with
// fsync always behind this package's server, restarted on the same
// address and data directory when a case asks for it.
func TestRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real Kafka clients; skipped with -short")
	}
	kafkatest.Run(t, func(t *testing.T) kafkatest.Broker {
		dir := t.TempDir()
		b := &restartable{dir: dir}
		b.start(t, "127.0.0.1:0")
		t.Cleanup(b.stop)
		return kafkatest.Broker{Addr: b.addr, AutoCreate: true, Restart: func(t *testing.T) {
			b.stop()
			b.start(t, b.addr)
		}}
	})
}

type restartable struct {
	dir  string
	addr string
	h    *hub.Hub
	srv  *Server
	done chan error
}

func (b *restartable) start(t *testing.T, addr string) {
	t.Helper()
	h, err := hub.Open(hub.Options{DataDir: b.dir, Defaults: hub.DatasetConfig{Fsync: "always", SegmentBytes: 8 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, Options{})
	var ln net.Listener
	for i := 0; ; i++ { // the old listener's port may take a moment to free
		if ln, err = srv.Listen(addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	b.h, b.srv, b.addr, b.done = h, srv, ln.Addr().String(), make(chan error, 1)
	go func() { b.done <- srv.Serve(ln) }()
}

func (b *restartable) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.srv.Shutdown(ctx)
	<-b.done
	b.h.Close()
	b.srv = nil
}
