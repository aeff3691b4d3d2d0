// Package pipelines owns Weir's declarative pipelines: loading a YAML file
// (with ${VAR} interpolation and every problem reported as
// file:line:col: message), the processors, and the runtime that moves
// records from sources into datasets and from datasets through processors
// to sinks.
//
// # The file
//
//	hub: {data_dir: ./data}            # or hub: {kafka: {brokers: [host:9092]}}
//	datasets:
//	  access: {partitions: 4, retention: {time: 7d, bytes: 10GiB}}
//	sources:
//	  web: {file: {paths: ["/var/log/web/*.log"]}, to: access, key: host}
//	pipelines:
//	  archive:
//	    from: access                   # consumer group = pipeline name
//	    processors:
//	      - parse: json
//	      - filter: 'level != "debug"'
//	      - set: {env: '"prod"', latency_s: 'latency_ms / 1000.0'}
//	    to:
//	      - file: {path: "/archive/access-{{ .date }}.ndjson.zst"}
//	    dead_letter: access-dead
//
// Components are looked up in a connectors.Registry; the package knows no
// concrete source or sink.
//
// # The runtime
//
// A source's batches run through its processors and are written durably
// to its dataset before they are acknowledged. A pipeline polls its
// datasets (as a member of its consumer group, or as a broadcast reader),
// letting the hub gather batches on disk (fetch min bytes and max wait
// come from the sinks' batching), runs the processors, hands every record
// to every sink (or those a route picks) at once, retries transient write
// failures (a 500, a full disk) with capped exponential backoff and
// jitter, without limit unless the sink's retry.attempts bounds it,
// holding the pipeline back meanwhile; it sends records that fail for
// good (connectors.Permanent: a mapping error, a record the sink cannot
// encode) to the dead-letter dataset at once with headers saying why, and
// only then commits the positions: at least once, end to end.
//
// Counters (Engine.Stats) count each record once: delivered (Out),
// dropped on purpose by a processor (Dropped, per processor too), or
// dead-lettered (Dead); Retried counts records written again after a
// transient failure, Skipped records that retention deleted before the
// pipeline read them (logged as a WARN too), Corrupt the offsets of
// stored batches that could not be decoded, and Lag is the group's lag,
// records in hand included. Memory is bounded by one poll; a
// slow sink slows polling and the backlog stays on disk in the hub.
//
// A stored batch that cannot be decoded (an old log, a disk error) stops
// a pipeline at it by default, logged as an ERROR, and an --until-drained
// run fails. With on_corrupt: dead_letter the pipeline sends one record
// describing the batch (dataset, partition, base_offset, last_offset,
// reason; JSON, stage "read") to its dead-letter dataset, counts it in
// Dead and its offsets in Corrupt, commits past it and reads on.
//
// With processing: exactly_once (exactlyonce.go) the writes of a poll
// (dataset sinks, dead letters, retry datasets) and its offsets commit in
// one transaction of the hub; a failure aborts it and the poll is written
// again, and a restart fences the run before it. Only sinks whose Spec is
// Transactional can take part, or one sink alone whose Spec has
// OwnTransactions (kafka): its connectors.TxnSink runs the transaction on
// its own cluster, where the source positions are written with the
// records and read back at start (resumeAt copies them to the hub's group).
//
// On stop, sources stop first (what they read is stored and acknowledged,
// or not acknowledged), then each pipeline finishes the batch in hand and
// commits it; a batch it cannot finish is not committed and is read again
// on the next start.
//
// # Records without maps
//
// Values stay bytes until a processor needs fields; then they are parsed
// once with valyala/fastjson into pooled memory (chosen by benchmark, see
// BenchmarkJSONLibraries), edited in place, and written back once before
// the sinks. Filters and routes that compare fields with constants are
// evaluated on the parsed JSON directly; other expressions use
// expr-lang/expr with only the fields they name loaded.
package pipelines
