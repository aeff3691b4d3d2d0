package kafka

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
)

// api is one supported API key: the versions advertised and the handler.
// A handler runs on the connection's reader, in request order; it returns
// the response (ready or completing later) or nil for none.
type api struct {
	min, max int16
	handle   func(c *conn, h *header, req kmsg.Request) *pending
}

// apis lists what is advertised. The version ranges are those the
// clients Weir is tested with (kcat, librdkafka, kafka-python, franz-go,
// sarama, kafkajs) need: Produce from v0 (librdkafka compresses with gzip,
// snappy or lz4 only when the broker offers Produce from v0), group APIs
// from v0, Fetch from v4 without fetch sessions; plus the admin APIs that
// tools repair with: CreatePartitions, Describe/Alter/IncrementalAlterConfigs,
// DeleteRecords, DeleteGroups and OffsetDelete; and the transaction APIs
// (txn.go) with Fetch's and ListOffsets' read_committed isolation.
var apis map[int16]api

func init() {
	apis = map[int16]api{
		0:  {0, 11, handleProduce},
		1:  {4, 12, handleFetch},
		2:  {1, 9, handleListOffsets}, // v8, v9: earliest local (-4) and latest tiered (-5), KIP-1005
		3:  {0, 12, handleMetadata},
		8:  {0, 8, handleOffsetCommit},
		9:  {0, 8, handleOffsetFetch},
		10: {0, 4, handleFindCoordinator},
		11: {0, 9, handleJoinGroup},
		12: {0, 4, handleHeartbeat},
		13: {0, 5, handleLeaveGroup},
		14: {0, 5, handleSyncGroup},
		15: {0, 5, handleDescribeGroups},
		16: {0, 4, handleListGroups},
		17: {0, 1, handleSaslHandshake},
		18: {0, 3, handleAPIVersions},
		19: {0, 7, handleCreateTopics},
		20: {0, 5, handleDeleteTopics},
		21: {0, 2, handleDeleteRecords},
		22: {0, 4, handleInitProducerID},
		23: {0, 4, handleOffsetForLeaderEpoch},
		24: {0, 4, handleAddPartitionsToTxn},
		25: {0, 3, handleAddOffsetsToTxn},
		26: {0, 3, handleEndTxn},
		28: {0, 3, handleTxnOffsetCommit},
		29: {0, 3, handleDescribeACLs},
		30: {0, 3, handleCreateACLs},
		31: {0, 3, handleDeleteACLs},
		32: {0, 4, handleDescribeConfigs},
		33: {0, 2, handleAlterConfigs},
		35: {0, 4, handleDescribeLogDirs},
		36: {0, 2, handleSaslAuthenticate},
		37: {0, 3, handleCreatePartitions},
		42: {0, 2, handleDeleteGroups},
		44: {0, 1, handleIncrementalAlterConfigs},
		47: {0, 0, handleOffsetDelete},
		65: {0, 0, handleDescribeTransactions},
		66: {0, 1, handleListTransactions},
		50: {0, 0, handleDescribeUserSCRAMCredentials},
		51: {0, 0, handleAlterUserSCRAMCredentials},
	}
}

// leaderEpoch is the epoch Metadata, ListOffsets and OffsetForLeaderEpoch
// answer: hub.LeaderEpoch, which every stored batch carries.
const leaderEpoch = hub.LeaderEpoch

func ready(resp kmsg.Response) *pending { return &pending{resp: resp} }

