// Package sinks owns Weir's concrete sinks: one file per connector,
// registered by name into connectors.Default from init. A pipeline names
// them in its `to:` list; the package is imported for its side effect.
//
//	elasticsearch  the Bulk API: daily indices, ids that make a redelivery
//	        overwrite, rejected documents to the dead-letter dataset
//	stdout  each record as a line on standard output (value or JSON)
//	file    archive files from a path template, lines or NDJSON, gzip or
//	        zstd, rotated by size and age, fsync policy, an LRU of open files
//	http    batches POSTed as NDJSON, split by size, optionally gzipped
//	dataset another hub dataset through the pipeline's hub client, keeping
//	        key, headers and time, compressed as the dataset says; a write
//	        returns once it is durable
//	kafka   a topic (or a template of topics) of an external Kafka cluster,
//	        acks=all and idempotent by default, compression, SASL and TLS
//	parquet Hive-partitioned Parquet files from a directory template, local
//	        or S3; inferred or declared columns; exactly once: the pipeline
//	        commits no record of an unfinished file (connectors.Holder) and
//	        file names come from offsets; memory bounded by bytes
//	webhook change events POSTed as the http sink does, HMAC-SHA256 signed
//	        (Weir-Signature), with the last event's id (Weir-Event-Id)
//	redis   each record PUBLISHed as a change event, or a Redis cache kept
//	        in step (UNLINK, DEL or SET), one pipeline a batch
//
// # Contract
//
// Every sink implements connectors.Sink. Write is called by one goroutine
// at a time; the messages of a batch are shared with the pipeline's other
// sinks, so a sink never modifies them (it does not even parse them
// through Message.Fields, which caches into the message), and their bytes
// are valid only until Write returns. Write returns nil when every message
// was delivered, a *connectors.WriteError naming the messages that failed
// for a reason of their own, or a plain error when the whole batch failed
// and is worth retrying. Close flushes, releases everything the sink
// holds, and may be called more than once.
//
// Constructors only check and store their configuration: they open no
// file and no connection, so that `weir lint` can build them.
//
// The package imports no source (see internal/lint).
package sinks
