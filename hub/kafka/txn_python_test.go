package kafka

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// confluentTxnScript produces with librdkafka's transactional producer
// (committed, aborted, committed) and reads the topic back with a
// read_committed consumer, printing each value it sees.
const confluentTxnScript = `
import sys, time
from confluent_kafka import Producer, Consumer
bs, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": bs, "transactional.id": "py-txn", "transaction.timeout.ms": 10000})
p.init_transactions(10)
for prefix, n, commit in (("c1", 10, True), ("a", 10, False), ("c2", 5, True)):
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, key=str(i), value="%s-%d" % (prefix, i))
    p.flush(10)
    if commit:
        p.commit_transaction(10)
    else:
        p.abort_transaction(10)
c = Consumer({"bootstrap.servers": bs, "group.id": "py-rc", "isolation.level": "read_committed",
              "auto.offset.reset": "earliest", "enable.partition.eof": False})
c.subscribe([topic])
seen, deadline = 0, time.time() + 20
while time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        if seen >= 15:
            break
        continue
    if m.error():
        print("error", m.error(), file=sys.stderr)
        continue
    seen += 1
    print(m.value().decode())
c.close()
`

func runPython(t *testing.T, script string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{"-c", script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python client: %v\n%s\n(the test needs the Debian package python3-confluent-kafka: make test-deps)", err, stderr.String())
	}
	lines := strings.Fields(string(out))
	sort.Strings(lines)
	return lines
}

// TestTransactionsPythonClients: librdkafka's transactional producer
// (confluent-kafka) commits and aborts; its read_committed consumer never
// sees the aborted records. (Debian's kafka-python, 2.0.2, has no
// read_committed consumer.)
func TestTransactionsPythonClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real Kafka clients; skipped with -short")
	}
	b := startBroker(t, t.TempDir(), Options{})
	adm, _, ctx := adminClient(t, b.addr)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "pytxn"); err != nil {
		t.Fatal(err)
	}
	check := func(client string, got []string) {
		t.Helper()
		if len(got) != 15 {
			t.Fatalf("%s read_committed got %d records, want 15: %v", client, len(got), got)
		}
		for _, v := range got {
			if !strings.HasPrefix(v, "c") {
				t.Fatalf("%s read_committed got the aborted record %q", client, v)
			}
		}
	}
	check("confluent-kafka", runPython(t, confluentTxnScript, b.addr, "pytxn"))
	if all := consumeAll(t, b.addr, "pytxn", kgo.ReadUncommitted(), 25); len(all) != 25 {
		t.Fatalf("read_uncommitted got %d records, want 25", len(all))
	}
}
