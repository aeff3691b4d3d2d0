package hub

import (
	"errors"

	"github.com/weirhub/weir/codecs"
)

// Errors of the hub, each with the Kafka error it stands for; test with
// errors.Is. hub/kafka maps them to protocol error codes.
var (
	ErrClosed                  = errors.New("hub: closed")
	ErrUnknownDataset          = errors.New("hub: unknown dataset")                // UNKNOWN_TOPIC_OR_PARTITION
	ErrUnknownPartition        = errors.New("hub: unknown partition")              // UNKNOWN_TOPIC_OR_PARTITION
	ErrDatasetExists           = errors.New("hub: dataset already exists")         // TOPIC_ALREADY_EXISTS
	ErrInvalidDatasetName      = errors.New("hub: invalid dataset name")           // INVALID_TOPIC_EXCEPTION
	ErrInvalidPartitions       = errors.New("hub: invalid partition count")        // INVALID_PARTITIONS
	ErrInvalidConfig           = errors.New("hub: invalid dataset config")         // INVALID_CONFIG
	ErrCorruptBatch            = errors.New("hub: corrupt record batch")           // CORRUPT_MESSAGE
	ErrBatchTooLarge           = errors.New("hub: record batch too large")         // MESSAGE_TOO_LARGE
	ErrInvalidRecord           = errors.New("hub: invalid record")                 // INVALID_RECORD
	ErrOffsetOutOfRange        = errors.New("hub: offset out of range")            // OFFSET_OUT_OF_RANGE
	ErrOutOfOrderSequence      = errors.New("hub: out of order sequence number")   // OUT_OF_ORDER_SEQUENCE_NUMBER
	ErrInvalidProducerEpoch    = errors.New("hub: producer epoch is old")          // INVALID_PRODUCER_EPOCH
	ErrUnknownProducerID       = errors.New("hub: unknown producer id")            // UNKNOWN_PRODUCER_ID
	ErrTransactionsUnsupported = errors.New("hub: transactions are not supported") // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
	ErrStorage                 = errors.New("hub: storage failure")                // KAFKA_STORAGE_ERROR
	ErrInvalidGroupID          = errors.New("hub: invalid group id")               // INVALID_GROUP_ID
	ErrUnknownMemberID         = errors.New("hub: unknown member id")              // UNKNOWN_MEMBER_ID
	ErrMemberIDRequired        = errors.New("hub: member id required")             // MEMBER_ID_REQUIRED
	ErrIllegalGeneration       = errors.New("hub: illegal generation")             // ILLEGAL_GENERATION
	ErrRebalanceInProgress     = errors.New("hub: rebalance in progress")          // REBALANCE_IN_PROGRESS
	ErrInconsistentProtocol    = errors.New("hub: inconsistent group protocol")    // INCONSISTENT_GROUP_PROTOCOL
	ErrInvalidSessionTimeout   = errors.New("hub: invalid session timeout")        // INVALID_SESSION_TIMEOUT
	ErrGroupNotEmpty           = errors.New("hub: group is not empty")             // NON_EMPTY_GROUP
	ErrGroupNotFound           = errors.New("hub: group not found")                // GROUP_ID_NOT_FOUND
	ErrFencedInstanceID        = errors.New("hub: fenced instance id")             // FENCED_INSTANCE_ID

	ErrProducerFenced           = errors.New("hub: producer fenced")                      // PRODUCER_FENCED
	ErrInvalidTxnState          = errors.New("hub: invalid transaction state")            // INVALID_TXN_STATE
	ErrConcurrentTransactions   = errors.New("hub: transaction being ended")              // CONCURRENT_TRANSACTIONS
	ErrTransactionalIDNotFound  = errors.New("hub: unknown transactional id")             // TRANSACTIONAL_ID_NOT_FOUND
	ErrInvalidProducerIDMapping = errors.New("hub: transactional id of another producer") // INVALID_PRODUCER_ID_MAPPING
	ErrInvalidTxnTimeout        = errors.New("hub: invalid transaction timeout")          // INVALID_TRANSACTION_TIMEOUT

	// ErrUnavailable is a Client's hub out of reach: a broker that does
	// not answer, refuses the connection or the credentials, or has no
	// leader for the partition. What was refused may succeed later.
	ErrUnavailable = errors.New("hub: unavailable")
)

// RecordAtFault reports whether err says the records themselves were
// refused (too large, invalid, corrupt, or a dataset name that cannot
// exist): trying them again cannot succeed.
func RecordAtFault(err error) bool {
	return errors.Is(err, ErrBatchTooLarge) || errors.Is(err, ErrInvalidRecord) || errors.Is(err, ErrCorruptBatch) ||
		errors.Is(err, ErrInvalidDatasetName) || errors.Is(err, codecs.ErrTooLarge)
}

// Unreachable reports whether err says the hub is closed or out of reach
// (ErrClosed, ErrUnavailable): a writer should hold back and try again
// rather than give up on its records.
func Unreachable(err error) bool {
	return errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable)
}
