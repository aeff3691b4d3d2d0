package hub

import (
	"errors"
	"fmt"

	"github.com/weirhub/weir/codecs"
)

// checkProduced checks every record of a produced batch, as Kafka does
// before it answers: a batch whose records are malformed, whose count does
// not match them, or that decompresses to more than
// codecs.MaxDecompressedFor(max.message.bytes) is refused (ErrCorruptBatch,
// ErrBatchTooLarge) rather than stored to stop every consumer. The batch's
// bytes are not changed.
func checkProduced(ds *Dataset, batch []byte) error {
	maxBatch := ds.Config().MaxMessageBytes
	if _, err := codecs.CheckProduced(batch, maxBatch, codecs.MaxDecompressedFor(maxBatch)); err != nil {
		return appendErr(err)
	}
	return nil
}

// CorruptBatchError is what a read of the hub returns for a stored batch
// that cannot be decoded (written before records were checked, or damaged
// on disk): errors.Is(err, ErrCorruptBatch) holds, and Batch has the
// offsets the batch covers (BaseOffset to LastOffset), so a consumer can
// dead-letter that range and move on past it.
type CorruptBatchError struct {
	Dataset   string
	Partition int32
	Batch     *codecs.BatchError
}

func (e *CorruptBatchError) Error() string {
	return fmt.Sprintf("hub: fetching %s/%d: %v", e.Dataset, e.Partition, e.Batch)
}

// Is makes errors.Is(err, ErrCorruptBatch) true.
func (e *CorruptBatchError) Is(target error) bool { return target == ErrCorruptBatch }

// Unwrap returns the batch error (codecs.ErrCorrupt, ErrTooLarge or
// ErrShort beneath).
func (e *CorruptBatchError) Unwrap() error { return e.Batch }

// corruptFetch classifies an error decoding the fetched batches of tp.
func corruptFetch(tp TopicPartition, err error) error {
	var be *codecs.BatchError
	if errors.As(err, &be) {
		return &CorruptBatchError{Dataset: tp.Topic, Partition: tp.Partition, Batch: be}
	}
	return fmt.Errorf("hub: fetching %s/%d: %w", tp.Topic, tp.Partition, err)
}
