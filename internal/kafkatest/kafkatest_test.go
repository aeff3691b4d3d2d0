package kafkatest

import (
	"context"
	"flag"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	stockKfake = flag.Bool("kfake.stock", false,
		"run against kfake exactly as shipped, without advertising Produce v0; "+
			"the librdkafka wire-codec checks that this breaks are skipped")
	externalAddr = flag.String("kafkatest.addr", "",
		"host:port of a running broker for TestExternal (empty: skip it)")
	externalAutoCreate = flag.Bool("kafkatest.autocreate", false,
		"whether the -kafkatest.addr broker auto-creates topics")
)

// TestKfake runs the suite against franz-go's in-memory fake cluster, the
// reference: a case that fails here is wrong, not the broker.
func TestKfake(t *testing.T) {
	Run(t, func(t *testing.T) Broker { return startKfake(t, true) })
}

// TestKfakeNoAutoCreate runs the one case whose assertions depend on
// Broker.AutoCreate against a kfake that does not auto-create topics.
func TestKfakeNoAutoCreate(t *testing.T) {
	runCases(t, func(t *testing.T) Broker { return startKfake(t, false) }, []string{"create-delete-topics"})
}

// TestExternal runs the suite against a broker that is already running,
// such as a real Kafka to compare with, when -kafkatest.addr names one:
//
//	go test ./internal/kafkatest -run TestExternal -args -kafkatest.addr=127.0.0.1:9092 -kafkatest.autocreate
//
// All cases share that broker; its state is not reset and it is not
// restarted.
func TestExternal(t *testing.T) {
	if *externalAddr == "" {
		t.Skip("no -kafkatest.addr given")
	}
	Run(t, func(t *testing.T) Broker { return Broker{Addr: *externalAddr, AutoCreate: *externalAutoCreate} })
}

// librdkafkaUncompressed are the wire-codec checks kfake as shipped fails:
// it advertises Produce from v3, and librdkafka 2.0.2 then sends gzip,
// snappy and lz4 batches uncompressed (measured: every batch codec none;
// zstd is unaffected): librdkafka compresses with those codecs only when
// the broker offers Produce from v0.
var librdkafkaUncompressed = []string{
	"produce-codecs/wire-codec/kcat-gzip", "produce-codecs/wire-codec/kcat-snappy", "produce-codecs/wire-codec/kcat-lz4",
	"produce-codecs/wire-codec/confluent-gzip", "produce-codecs/wire-codec/confluent-snappy", "produce-codecs/wire-codec/confluent-lz4",
}

// startKfake starts a one-broker kfake cluster that persists to a temporary
// directory, so that Restart can stop it and start it again on the same
// port with its data.
func startKfake(t *testing.T, autoCreate bool) Broker {
	t.Helper()
	k := &kfakeBroker{opts: []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(t.TempDir())}}
	if autoCreate {
		k.opts = append(k.opts, kfake.AllowAutoTopicCreation())
	}
	k.start(t)
	t.Cleanup(k.close)
	b := Broker{Addr: k.addr, Restart: k.restart, AutoCreate: autoCreate, Skip: map[string]string{
		// Verified: kafka-python asks for topics with Metadata v1, which has
		// no AllowAutoTopicCreation field (Kafka auto-creates for v0-3 when
		// it is enabled), and kfake auto-creates only when the field is
		// true; kafka-python's send() then waits for metadata until its
		// max_block_ms.
		"create-delete-topics/auto-create/kafka-python": "kfake does not auto-create topics for Metadata v0-3 requests (kafka-python sends v1)",
	}}
	if *stockKfake {
		for _, name := range librdkafkaUncompressed {
			b.Skip[name] = "kfake advertises Produce v3+, so librdkafka 2.0.2 sends gzip, snappy and lz4 uncompressed"
		}
	}
	return b
}

// kfakeBroker is a kfake cluster that can be restarted.
type kfakeBroker struct {
	mu   sync.Mutex
	opts []kfake.Opt
	c    *kfake.Cluster
	port int
	addr string
}

func (k *kfakeBroker) start(t *testing.T) {
	t.Helper()
	opts := slices.Clone(k.opts)
	if k.port != 0 {
		opts = append(opts, kfake.Ports(k.port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	k.c = c
	k.addr = c.ListenAddrs()[0]
	_, port, err := net.SplitHostPort(k.addr)
	if err == nil {
		k.port, err = strconv.Atoi(port)
	}
	if err != nil {
		t.Fatalf("kfake address %q: %v", k.addr, err)
	}
	if !*stockKfake {
		advertiseProduceV0(t, c, k.addr)
	}
}

// restart closes the cluster, which saves its state to the data directory,
// and starts a new one on the same port from that directory.
func (k *kfakeBroker) restart(t *testing.T) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.c.Close()
	k.start(t)
}

func (k *kfakeBroker) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.c.Close()
}

// advertiseProduceV0 makes kfake advertise Produce from version 0, as
// Weir does (librdkafka 2.0.2 compresses with gzip, snappy or lz4 only
// then). It asks kfake for its ApiVersions once and from then on
// answers ApiVersions with that response, Produce's minimum lowered to 0.
// kfake still rejects Produce v0-2 requests, which no client here sends.
func advertiseProduceV0(t *testing.T, c *kfake.Cluster, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatalf("franz-go client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("kfake ApiVersions: %v (error code %d)", err, resp.ErrorCode)
	}
	var maxVersion int16
	for i, k := range resp.ApiKeys {
		switch kmsg.Key(k.ApiKey) {
		case kmsg.Produce:
			resp.ApiKeys[i].MinVersion = 0
		case kmsg.ApiVersions:
			maxVersion = k.MaxVersion
		}
	}
	c.ControlKey(int16(kmsg.ApiVersions), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req.GetVersion() > maxVersion {
			return nil, nil, false // kfake answers with its v0 downgrade
		}
		out := *resp
		out.ApiKeys = slices.Clone(resp.ApiKeys)
		out.SetVersion(req.GetVersion())
		return &out, nil, true
	})
}
