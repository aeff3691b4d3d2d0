package hub

import (
	"fmt"
	"math"
	"sync"
)

// producerIDBlock is how many producer ids are reserved per durable write
// of meta.json.
const producerIDBlock = 1000

// producerIDAllocator hands out producer ids, never the same one twice,
// even across restarts: it persists the end of the block it draws from.
type producerIDAllocator struct {
	h           *Hub
	mu          sync.Mutex
	next, limit int64
}

func (a *producerIDAllocator) allocate() (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.limit {
		start := a.h.meta.NextProducerID
		a.h.meta.NextProducerID = start + producerIDBlock
		if err := a.h.saveMeta(); err != nil {
			a.h.meta.NextProducerID = start
			return -1, fmt.Errorf("%w: reserving producer ids: %v", ErrStorage, err)
		}
		a.next, a.limit = start, start+producerIDBlock
	}
	id := a.next
	a.next++
	return id, nil
}

// InitProducerID gives an idempotent producer its id and epoch (Kafka's
// InitProducerId). A producer that passes its current id and epoch gets
// the same id with the next epoch, fencing its older incarnation (KIP-360).
// A transactional id goes to InitTransactionalProducer with the default
// timeout.
func (h *Hub) InitProducerID(transactionalID string, producerID int64, epoch int16) (int64, int16, error) {
	if transactionalID != "" {
		return h.InitTransactionalProducer(transactionalID, DefaultTxnTimeout, producerID, epoch)
	}
	if producerID >= 0 && epoch >= 0 && epoch < math.MaxInt16 {
		return producerID, epoch + 1, nil
	}
	id, err := h.producerIDs.allocate()
	if err != nil {
		return -1, -1, err
	}
	return id, 0, nil
}
