// Package kafka is the Kafka wire protocol front door of a hub.Hub: it
// accepts client connections, decodes requests and encodes responses with
// franz-go's kmsg, and answers them from the hub. It holds no state of its
// own beyond connections.
//
// # Connections
//
// Each connection has a reader that decodes and handles requests in the
// order they arrive, and a writer that sends the responses in that same
// order. The reader takes up to 4 KiB from the socket at a time, so a small
// request costs one read(2); the writer sends the responses that are ready
// behind the one it writes with it, in one write(2). A response computed at
// once to a request that came alone, while the writer owes nothing (a
// tailing producer's produce), is written by the reader itself, so that
// the answer does not wait for the writer to be woken. A request that waits
// (a produce with acks=all to a dataset with fsync "always", a group join)
// completes in its own goroutine while later requests are handled; the
// writer holds their responses back until it is their turn. A fetch whose
// records are there when it arrives is answered by the reader the same
// way; one that must wait is waited for by the writer when it is next, so
// that the produce that ends the wait wakes the goroutine that writes the
// answer. Requests larger than their API's limit, garbage, unknown
// API keys and unsupported versions close the connection (ApiVersions
// answers a version it does not know with its own list, as Kafka does).
//
// # Hostile clients
//
// Anyone who can connect can send anything, so what one client may cost is
// bounded before authentication and before decoding (limits.go):
//
//   - every record of every produced batch is checked (codecs.CheckProduced:
//     framing, count, offset deltas, decompressed size at most 16 times the
//     dataset's max.message.bytes) and a bad batch answered CORRUPT_MESSAGE
//     or MESSAGE_TOO_LARGE, stored not at all;
//   - Produce may be MaxRequestBytes, anything else 1 MiB; a Produce is
//     walked before kmsg decodes it, so its claimed counts must fit its
//     bytes and decoding it costs at most twice its size (plus 64 KiB);
//   - bodies are read into buffers that grow as bytes arrive, charged to
//     QueuedMaxRequestBytes, within a deadline that grows with their size;
//   - MaxConnectionsPerIP caps one address; a connection that sends no
//     request within FirstRequestTimeout is closed, and at MaxConnections
//     the oldest such connection makes room for a new one;
//   - refusals are counted (Stats) and logged once per 10 s per kind; a
//     storage failure (a full disk) is logged once at ERROR.
//
// # Zero-copy fetch
//
// Fetch responses are framed by hand so that the record batches, stored
// exactly as the wire carries them, go from the segment files to the
// socket with sendfile: the broker never reads or decompresses them.
//
// # Security
//
// Options.Security configures a listener: TLS (TLSReloader rebuilds the
// configuration when the certificate files change; fetches then take a
// buffered copy instead of sendfile), SASL PLAIN and SCRAM-SHA-256/512
// with KIP-368 re-authentication, credentials checked against
// internal/auth's store and managed with Describe/AlterUserScramCredentials,
// OAUTHBEARER with JWTs validated by auth.OAuth (a session ends when its
// token does),
// and ACLs in Kafka's model checked before every handler (acl.go). A
// connection on a SASL listener may send only ApiVersions and SASL
// requests, of at most 64 KiB, until it has authenticated; failed
// authentications are logged and limited per address.
//
// # Versions
//
// The API keys and versions advertised are those kcat, librdkafka,
// kafka-python, franz-go, sarama and kafkajs need (internal/kafkatest
// runs them against the server), plus CreatePartitions and
// DescribeConfigs for tooling, and the transaction APIs (txn.go:
// InitProducerId with a transactional id, AddPartitionsToTxn,
// AddOffsetsToTxn, TxnOffsetCommit, EndTxn, Describe/ListTransactions),
// whose coordinator is the hub.
//
// # Metrics
//
// Options.Observer is told of every request answered (API key, version,
// time from reading the request to writing its response) and, when it
// implements ErrorObserver, of the error codes in the responses. The
// package imports no metrics library; cmd/weir has the Prometheus adapter.
package kafka
