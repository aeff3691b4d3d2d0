package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
	wlog "github.com/weirhub/weir/log"
)

// TopicPartition names one partition of a dataset.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// CommittedOffset is a group's committed position in one partition: the
// offset of the next record the group will read.
type CommittedOffset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitTime  time.Time
}

// offsetStore keeps committed offsets in memory and durably in a log of
// commit records (fsync always). When the log grows past compactBytes it
// writes the whole current state after a roll and deletes what came
// before, so replaying it on open stays short.
type offsetStore struct {
	log    *wlog.Log
	logger *slog.Logger

	mu     sync.Mutex // appends, in order, and the map
	groups map[string]map[TopicPartition]CommittedOffset
	b      codecs.Builder
	since  int64 // bytes appended since the last compaction
}

// offsetsCompactBytes is how much the commit log grows before it is
// compacted; a variable for tests.
var offsetsCompactBytes int64 = 32 << 20

type offsetKey struct {
	Group     string `json:"g"`
	Topic     string `json:"t,omitempty"`
	Partition int32  `json:"p"`
}

type offsetValue struct {
	Offset      int64  `json:"o"`
	LeaderEpoch int32  `json:"e"`
	Metadata    string `json:"m,omitempty"`
	CommitTime  int64  `json:"ts"`
}

func openOffsetStore(dir string, logger *slog.Logger) (*offsetStore, error) {
	l, err := wlog.Open(dir, wlog.Options{Sync: wlog.SyncAlways, SegmentBytes: 16 << 20, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("hub: opening committed offsets: %w", err)
	}
	s := &offsetStore{log: l, logger: logger, groups: map[string]map[TopicPartition]CommittedOffset{}}
	it := l.NewIterator(l.StartOffset())
	for it.Next() {
		r := it.Record()
		var k offsetKey
		if err := json.Unmarshal(r.Key, &k); err != nil {
			logger.Warn("hub: skipping an unreadable committed offset record", "offset", r.Offset, "err", err)
			continue
		}
		if r.Value == nil {
			if k.Topic == "" {
				delete(s.groups, k.Group)
			} else if g := s.groups[k.Group]; g != nil {
				delete(g, TopicPartition{k.Topic, k.Partition})
			}
			continue
		}
		var v offsetValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			logger.Warn("hub: skipping an unreadable committed offset record", "offset", r.Offset, "err", err)
			continue
		}
		s.set(k.Group, TopicPartition{k.Topic, k.Partition}, CommittedOffset{Offset: v.Offset, LeaderEpoch: v.LeaderEpoch,
			Metadata: v.Metadata, CommitTime: time.UnixMilli(v.CommitTime)})
	}
	if err := it.Err(); err != nil {
		l.Close()
		return nil, fmt.Errorf("hub: replaying committed offsets: %w", err)
	}
	return s, nil
}

func (s *offsetStore) set(group string, tp TopicPartition, c CommittedOffset) {
	g := s.groups[group]
	if g == nil {
		g = map[TopicPartition]CommittedOffset{}
		s.groups[group] = g
	}
	g[tp] = c
}

// commit stores offsets durably.
func (s *offsetStore) commit(group string, offsets map[TopicPartition]CommittedOffset) error {
	if len(offsets) == 0 {
		return nil
	}
	s.mu.Lock()
	s.b.Reset()
	now := time.Now()
	for tp, c := range offsets {
		if c.CommitTime.IsZero() {
			c.CommitTime = now
		}
		k, _ := json.Marshal(offsetKey{Group: group, Topic: tp.Topic, Partition: tp.Partition})
		v, _ := json.Marshal(offsetValue{Offset: c.Offset, LeaderEpoch: c.LeaderEpoch, Metadata: c.Metadata, CommitTime: c.CommitTime.UnixMilli()})
		s.b.Append(now.UnixMilli(), k, v, nil)
		offsets[tp] = c
	}
	batch, err := s.b.Build()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	_, next, err := s.log.AppendAsync(batch)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: committing offsets: %v", ErrStorage, err)
	}
	for tp, c := range offsets {
		s.set(group, tp, c)
	}
	s.since += int64(len(batch))
	compact := s.since > offsetsCompactBytes
	s.mu.Unlock()
	if err := s.log.WaitDurable(next); err != nil {
		return fmt.Errorf("%w: committing offsets: %v", ErrStorage, err)
	}
	if compact {
		if err := s.compact(); err != nil {
			s.logger.Warn("hub: compacting committed offsets failed; will retry", "err", err)
		}
	}
	return nil
}