func apiVersionsResponse(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	for _, key := range sortedKeys() {
		a := apis[key]
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, a.min, a.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}

func sortedKeys() []int16 {
	keys := make([]int16, 0, len(apis))
	for k := range apis {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func handleAPIVersions(c *conn, h *header, req kmsg.Request) *pending {
	return ready(apiVersionsResponse(h.version))
}

func handleMetadata(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	host, port := c.s.Advertised()
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = c.s.opts.NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	cluster := c.s.hub.ClusterID()
	resp.ClusterID = &cluster
	resp.ControllerID = c.s.opts.NodeID
	var names []string
	all := req.Topics == nil || (h.version == 0 && len(req.Topics) == 0)
	if all {
		for _, ds := range c.s.hub.Datasets() {
			names = append(names, ds.Name())
		}
	} else {
		for _, t := range req.Topics {
			if t.Topic != nil {
				names = append(names, *t.Topic)
			}
		}
	}
	autoCreate := h.version < 4 || req.AllowAutoTopicCreation
	for _, name := range names {
		t := kmsg.NewMetadataResponseTopic()
		t.Topic = kmsg.StringPtr(name)
		var ds *hub.Dataset
		var err error
		if autoCreate && !all {
			ds, err = c.s.hub.DatasetOrCreate(name)
		} else {
			ds, err = c.s.hub.Dataset(name)
		}
		if err != nil {
			t.ErrorCode = errCode(err)
			resp.Topics = append(resp.Topics, t)
			continue
		}
		t.TopicID = ds.ID()
		for i := range ds.NumPartitions() {
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Partition, p.Leader, p.LeaderEpoch = i, c.s.opts.NodeID, leaderEpoch
			p.Replicas = []int32{c.s.opts.NodeID}
			p.ISR = []int32{c.s.opts.NodeID}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return ready(resp)
}

func handleProduce(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	type wait struct {
		p    *hub.Partition
		next int64
		out  *kmsg.ProduceResponseTopicPartition
	}
	var waits []wait
	failed := false
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = tp.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for ti, t := range req.Topics {
		for pi, tp := range t.Partitions {
			out := &resp.Topics[ti].Partitions[pi]
			var err error
			switch {
			case h.version < 3:
				err = fmt.Errorf("produce v%d carries message format v0/v1, which Weir does not store; use a client that speaks produce v3+", h.version)
				out.ErrorCode = kerr.UnsupportedForMessageFormat.Code
			}
			var p *hub.Partition
			if err == nil {
				var ds *hub.Dataset
				if ds, err = c.s.hub.Dataset(t.Topic); err == nil {
					p, err = ds.Partition(tp.Partition)
				}
			}
			if err == nil && len(tp.Records) > 16 && tp.Records[16] != 2 {
				err = fmt.Errorf("%w: record batch magic %d; only v2 batches are stored", hub.ErrCorruptBatch, tp.Records[16])
				out.ErrorCode = kerr.UnsupportedForMessageFormat.Code
			}
			if err == nil {
				var res hub.ProduceResult
				res, err = p.Produce(tp.Records, false)
				c.s.noteStorage(err)
				if err == nil {
					out.BaseOffset, out.LogStartOffset = res.BaseOffset, res.LogStartOffset
					if req.Acks != 0 && p.WaitsForDisk() {
						waits = append(waits, wait{p, res.Next, out})
					}
				}
			}
			if err != nil {
				failed = true
				if out.ErrorCode == 0 {
					out.ErrorCode = errCode(err)
				}
				if h.version >= 8 {
					out.ErrorMessage = errMessage(err)
				}
				if errors.Is(err, hub.ErrStorage) {
					c.s.opts.Logger.Error("kafka: produce failed to store", "topic", t.Topic, "partition", tp.Partition, "client", h.clientID, "err", err)
				} else {
					c.s.opts.Logger.Debug("kafka: produce rejected", "topic", t.Topic, "partition", tp.Partition, "client", h.clientID, "err", err)
				}
			}
		}
	}
	if req.Acks == 0 {
		if failed {
			// acks=0 has no response; Kafka closes the connection so the
			// producer notices. Queue nothing but the close.
			return &pending{closeAfter: true, write: func(*conn) error { return nil }}
		}
		return nil
	}
	if len(waits) == 0 || req.Acks == 1 {
		// acks=1: the leader has the records; there are no replicas to
		// wait for and fsync is the durability acks=all waits for. Under
		// fsync "interval" or "never" acks=all has nothing to wait for
		// either: answered at once, without a goroutine per request.
		return ready(resp)
	}
	return c.later(func() kmsg.Response {
		for _, w := range waits {
			if err := w.p.WaitDurable(w.next); err != nil {
				c.s.noteStorage(err)
				w.out.ErrorCode = errCode(err)
				if h.version >= 8 {
					w.out.ErrorMessage = errMessage(err)
				}
			}
		}
		return resp
	})
}

func handleListOffsets(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition = tp.Partition
			rp.Timestamp, rp.Offset, rp.LeaderEpoch = -1, -1, leaderEpoch
			ds, err := c.s.hub.Dataset(t.Topic)
			var p *hub.Partition
			if err == nil {
				p, err = ds.Partition(tp.Partition)
			}
			if err == nil {
				switch {
				case tp.Timestamp == -3: // the record with the largest timestamp (KIP-734)
					err = errors.New("max timestamp lookup is not supported")
					rp.ErrorCode = kerr.UnsupportedVersion.Code
				case tp.Timestamp == -1 && req.IsolationLevel == 1: // read_committed: the last stable offset
					rp.Offset = p.LastStableOffset()
				default:
					var off int64
					off, err = p.ListOffset(tp.Timestamp)
					if err == nil {
						rp.Offset = off
						if tp.Timestamp >= 0 && off >= p.HighWatermark() {
							rp.Offset = -1 // no record that new: Kafka answers -1
						} else if tp.Timestamp >= 0 {
							rp.Timestamp = tp.Timestamp
						}
					}
				}
			}
			if err != nil && rp.ErrorCode == 0 {
				rp.ErrorCode = errCode(err)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

// handleOffsetForLeaderEpoch answers where an epoch ends. There is only
// epoch 0 (see leaderEpoch), which is current, so it ends at the end of the
// log; a client asking about a later epoch is ahead of this broker.
func handleOffsetForLeaderEpoch(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
		rt.Topic = t.Topic
		ds, derr := c.s.hub.Dataset(t.Topic)
		for _, tp := range t.Partitions {
			rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			rp.Partition, rp.LeaderEpoch, rp.EndOffset = tp.Partition, -1, -1
			err := derr
			var p *hub.Partition
			if err == nil {
				p, err = ds.Partition(tp.Partition)
			}
			switch {
			case err != nil:
				rp.ErrorCode = errCode(err)
			case tp.CurrentLeaderEpoch > leaderEpoch:
				rp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case tp.LeaderEpoch < 0 || tp.LeaderEpoch > leaderEpoch:
				// Kafka answers an epoch it does not know as undefined
				// (-1, -1), without an error.
			default:
				rp.LeaderEpoch, rp.EndOffset = leaderEpoch, p.HighWatermark()
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleFindCoordinator(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := c.s.Advertised()
	if h.version < 4 {
		resp.NodeID, resp.Host, resp.Port = c.s.opts.NodeID, host, port
		return ready(resp)
	}
	for _, key := range req.CoordinatorKeys {
		co := kmsg.NewFindCoordinatorResponseCoordinator()
		co.Key, co.NodeID, co.Host, co.Port = key, c.s.opts.NodeID, host, port
		resp.Coordinators = append(resp.Coordinators, co)
	}
	return ready(resp)
}

func ms(n int32) time.Duration { return time.Duration(n) * time.Millisecond }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func handleJoinGroup(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.JoinGroupRequest)
	jr := hub.JoinGroupRequest{
		Group: req.Group, MemberID: req.MemberID, InstanceID: deref(req.InstanceID), ClientID: h.clientID,
		ClientHost: hostOf(c.remote), ProtocolType: req.ProtocolType,
		SessionTimeout: ms(req.SessionTimeoutMillis), RebalanceTimeout: ms(req.RebalanceTimeoutMillis),
		RequireKnownMemberID: h.version >= 4,
	}
	if h.version == 0 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, hub.GroupProtocol{Name: p.Name, Metadata: p.Metadata})
	}
	return c.later(func() kmsg.Response {
		res := c.s.hub.JoinGroup(c.ctx, jr)
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = errCode(res.Err)
		resp.MemberID = res.MemberID
		if res.Err != nil {
			resp.Generation = -1
			return resp
		}
		resp.Generation, resp.LeaderID = res.Generation, res.Leader
		resp.Protocol = kmsg.StringPtr(res.Protocol)
		resp.ProtocolType = kmsg.StringPtr(res.ProtocolType)
		for _, m := range res.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID, rm.ProtocolMetadata = m.MemberID, m.Metadata
			if m.InstanceID != "" {
				rm.InstanceID = kmsg.StringPtr(m.InstanceID)
			}
			resp.Members = append(resp.Members, rm)
		}
		return resp
	})
}

func hostOf(remote string) string {
	for i := len(remote) - 1; i >= 0; i-- {
		if remote[i] == ':' {
			return "/" + remote[:i]
		}
	}
	return remote
}

func handleSyncGroup(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.SyncGroupRequest)
	sr := hub.SyncGroupRequest{Group: req.Group, MemberID: req.MemberID, InstanceID: deref(req.InstanceID),
		Generation: req.Generation, ProtocolType: deref(req.ProtocolType), Protocol: deref(req.Protocol)}
	if len(req.GroupAssignment) > 0 {
		sr.Assignments = map[string][]byte{}
		for _, a := range req.GroupAssignment {
			sr.Assignments[a.MemberID] = a.MemberAssignment
		}
	}
	return c.later(func() kmsg.Response {
		res := c.s.hub.SyncGroup(c.ctx, sr)
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = errCode(res.Err)
		if res.Err == nil {
			resp.MemberAssignment = res.Assignment
			if resp.MemberAssignment == nil {
				resp.MemberAssignment = []byte{}
			}
			resp.ProtocolType = kmsg.StringPtr(res.ProtocolType)
			resp.Protocol = kmsg.StringPtr(res.Protocol)
		}
		return resp
	})
}

func handleHeartbeat(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = errCode(c.s.hub.Heartbeat(req.Group, req.MemberID, req.Generation))
	return ready(resp)
}

func handleLeaveGroup(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if h.version < 3 {
		errs := c.s.hub.LeaveGroup(req.Group, []string{req.MemberID}, nil)
		resp.ErrorCode = errCode(errs[0])
		return ready(resp)
	}
	ids := make([]string, len(req.Members))
	inst := make([]string, len(req.Members))
	for i, m := range req.Members {
		ids[i], inst[i] = m.MemberID, deref(m.InstanceID)
	}
	errs := c.s.hub.LeaveGroup(req.Group, ids, inst)
	for i, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ErrorCode = m.MemberID, m.InstanceID, errCode(errs[i])
		resp.Members = append(resp.Members, rm)
	}
	return ready(resp)
}

func handleOffsetCommit(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	cr := hub.OffsetCommitRequest{Group: req.Group, MemberID: req.MemberID, Generation: req.Generation,
		Offsets: map[hub.TopicPartition]hub.CommittedOffset{}}
	if h.version == 0 {
		cr.Generation = -1
	}
	// Partitions that do not exist fail on their own; the rest commit
	// together, durably, before the answer (so this runs in order on the
	// reader: a later commit on the connection cannot overtake it).
	codes := map[hub.TopicPartition]int16{}
	for _, t := range req.Topics {
		ds, derr := c.s.hub.Dataset(t.Topic)
		for _, p := range t.Partitions {
			tp := hub.TopicPartition{Topic: t.Topic, Partition: p.Partition}
			err := derr
			if err == nil {
				_, err = ds.Partition(p.Partition)
			}
			if err != nil {
				codes[tp] = errCode(err)
				continue
			}
			cr.Offsets[tp] = hub.CommittedOffset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: deref(p.Metadata)}
		}
	}
	code := errCode(c.s.hub.CommitOffsets(cr))
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			if pc, ok := codes[hub.TopicPartition{Topic: t.Topic, Partition: p.Partition}]; ok {
				rp.ErrorCode = pc
			} else {
				rp.ErrorCode = code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleOffsetFetch(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	type topicReq struct {
		topic string
		parts []int32
	}
	fetch := func(group string, topics []topicReq, all bool) map[string][]kmsg.OffsetFetchResponseGroupTopicPartition {
		var tps []hub.TopicPartition
		if !all {
			tps = []hub.TopicPartition{}
			for _, t := range topics {
				for _, p := range t.parts {
					tps = append(tps, hub.TopicPartition{Topic: t.topic, Partition: p})
				}
			}
		}
		got := c.s.hub.FetchOffsets(group, tps)
		out := map[string][]kmsg.OffsetFetchResponseGroupTopicPartition{}
		add := func(tp hub.TopicPartition, co hub.CommittedOffset, ok bool) {
			rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = tp.Partition, -1, -1
			if ok {
				rp.Offset, rp.LeaderEpoch = co.Offset, co.LeaderEpoch
				rp.Metadata = kmsg.StringPtr(co.Metadata)
			}
			out[tp.Topic] = append(out[tp.Topic], rp)
		}
		if all {
			for tp, co := range got {
				add(tp, co, true)
			}
		} else {
			for _, tp := range tps {
				co, ok := got[tp]
				add(tp, co, ok)
			}
		}
		return out
	}
	if h.version < 8 {
		var topics []topicReq
		for _, t := range req.Topics {
			topics = append(topics, topicReq{t.Topic, t.Partitions})
		}
		res := fetch(req.Group, topics, req.Topics == nil && h.version >= 2)
		for topic, parts := range res {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = topic
			for _, p := range parts {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)
	}
	for _, g := range req.Groups {
		var topics []topicReq
		for _, t := range g.Topics {
			topics = append(topics, topicReq{t.Topic, t.Partitions})
		}
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group = g.Group
		for topic, parts := range fetch(g.Group, topics, g.Topics == nil) {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic, rt.Partitions = topic, parts
			rg.Topics = append(rg.Topics, rt)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return ready(resp)
}

func handleDescribeGroups(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		d := c.s.hub.DescribeGroup(name)
		g := kmsg.NewDescribeGroupsResponseGroup()
		g.Group, g.State, g.ProtocolType, g.Protocol = name, d.State.String(), d.ProtocolType, d.Protocol
		for _, m := range d.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID, rm.ClientID, rm.ClientHost = m.MemberID, m.ClientID, m.ClientHost
			rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
			if rm.MemberAssignment == nil {
				rm.MemberAssignment = []byte{}
			}
			if m.InstanceID != "" {
				rm.InstanceID = kmsg.StringPtr(m.InstanceID)
			}
			g.Members = append(g.Members, rm)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return ready(resp)
}

func handleListGroups(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	for _, d := range c.s.hub.ListGroups() {
		if len(req.StatesFilter) > 0 && !contains(req.StatesFilter, d.State.String()) {
			continue
		}
		if d.State == hub.GroupDead {
			continue
		}
		g := kmsg.NewListGroupsResponseGroup()
		g.Group, g.ProtocolType, g.GroupState = d.Name, d.ProtocolType, d.State.String()
		resp.Groups = append(resp.Groups, g)
	}
	return ready(resp)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// datasetConfig turns CreateTopics settings into a hub config.
func datasetConfig(defaults hub.DatasetConfig, t *kmsg.CreateTopicsRequestTopic) (hub.DatasetConfig, error) {
	var cfg hub.DatasetConfig
	if t.NumPartitions > 0 {
		cfg.Partitions = t.NumPartitions
	} else if t.NumPartitions == 0 || t.NumPartitions < -1 {
		return cfg, fmt.Errorf("%w: %d", hub.ErrInvalidPartitions, t.NumPartitions)
	}
	if len(t.ReplicaAssignment) > 0 {
		return cfg, fmt.Errorf("%w: manual replica assignment is not supported by a single-node hub", hub.ErrInvalidConfig)
	}
	for _, kv := range t.Configs {
		if kv.Value == nil {
			continue
		}
		if err := cfg.ApplyKafkaConfig(kv.Name, *kv.Value); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func handleCreateTopics(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for i := range req.Topics {
		t := &req.Topics[i]
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		var err error
		var cfg hub.DatasetConfig
		if t.ReplicationFactor > 1 {
			err = fmt.Errorf("replication factor %d: this hub is a single node", t.ReplicationFactor)
			rt.ErrorCode = kerr.InvalidReplicationFactor.Code
		} else if cfg, err = datasetConfig(c.s.hub.Defaults(), t); err == nil {
			if req.ValidateOnly {
				err = c.s.hub.ValidateDataset(t.Topic, cfg)
			} else {
				var ds *hub.Dataset
				if ds, err = c.s.hub.CreateDataset(t.Topic, cfg); err == nil {
					rt.TopicID = ds.ID()
					cfg = ds.Config()
				}
			}
		}
		if err != nil {
			if rt.ErrorCode == 0 {
				rt.ErrorCode = errCode(err)
			}
			rt.ErrorMessage = errMessage(err)
		} else if h.version >= 5 {
			rt.NumPartitions, rt.ReplicationFactor = cfg.Partitions, 1
			for k, v := range cfg.KafkaConfigs() {
				rc := kmsg.NewCreateTopicsResponseTopicConfig()
				rc.Name, rc.Value = k, kmsg.StringPtr(v)
				rt.Configs = append(rt.Configs, rc)
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleDeleteTopics(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, name := range req.TopicNames {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic = kmsg.StringPtr(name)
		if err := c.s.hub.DeleteDataset(name); err != nil {
			rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleCreatePartitions(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		var err error
		if req.ValidateOnly {
			var ds *hub.Dataset
			if ds, err = c.s.hub.Dataset(t.Topic); err == nil && t.Count <= ds.NumPartitions() {
				err = fmt.Errorf("%w: %s has %d partitions; the count can only grow", hub.ErrInvalidPartitions, t.Topic, ds.NumPartitions())
			}
		} else {
			err = c.s.hub.AddPartitions(t.Topic, t.Count)
		}
		if err != nil {
			rt.ErrorCode, rt.ErrorMessage = errCode(err), errMessage(err)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleDescribeConfigs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		var configs map[string]string
		defaults := map[string]bool{}
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			ds, err := c.s.hub.Dataset(r.ResourceName)
			if err != nil {
				rr.ErrorCode, rr.ErrorMessage = errCode(err), errMessage(err)
				resp.Resources = append(resp.Resources, rr)
				continue
			}
			configs = ds.Config().KafkaConfigs()
			for k, v := range c.s.hub.Defaults().KafkaConfigs() {
				defaults[k] = configs[k] == v
			}
			if n, next := c.s.hub.PendingDelayed(r.ResourceName); n > 0 { // read-only: see isDelayStat
				configs[delayPendingConfig] = strconv.Itoa(n)
				configs[delayNextDueConfig] = next.UTC().Format(time.RFC3339Nano)
			}
		case kmsg.ConfigResourceTypeBroker:
			configs = map[string]string{
				"auto.create.topics.enable": strconv.FormatBool(c.s.hub.AutoCreate()),
				"broker.id":                 strconv.Itoa(int(c.s.opts.NodeID)),
				"socket.request.max.bytes":  strconv.Itoa(int(c.s.opts.MaxRequestBytes)),
				"log.dirs":                  c.s.hub.DataDir(),
			}
		default:
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = kmsg.StringPtr("only topic and broker configs are described")
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		for _, k := range sortedConfigNames(configs) {
			if len(r.ConfigNames) > 0 && !contains(r.ConfigNames, k) {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name, rc.Value, rc.IsDefault = k, kmsg.StringPtr(configs[k]), defaults[k]
			rc.ReadOnly = r.ResourceType == kmsg.ConfigResourceTypeBroker || hub.FixedKafkaConfig(k) || isDelayStat(k)
			rc.Source = kmsg.ConfigSourceDynamicTopicConfig
			if defaults[k] || r.ResourceType == kmsg.ConfigResourceTypeBroker {
				rc.Source = kmsg.ConfigSourceDefaultConfig
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return ready(resp)
}

func sortedConfigNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// alterTopicConfig applies configs to the current config of a topic
// (incremental) or to the hub's defaults (AlterConfigs, which replaces the
// whole set) and asks the hub to apply the result.
func alterTopicConfig(c *conn, name string, incremental, validateOnly bool, apply func(cfg *hub.DatasetConfig, defaults hub.DatasetConfig) error) error {
	ds, err := c.s.hub.Dataset(name)
	if err != nil {
		return err
	}
	cur, defaults := ds.Config(), c.s.hub.Defaults()
	cfg := cur
	if !incremental {
		// Every config not given returns to its default; the partition
		// count and the fsync policy are not reset (the first is not a
		// config, the second is fixed while the dataset is open).
		cfg = defaults
		cfg.Partitions, cfg.Fsync, cfg.FsyncInterval = cur.Partitions, cur.Fsync, cur.FsyncInterval
	}
	if err := apply(&cfg, defaults); err != nil {
		return err
	}
	_, changed, err := c.s.hub.AlterDataset(name, cfg, validateOnly)
	if err == nil && len(changed) > 0 && !validateOnly {
		c.s.opts.Logger.Info("kafka: topic config altered", "topic", name, "changes", changed, "client", c.remote)
	}
	return err
}

// settable refuses a config that would be accepted and change nothing.
func settable(key string) error {
	if hub.IgnoredKafkaConfig(key) {
		return fmt.Errorf("%w: %s has no effect in Weir (it keeps each producer's compression and timestamps, and has one replica)", hub.ErrInvalidConfig, key)
	}
	return nil
}

func brokerConfigsFixed() error {
	return fmt.Errorf("%w: broker configs are set by weir serve's flags and configuration file", hub.ErrInvalidConfig)
}

func handleAlterConfigs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		var err error
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			err = alterTopicConfig(c, r.ResourceName, false, req.ValidateOnly, func(cfg *hub.DatasetConfig, _ hub.DatasetConfig) error {
				for _, kv := range r.Configs {
					if kv.Value == nil {
						continue
					}
					if err := settable(kv.Name); err != nil {
						return err
					}
					if err := cfg.ApplyKafkaConfig(kv.Name, *kv.Value); err != nil {
						return err
					}
				}
				return nil
			})
		case kmsg.ConfigResourceTypeBroker:
			err = brokerConfigsFixed()
		default:
			err = fmt.Errorf("%w: only topic configs can be altered", hub.ErrInvalidConfig)
		}
		rr.ErrorCode, rr.ErrorMessage = errCode(err), errMessage(err)
		resp.Resources = append(resp.Resources, rr)
	}
	return ready(resp)
}

func handleIncrementalAlterConfigs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, r := range req.Resources {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		var err error
		switch r.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			err = alterTopicConfig(c, r.ResourceName, true, req.ValidateOnly, func(cfg *hub.DatasetConfig, defaults hub.DatasetConfig) error {
				for _, kv := range r.Configs {
					if err := settable(kv.Name); err != nil {
						return err
					}
					switch kv.Op {
					case kmsg.IncrementalAlterConfigOpSet:
						if kv.Value == nil {
							return fmt.Errorf("%w: %s: SET without a value", hub.ErrInvalidConfig, kv.Name)
						}
						if err := cfg.ApplyKafkaConfig(kv.Name, *kv.Value); err != nil {
							return err
						}
					case kmsg.IncrementalAlterConfigOpDelete:
						if err := cfg.ResetKafkaConfig(kv.Name, defaults); err != nil {
							return err
						}
					default: // APPEND and SUBTRACT apply to list configs; Weir has none
						return fmt.Errorf("%w: %s: %v applies only to list configs", hub.ErrInvalidConfig, kv.Name, kv.Op)
					}
				}
				return nil
			})
		case kmsg.ConfigResourceTypeBroker:
			err = brokerConfigsFixed()
		default:
			err = fmt.Errorf("%w: only topic configs can be altered", hub.ErrInvalidConfig)
		}
		rr.ErrorCode, rr.ErrorMessage = errCode(err), errMessage(err)
		resp.Resources = append(resp.Resources, rr)
	}
	return ready(resp)
}

func handleDeleteGroups(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, g := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = g
		err := c.s.hub.DeleteGroup(g)
		rg.ErrorCode = errCode(err)
		if err == nil {
			c.s.opts.Logger.Info("kafka: group deleted", "group", g, "client", c.remote)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return ready(resp)
}

func handleOffsetDelete(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	var tps []hub.TopicPartition
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			tps = append(tps, hub.TopicPartition{Topic: t.Topic, Partition: p.Partition})
		}
	}
	err := c.s.hub.DeleteOffsets(req.Group, tps)
	switch {
	case errors.Is(err, hub.ErrGroupNotEmpty):
		// Kafka answers per partition that the group is subscribed.
	case err != nil:
		resp.ErrorCode = errCode(err)
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if errors.Is(err, hub.ErrGroupNotEmpty) {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}

func handleDeleteRecords(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewDeleteRecordsResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewDeleteRecordsResponseTopicPartition()
			rp.Partition = p.Partition
			low, err := c.s.hub.DeleteRecords(t.Topic, p.Partition, p.Offset)
			rp.LowWatermark, rp.ErrorCode = low, errCode(err)
			if err == nil {
				c.s.opts.Logger.Info("kafka: records deleted", "topic", t.Topic, "partition", p.Partition, "below", low, "client", c.remote)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return ready(resp)
}
