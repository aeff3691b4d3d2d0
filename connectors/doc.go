// Package connectors owns the connector model of Weir's pipelines: the
// Message that flows through them, the Source, Processor and Sink
// interfaces with their contracts (batches, acknowledgements, per-message
// failures), and the Registry of named components. Each component declares
// its configuration once, as a Spec of typed fields with defaults, docs and
// an example; that declaration drives config decoding and validation (with
// line and column), `weir list`, the generated docs and the JSON Schema
// editors use.
//
// The package imports no concrete connector: sources and sinks register
// themselves from their own packages, processors from pipelines.
//
// # Acknowledgements
//
// A Source hands over batches with an AckFunc. The runtime calls it once
// the batch is stored in its dataset (with nil) or has failed for good
// (with the error); a source advances its own checkpoint only on a nil
// ack, so a crash replays what was not acknowledged: at least once.
//
// A Sink's Write returns nil when every message of the batch was
// delivered, a *WriteError naming the messages that failed (the others
// were delivered), or any other error when none was. Errors are transient
// unless marked permanent (Permanent, or a Failure that is not
// Retryable): the runtime retries transient ones with capped exponential
// backoff, holding the pipeline back, without limit by default (a sink's
// retry.attempts bounds it), and sends permanent ones to the pipeline's
// dead-letter dataset at once, with the reason; a dataset position is committed
// only once every message before it was delivered, dropped by a
// processor, or dead-lettered.
package connectors