// deleteGroup forgets a group's offsets.
func (s *offsetStore) deleteGroup(group string) error {
	s.mu.Lock()
	if _, ok := s.groups[group]; !ok {
		s.mu.Unlock()
		return nil
	}
	s.b.Reset()
	k, _ := json.Marshal(offsetKey{Group: group})
	s.b.Append(time.Now().UnixMilli(), k, nil, nil)
	batch, _ := s.b.Build()
	_, next, err := s.log.AppendAsync(batch)
	if err == nil {
		delete(s.groups, group)
	}
	s.mu.Unlock()
	if err == nil {
		err = s.log.WaitDurable(next)
	}
	if err != nil {
		return fmt.Errorf("%w: deleting group offsets: %v", ErrStorage, err)
	}
	return nil
}

// compact rolls the log, writes the whole state into the new segment and
// deletes the segments before it.
func (s *offsetStore) compact() error {
	s.mu.Lock()
	if s.since <= offsetsCompactBytes {
		s.mu.Unlock()
		return nil
	}
	if err := s.log.Roll(); err != nil {
		s.mu.Unlock()
		return err
	}
	start := s.log.HighWatermark()
	next := start
	s.b.Reset()
	flush := func() error {
		if s.b.NumRecords() == 0 {
			return nil
		}
		batch, err := s.b.Build()
		if err != nil {
			return err
		}
		_, n, err := s.log.AppendAsync(batch)
		next = n
		s.b.Reset()
		return err
	}
	for group, g := range s.groups {
		for tp, c := range g {
			k, _ := json.Marshal(offsetKey{Group: group, Topic: tp.Topic, Partition: tp.Partition})
			v, _ := json.Marshal(offsetValue{Offset: c.Offset, LeaderEpoch: c.LeaderEpoch, Metadata: c.Metadata, CommitTime: c.CommitTime.UnixMilli()})
			s.b.Append(c.CommitTime.UnixMilli(), k, v, nil)
			if s.b.Size() > 512<<10 {
				if err := flush(); err != nil {
					s.mu.Unlock()
					return err
				}
			}
		}
	}
	err := flush()
	s.since = 0
	s.mu.Unlock()
	if err == nil {
		err = s.log.WaitDurable(next)
	}
	if err == nil {
		_, err = s.log.DeleteBefore(start)
	}
	return err
}

// fetch returns a group's committed offsets for tps, or all of them when
// tps is nil. Partitions without a commit are absent.
func (s *offsetStore) fetch(group string, tps []TopicPartition) map[TopicPartition]CommittedOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	out := make(map[TopicPartition]CommittedOffset, len(g))
	if tps == nil {
		for tp, c := range g {
			out[tp] = c
		}
		return out
	}
	for _, tp := range tps {
		if c, ok := g[tp]; ok {
			out[tp] = c
		}
	}
	return out
}

// groupNames lists groups with committed offsets.
func (s *offsetStore) groupNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.groups))
	for g := range s.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	return names
}

func (s *offsetStore) close() error {
	err := s.log.Close()
	if errors.Is(err, wlog.ErrClosed) {
		return nil
	}
	return err
}

// fetchGroup returns all of a group's committed offsets and whether it has
// any.
func (s *offsetStore) fetchGroup(group string) (map[TopicPartition]CommittedOffset, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[group]
	return g, ok
}

// deleteOffsets forgets a group's offsets of some partitions.
func (s *offsetStore) deleteOffsets(group string, tps []TopicPartition) error {
	s.mu.Lock()
	g := s.groups[group]
	s.b.Reset()
	for _, tp := range tps {
		if _, ok := g[tp]; ok {
			k, _ := json.Marshal(offsetKey{Group: group, Topic: tp.Topic, Partition: tp.Partition})
			s.b.Append(time.Now().UnixMilli(), k, nil, nil)
		}
	}
	if s.b.NumRecords() == 0 {
		s.mu.Unlock()
		return nil
	}
	batch, err := s.b.Build()
	var next int64
	if err == nil {
		_, next, err = s.log.AppendAsync(batch)
	}
	if err == nil {
		for _, tp := range tps {
			delete(g, tp)
		}
		if len(g) == 0 {
			delete(s.groups, group)
		}
	}
	s.mu.Unlock()
	if err == nil {
		err = s.log.WaitDurable(next)
	}
	if err != nil {
		return fmt.Errorf("%w: deleting committed offsets: %v", ErrStorage, err)
	}
	return nil
}

// behind returns the groups whose committed offset of tp is below offset,
// with that offset.
func (s *offsetStore) behind(tp TopicPartition, offset int64) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[string]int64
	for group, g := range s.groups {
		if c, ok := g[tp]; ok && c.Offset >= 0 && c.Offset < offset {
			if out == nil {
				out = map[string]int64{}
			}
			out[group] = c.Offset
		}
	}
	return out
}
