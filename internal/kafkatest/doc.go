// Package kafkatest is a client conformance suite for Kafka-compatible
// brokers: it proves that a broker works with the real clients Weir's users
// run, not just with the Go client it was written against.
//
// The package owns the client side of those tests: the cases, the Python
// helper scripts they run (embedded from testdata/), and the checks with
// their failure messages. It does not own any broker. Callers hand [Run] a
// function that starts one, and the package's own test runs the suite
// against franz-go's in-memory fake cluster, kfake, so that a failing case
// against Weir points at Weir and not at the suite.
//
// # Clients
//
//   - kcat (Debian kcat) and confluent-kafka-python (Debian
//     python3-confluent-kafka), both librdkafka 2.0.2;
//   - kafka-python (Debian python3-kafka, with python3-snappy, python3-lz4
//     and python3-zstandard for its codecs), run with /usr/bin/python3;
//   - franz-go kgo and kadm, in process.
//
// A case that needs a missing tool fails and names the Debian package to
// install (`make test-deps`); it never skips silently.
//
// # Cases
//
// Each is a subtest of [Run] with its own broker from start:
//
//	metadata              kcat -L -J, kafka-python and confluent list a topic
//	produce-codecs        every client × none/gzip/snappy/lz4/zstd, read back
//	                      by every client, and the codec as stored
//	consume-from-offset   every client reads a partition from offset 42
//	group-commit-resume   a group commits, closes, and a new member resumes
//	                      exactly there (across Broker.Restart when set)
//	group-since           a new group starts an hour ago, processes five
//	                      records, commits; the commit is an offset and a new
//	                      member resumes there
//	rebalance             a second member joins: disjoint cover, no loss
//	create-delete-topics  kadm, kafka-python and confluent admin clients;
//	                      producing to deleted and to never-created topics
//	alter-configs         kafka-python and confluent AlterConfigs, read back
//	                      by their DescribeConfigs and kadm's; kafka-python
//	                      DeleteGroups
//	idempotent-retry      idempotent producers, a replayed batch, and an
//	                      out-of-order sequence
//	kcat-idempotent       librdkafka enable.idempotence=true acks=all
//
// Topic and group names carry the case name and a random token per [Run],
// so cases may share one broker. Broker.Skip takes case and subtest names
// as they appear in `go test -v` below Run.
//
// # Running it
//
// The package's own tests run the suite against kfake (TestKfake, and
// TestKfakeNoAutoCreate for a broker without auto-creation). TestExternal
// runs it against any running broker, a real Kafka included:
//
//	go test ./internal/kafkatest -run TestExternal -args -kafkatest.addr=127.0.0.1:9092 -kafkatest.autocreate
//
// # Timing
//
// Every external process and every wait is bounded (see opTimeout); nothing
// sleeps for a fixed time. Polling loops in Go and in the scripts run until
// a deadline.
package kafkatest
