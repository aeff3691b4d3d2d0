// Package sources owns Weir's concrete sources: one file per connector,
// registered by name into connectors.Default from init. A pipeline file
// names them under `sources:`; the package is imported for its side
// effect.
//
//	file      files matched by globs, tailed across rotation (rename,
//	          copytruncate, compressed rotations), with checkpoints so that
//	          no line is lost or repeated across restarts
//	syslog    syslog over UDP, TCP and TLS (RFC 5424, RFC 3164, RFC 5425
//	          framing), parsed into JSON fields
//	stdin     lines (or NDJSON) from standard input, batched by size and time
//	generate  synthetic web access-log records, seeded and reproducible, at a
//	          rate or as fast as possible (for demos, tests and benchmarks)
//	http      an HTTP endpoint taking NDJSON or JSON bodies; a request is
//	          answered once its records are stored (204) or failed (503)
//	dataset   other hub datasets, in a consumer group or broadcast, through
//	          the pipeline's hub client; positions committed once stored
//	kafka     topics of an external Kafka cluster in a consumer group;
//	          offsets committed once stored, rebalances wait for the acks
//
// The dataset and kafka sources commit positions in the order batches
// were read, whatever order they are acknowledged in, through
// internal/ackq.
//
// # Contract
//
// Every source implements connectors.Source. Read is called by one
// goroutine at a time and returns one batch with its AckFunc; the
// messages and their bytes belong to the caller from then on (a source
// never reuses them). A finite source returns connectors.ErrEndOfInput
// after its last batch. A source that must bind or connect does so in
// Connect (connectors.Connector), not in its constructor, so that building
// one has no effect outside it. Close releases every goroutine, file and
// socket, and may be called more than once.
//
// The package imports no sink (see internal/lint).
package sources
