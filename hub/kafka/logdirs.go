package kafka

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
)

// RemoteLogDir is the name DescribeLogDirs gives the cold store: the
// partitions of datasets with remote.storage.enable are listed there too,
// each with the bytes of its segments in the store, beside the data
// directory, where each has the bytes of its local segment files.
const RemoteLogDir = "remote (cold store)"

// SegmentsTag is the tagged field (DescribeLogDirs v2 and later) in which
// each partition of a DescribeLogDirs response carries the number of its
// segments in that directory, an unsigned varint: local segment files in
// the data directory, segments the manifest lists in RemoteLogDir. Kafka
// has no field for it (its brokers count segments only in the JMX metric
// NumLogSegments); Kafka clients skip tags they do not know.
const SegmentsTag = 10000

// handleDescribeLogDirs answers with two "directories": the hub's data
// directory, with every requested partition's local bytes, and, when some
// partition is tiered, RemoteLogDir, with the bytes the cold store holds
// of it (uploaded segments that are still local too count in both, as
// Kafka's tiered storage counts them).
func handleDescribeLogDirs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	var want map[string]map[int32]bool // nil: every partition
	if req.Topics != nil {
		want = map[string]map[int32]bool{}
		for _, t := range req.Topics {
			if want[t.Topic] == nil {
				want[t.Topic] = map[int32]bool{}
			}
			for _, p := range t.Partitions {
				want[t.Topic][p] = true
			}
		}
	}
	local := kmsg.NewDescribeLogDirsResponseDir()
	local.Dir = c.s.hub.DataDir()
	remote := kmsg.NewDescribeLogDirsResponseDir()
	remote.Dir = RemoteLogDir
	tiered := false
	add := func(d *kmsg.DescribeLogDirsResponseDir, st hub.PartitionStats, size, segments int64) {
		if n := len(d.Topics); n == 0 || d.Topics[n-1].Topic != st.Dataset {
			t := kmsg.NewDescribeLogDirsResponseDirTopic()
			t.Topic = st.Dataset
			d.Topics = append(d.Topics, t)
		}
		p := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		p.Partition, p.Size = st.Partition, size
		p.UnknownTags.Set(SegmentsTag, binary.AppendUvarint(nil, uint64(segments)))
		t := &d.Topics[len(d.Topics)-1]
		t.Partitions = append(t.Partitions, p)
	}
	for _, st := range c.s.hub.Stats() { // sorted by dataset and partition
		if want != nil && !want[st.Dataset][st.Partition] {
			continue
		}
		add(&local, st, st.DiskBytes, int64(st.Segments))
		if st.Tier.ColdStart >= 0 {
			tiered = true
			add(&remote, st, st.RemoteBytes, st.RemoteSegments)
		}
	}
	resp.Dirs = append(resp.Dirs, local)
	if tiered {
		resp.Dirs = append(resp.Dirs, remote)
	}
	return ready(resp)
}
