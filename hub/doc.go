// Package hub owns Weir's broker, usable in-process: datasets (topics) of
// partitions, each a commit log; producing with acks and idempotent
// producer de-duplication; Kafka transactions (txn.go) and delayed
// delivery (delay.go); fetching with long polls; consumer groups with
// committed offsets; broadcast subscriptions; retention scheduling. It
// knows nothing of the network or of YAML: hub/kafka puts the Kafka wire
// protocol in front of it, and pipelines use it through Client.
//
// # Data directory
//
//	DATA/meta.json                       cluster id, producer id allocation
//	DATA/datasets/NAME/dataset.json      id, creation time, configuration
//	DATA/datasets/NAME/P/                partition P: a log.Log directory
//	DATA/datasets/NAME/P/producers.snapshot  producer sequence state
//	DATA/groups/offsets/                 committed offsets: a log of commits
//	DATA/transactions/state.log          transaction coordinator: one JSON line per change
//	DATA/datasets/__delay.NAME/P/delayindex/  pending delayed records of NAME: bucket files by due time (delayindex.go)
//
// # Guarantees
//
// Records of one partition keep their order. With a dataset's fsync policy
// "always", a produce with acks=all (or 1; there is one replica) returns
// only once its records are on disk, and consumers see records only once
// they are. A retried batch from an idempotent producer (same producer id,
// epoch and sequence as one of its last five batches) is stored once and
// answered with its original offset. Committed offsets are on disk before
// the commit returns.
//
// # Metrics
//
// The hub imports no metrics library. Stats and GroupStats return
// snapshots (offsets, sizes, append and fetch counters, group positions
// and lag) cheap enough to read at every scrape, and Options.Observer is
// told of events that need a histogram (fsync durations). cmd/weir turns
// both into Prometheus metrics.
//
// # Compaction and subscriptions
//
// A dataset whose cleanup policy includes compact (Kafka's cleanup.policy)
// has its partitions compacted every CompactInterval by log.Log.Compact:
// the latest record of each key stays, offsets are kept, tombstones go
// after DeleteRetention. Subscribe serves cache sync on top: the latest
// value of every key as of the call (whether or not compaction has run),
// EventSnapshotEnd, then every change, each event with a token that
// resumes after it. A token that cannot be resumed (another dataset's,
// below the log start, or below the delete horizon, where tombstones were
// compacted away) gets EventReset and a fresh snapshot, never a gap. The
// subscriptions of a dataset share one reader (fanout.go) that reads and
// encodes each live event once into a bounded window they follow at their
// own pace (one caught up whose connection can be written without
// blocking is written by a few writers the dataset's subscriptions share,
// one write each for all the events since its last: direct.go); one that
// falls out of the window catches up from the log,
// coalesced to the latest value of each key, or is told to resume, so a
// slow one costs the others and the producers nothing but its reads;
// hub/http serves subscriptions as Server-Sent Events and WebSockets.
package hub
