package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/weirhub/weir/hub"
)

// errorCodes maps the hub's errors to Kafka error codes, most specific
// first.
var errorCodes = []struct {
	err  error
	code *kerr.Error
}{
	{hub.ErrUnknownDataset, kerr.UnknownTopicOrPartition},
	{hub.ErrUnknownPartition, kerr.UnknownTopicOrPartition},
	{hub.ErrDatasetExists, kerr.TopicAlreadyExists},
	{hub.ErrInvalidDatasetName, kerr.InvalidTopicException},
	{hub.ErrInvalidPartitions, kerr.InvalidPartitions},
	{hub.ErrInvalidConfig, kerr.InvalidConfig},
	{hub.ErrCorruptBatch, kerr.CorruptMessage},
	{hub.ErrBatchTooLarge, kerr.MessageTooLarge},
	{hub.ErrInvalidRecord, kerr.InvalidRecord},
	{hub.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{hub.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{hub.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{hub.ErrUnknownProducerID, kerr.UnknownProducerID},
	{hub.ErrTransactionsUnsupported, kerr.TransactionalIDAuthorizationFailed},
	{hub.ErrProducerFenced, kerr.ProducerFenced},
	{hub.ErrInvalidTxnState, kerr.InvalidTxnState},
	{hub.ErrConcurrentTransactions, kerr.ConcurrentTransactions},
	{hub.ErrTransactionalIDNotFound, kerr.TransactionalIDNotFound},
	{hub.ErrInvalidProducerIDMapping, kerr.InvalidProducerIDMapping},
	{hub.ErrInvalidTxnTimeout, kerr.InvalidTransactionTimeout},
	{hub.ErrStorage, kerr.KafkaStorageError},
	{hub.ErrInvalidGroupID, kerr.InvalidGroupID},
	{hub.ErrUnknownMemberID, kerr.UnknownMemberID},
	{hub.ErrMemberIDRequired, kerr.MemberIDRequired},
	{hub.ErrIllegalGeneration, kerr.IllegalGeneration},
	{hub.ErrRebalanceInProgress, kerr.RebalanceInProgress},
	{hub.ErrInconsistentProtocol, kerr.InconsistentGroupProtocol},
	{hub.ErrInvalidSessionTimeout, kerr.InvalidSessionTimeout},
	{hub.ErrGroupNotEmpty, kerr.NonEmptyGroup},
	{hub.ErrGroupNotFound, kerr.GroupIDNotFound},
	{hub.ErrFencedInstanceID, kerr.FencedInstanceID},
	{hub.ErrClosed, kerr.CoordinatorNotAvailable},
	{context.Canceled, kerr.RequestTimedOut},
	{context.DeadlineExceeded, kerr.RequestTimedOut},
}

// errCode returns the Kafka error code for err: 0 for nil, -1
// (UNKNOWN_SERVER_ERROR) for errors the hub does not classify.
func errCode(err error) int16 {
	if err == nil {
		return 0
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code.Code
		}
	}
	return kerr.UnknownServerError.Code
}

// errMessage is the text for responses that carry one.
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
