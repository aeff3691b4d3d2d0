package hub

import (
	"cmp"
	"slices"
	"time"

	wlog "github.com/weirhub/weir/log"
)

// PartitionStats is a snapshot of one partition's counters and sizes, for
// metrics. Counters count since the hub opened.
type PartitionStats struct {
	Dataset   string
	Partition int32
	// StartOffset and HighWatermark bound the records stored.
	StartOffset, HighWatermark int64
	// Segments and DiskBytes are the segment files and their bytes.
	Segments  int
	DiskBytes int64
	// RemoteSegments and RemoteBytes are the segments in the cold store
	// (some may also be local) and their bytes; LocalStartOffset is the
	// first offset in a local segment file.
	RemoteSegments   int64
	RemoteBytes      int64
	LocalStartOffset int64
	// Tier holds the cold tier's counters: uploads, failed passes (a store
	// that is down), local copies deleted.
	Tier wlog.TierStats
	// Log holds the append counters: records and bytes produced, fsyncs,
	// segments rolled and deleted.
	Log wlog.Stats
	// FetchedBytes counts the bytes Fetch returned (to Kafka consumers
	// and in-process pipelines alike).
	FetchedBytes int64
}

// Stats returns a snapshot of every partition of every dataset, sorted by
// dataset and partition. It takes no lock that produce or fetch hold
// longer than a map read, so it is cheap enough to call on every scrape.
func (h *Hub) Stats() []PartitionStats {
	var out []PartitionStats
	for _, ds := range h.Datasets() {
		for _, p := range ds.partitions() {
			ts := p.log.TierStats()
			out = append(out, PartitionStats{Dataset: ds.name, Partition: p.id,
				StartOffset: p.log.StartOffset(), HighWatermark: p.log.HighWatermark(),
				Segments: p.log.Segments(), DiskBytes: p.log.Size(), Log: p.log.Stats(),
				RemoteSegments: ts.RemoteSegments, RemoteBytes: ts.RemoteBytes, LocalStartOffset: p.log.LocalStartOffset(), Tier: ts,
				FetchedBytes: p.fetchedBytes.Load()})
		}
	}
	return out
}

// GroupPartitionStats is a group's position in one partition.
type GroupPartitionStats struct {
	Dataset   string
	Partition int32
	Committed int64
	// Lag is the high watermark minus the committed offset; -1 when the
	// dataset or partition no longer exists.
	Lag int64
}

// GroupStats is a snapshot of one consumer group.
type GroupStats struct {
	Name  string
	State GroupState
	// Generation counts the group's rebalances since the hub opened.
	Generation int32
	Members    int
	Partitions []GroupPartitionStats // sorted by dataset and partition
}

// GroupStats returns a snapshot of every group the coordinator knows or
// that has committed offsets, sorted by name.
func (h *Hub) GroupStats() []GroupStats {
	var out []GroupStats
	for _, g := range h.ListGroups() {
		d := h.DescribeGroup(g.Name)
		gs := GroupStats{Name: g.Name, State: d.State, Generation: d.Generation, Members: len(d.Members)}
		for tp, c := range h.FetchOffsets(g.Name, nil) {
			ps := GroupPartitionStats{Dataset: tp.Topic, Partition: tp.Partition, Committed: c.Offset, Lag: -1}
			if ds, err := h.Dataset(tp.Topic); err == nil {
				if p, err := ds.Partition(tp.Partition); err == nil {
					ps.Lag = max(p.log.HighWatermark()-c.Offset, 0)
				}
			}
			gs.Partitions = append(gs.Partitions, ps)
		}
		slices.SortFunc(gs.Partitions, func(a, b GroupPartitionStats) int {
			return cmp.Or(cmp.Compare(a.Dataset, b.Dataset), cmp.Compare(a.Partition, b.Partition))
		})
		out = append(out, gs)
	}
	return out
}

// Observer is told of the hub's storage events, for metrics; an adapter
// to a metrics library implements it (cmd/weir has the Prometheus one).
// Its methods are called from appending and syncing goroutines at once
// and must be quick.
type Observer interface {
	// ObserveFsync reports one fdatasync of a partition's segment file.
	ObserveFsync(dataset string, partition int32, took time.Duration)
}

// Err is nil while the hub is open and ErrClosed after Close: what a
// readiness check asks.
func (h *Hub) Err() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return ErrClosed
	}
	return nil
}

// countFetched adds what a Fetch returned to its partitions' counters.
func countFetched(parts []*Partition, results []FetchResult) {
	for i, p := range parts {
		if p != nil && results[i].Bytes > 0 {
			p.fetchedBytes.Add(results[i].Bytes)
		}
	}
}
