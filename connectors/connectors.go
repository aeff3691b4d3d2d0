package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/weirhub/weir/hub"
)

// ErrEndOfInput is returned by Source.Read when a finite source (a file
// read once, stdin) has nothing more; the runtime then stops that source
// after its last batch is acknowledged.
var ErrEndOfInput = errors.New("connectors: end of input")

// ErrUnavailable marks an error meaning the other end cannot be reached
// (connection refused, a cluster down): the runtime then retries without
// limit, holding the pipeline back with nothing committed, instead of
// sending records to the dead-letter dataset. Wrap errors with Unavailable.
var ErrUnavailable = errors.New("connectors: unavailable")

// Unavailable wraps err as ErrUnavailable.
func Unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

// ErrPermanent marks an error that retrying cannot fix: a record the sink
// cannot encode, a document the server refuses for its content (a 400
// mapping error). The runtime sends such records to the dead-letter
// dataset at once. Every other error of a Sink's Write is transient (a
// 500, a full disk, a timeout): the runtime retries it with capped
// exponential backoff, holding the pipeline back, without limit unless
// the sink's retry.attempts bounds it. Wrap errors with Permanent.
var ErrPermanent = errors.New("connectors: permanent error")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds; its
// text stays err's.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

// AckFunc is called once for a batch a Source handed over: with nil once
// it is stored, with the error if it failed for good. It must be safe to
// call from any goroutine. By then the runtime and the processors hold no
// reference to the batch's messages or to the memory of their Key, Value
// and Headers, so the source may use that memory again (stdin does).
type AckFunc func(ctx context.Context, err error) error

// Source reads records from outside into a pipeline's dataset.
//
// Read blocks until a batch is ready or ctx ends, and may be called again
// before earlier batches are acknowledged: a source bounds how many it has
// outstanding itself, which is how a full hub pushes back. A message the
// source could not read properly (malformed input) comes with Err set: it
// goes to the dead-letter dataset with that reason, never into the void.
// Close releases the source; Read is not called after it.
type Source interface {
	Read(ctx context.Context) ([]*Message, AckFunc, error)
	Close(ctx context.Context) error
}

// Processor transforms a batch. It returns the messages that go on, in
// order; dropping a message (a filter) is leaving it out. A message it
// cannot process stays in the output with Err set: the runtime sends it to
// the dead-letter dataset. A returned error fails the whole batch (the
// runtime retries it). A processor that remembers something of a message
// across batches (dedupe's keys) copies it: once a batch is stored its
// source may reuse the messages' memory (AckFunc).
type Processor interface {
	Process(ctx context.Context, batch []*Message) ([]*Message, error)
}

// Sink writes batches out of a pipeline.
//
// Write returns nil when every message was delivered, a *WriteError when
// some failed (the others were delivered), or any other error when none
// was. An error is transient (retried) unless it is marked with
// Permanent; in a WriteError, a Failure is permanent unless Retryable. The sinks of a pipeline get the same messages at once: a sink must
// not modify them nor call their Fields, Get or Set (read fields with a
// FieldReader of its own). Close flushes and releases the sink.
type Sink interface {
	Write(ctx context.Context, batch []*Message) error
	Close(ctx context.Context) error
}

// Connector is an optional interface of sources and sinks that must
// connect before use. Connect's ctx bounds connecting only. The runtime
// retries a failed Connect with backoff, logging the error, unless the
// error is permanent (Permanent): a listener that cannot bind its
// address fails the run at its start.
type Connector interface {
	Connect(ctx context.Context) error
}

// TxnSink is an optional interface of sinks that write to a cluster of
// their own (Spec.OwnTransactions): a pipeline running exactly once calls
// StartTxn before it reads, and the sink's writes go into the returned
// producer's open transaction from then on. The pipeline commits its
// source positions through the producer's SendOffsets, so the records
// and the positions they were read up to commit together on the sink's
// cluster (Kafka Connect's exactly-once design). StartTxn fences an
// earlier producer with the id and aborts what it left open, then
// returns the positions the last committed transaction left: where
// reading resumes.
type TxnSink interface {
	StartTxn(ctx context.Context, id, group string) (tx hub.TxnProducer, positions map[hub.TopicPartition]int64, err error)
}

// Holder is an optional interface of sinks that acknowledge a Write
// before its records are durable where they are going, such as the
// parquet sink, whose records wait in a file that is renamed into place
// only when finished. The runtime commits no source offset past what a
// Holder holds, so that after a crash (kill -9 included) the records it
// held are delivered again; the sink recognises those it already
// published and skips them. Held calls fn, for each dataset partition it
// holds records of, with the lowest offset it holds (also of records it
// lost, see ErrRedeliver, until a Write returned that error). Flush makes
// every held record durable, after which Held reports none; the runtime
// calls it on a graceful stop before its last commit. Both are called
// from the pipeline's goroutine, concurrently with the sink's own timers.
type Holder interface {
	Held(fn func(dataset string, partition int32, offset int64))
	Flush(ctx context.Context) error
}

// Releaser is an optional interface of Holders whose records are read by
// a consumer group: Release drops, without publishing them, the records
// the sink holds of these dataset partitions, because they are moving to
// another member of the group, and forgets what it knew of their
// published output (it looks again when their records come back). The
// runtime calls it when the group revokes the partitions, before they are
// handed over, and commits none of their held offsets after that: their
// new owner reads the dropped records again from the committed offsets,
// and two members never publish the same records (Kafka Connect's S3 sink
// discards its open files on revocation alike). Release may be called
// from any goroutine (a client's rebalance callback), but never while a
// Write of the same runner is in progress; it must not block on I/O.
type Releaser interface {
	Release(partitions []hub.TopicPartition)
}

// ErrRedeliver marks a Write error of a Holder that lost records it had
// acknowledged but the runtime had not committed (an I/O error dropped
// the file that held them). The runtime then reads again from the
// offsets it committed and delivers every record after them to the
// pipeline's sinks; nothing of the failed poll is committed. Wrap errors
// with Redeliver.
var ErrRedeliver = errors.New("connectors: held records lost; deliver again from the committed offsets")

// Redeliver wraps err as ErrRedeliver.
func Redeliver(err error) error { return fmt.Errorf("%w: %w", ErrRedeliver, err) }

// Budgeter is an optional interface of components whose memory their
// configuration bounds: MemoryBudget is the most bytes they hold (the
// parquet sink's memory_bytes). weir run adds the budgets up into the
// process's soft memory limit. It is called once, after construction.
type Budgeter interface {
	MemoryBudget() int64
}

// Drainer is an optional interface of sources whose input cannot be read
// again, such as syslog: on a graceful stop the runtime calls Drain instead
// of cancelling Read's context. The source stops taking input, hands on
// through Read what it already took, then returns ErrEndOfInput. The
// runtime gives up waiting after its drain timeout.
type Drainer interface {
	Drain()
}

// Lagger is an optional interface of sources that read from something
// with end offsets (a Kafka topic): Lag is how many records wait there
// past what the source has fetched, summed over its partitions, as of its
// last fetch. It is called from any goroutine, for metrics.
type Lagger interface {
	Lag() int64
}

// Failure is one message a sink could not deliver.
type Failure struct {
	Index     int   // in the batch given to Write
	Err       error // why
	Retryable bool  // transient, worth trying again (a 429, a 503), or permanent (a mapping error)
}

// WriteError reports the messages of a batch that failed; the others were
// delivered.
type WriteError struct {
	Failures []Failure
}

func (e *WriteError) Error() string {
	if len(e.Failures) == 0 {
		return "connectors: write error without failures"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages failed; first: message %d: %v", len(e.Failures), e.Failures[0].Index, e.Failures[0].Err)
	return b.String()
}

// Resources are what a component may use, given at construction.
type Resources struct {
	// Client reaches the hub: in-process or over Kafka.
	Client hub.Client
	// Logger is the component's logger, already labelled with its name.
	Logger *slog.Logger
	// StateDir is a directory the component may keep state in
	// (checkpoints), private to this instance.
	StateDir string
	// Name identifies the instance: "sources.web", "pipelines.archive.to[1]".
	Name string
	// Sinks are the names of the pipeline's sinks in order, for
	// processors that route (bit i of Message.Routes is Sinks[i]).
	Sinks []string
	// MaxRecordBytes is, for a source, about the largest record value its
	// dataset takes (the dataset's max_message_bytes less room for the
	// batch header, a key and headers); 0: unknown. The runtime sends a
	// larger record to the dead-letter dataset, cut; a source that can
	// refuse input (an HTTP answer) refuses it instead.
	MaxRecordBytes int
}
