package kafka

import (
	"errors"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
	"github.com/weirhub/weir/internal/auth"
)

// Authorisation, in Kafka's model (see auth.ACLs). With Security.ACLs
// set every request is authorised before its handler runs: super users may
// do anything; others need an ACL that allows the operation on each
// resource the request names, and no ACL that denies it. A resource no
// ACL names at all is refused, unless Security.AllowIfNoACL is set
// (Kafka's allow.everyone.if.no.acl.found, false by default there and
// here).
//
// A request naming several resources is refused whole when any one is
// refused (every topic or group gets the error code), except Produce and
// Fetch, which serve the topics allowed and refuse the others, Metadata, which
// leaves out topics the principal may not describe, as Kafka does, and
// ListGroups, which leaves out groups.

const (
	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opAlter           = kmsg.ACLOperationAlter
	opDescribe        = kmsg.ACLOperationDescribe
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
	opAlterConfigs    = kmsg.ACLOperationAlterConfigs
	opIdempotentWrite = kmsg.ACLOperationIdempotentWrite

	rtTopic   = kmsg.ACLResourceTypeTopic
	rtGroup   = kmsg.ACLResourceTypeGroup
	rtCluster = kmsg.ACLResourceTypeCluster
	rtTxn     = kmsg.ACLResourceTypeTransactionalId
)

// clusterName is the one cluster resource's name, as Kafka's.
const clusterName = "kafka-cluster"

// errTopicAuthorization marks a fetched partition of a topic the
// principal may not read.
var errTopicAuthorization = errors.New("kafka: not authorised to read the topic")

func init() {
	errorCodes = append([]struct {
		err  error
		code *kerr.Error
	}{{errTopicAuthorization, kerr.TopicAuthorizationFailed}}, errorCodes...)
}

// deniedFetch returns the topics of req the principal may not read, or
// nil when it may read them all (or there are no ACLs).
func (c *conn) deniedFetch(req *kmsg.FetchRequest) map[string]bool {
	if c.s.opts.Security.ACLs == nil {
		return nil
	}
	var denied map[string]bool
	for _, t := range req.Topics {
		if !c.allowed(rtTopic, t.Topic, opRead) {
			if denied == nil {
				denied = map[string]bool{}
			}
			denied[t.Topic] = true
		}
	}
	return denied
}

// withRefusals spreads the results of the partitions fetched (at[i] is
// the place of results[i]) over n results, the others refused.
func withRefusals(results []hub.FetchResult, at []int, n int) []hub.FetchResult {
	all := make([]hub.FetchResult, n)
	for i := range all {
		all[i] = hub.FetchResult{Err: errTopicAuthorization, HighWatermark: -1, LogStartOffset: -1}
	}
	for i, j := range at {
		all[j] = results[i]
	}
	return all
}

// allowed reports whether the connection's principal may perform op on
// the resource.
func (c *conn) allowed(rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation) bool {
	sec := &c.s.opts.Security
	if sec.ACLs == nil {
		return true
	}
	p := c.principal()
	if slices.Contains(sec.SuperUsers, p) {
		return true
	}
	ok, found := sec.ACLs.Authorize(p, auth.Host(c.remote), rt, name, op)
	if !found && sec.AllowIfNoACL {
		return true
	}
	if !ok {
		c.s.opts.Logger.Debug("kafka: refused", "principal", p, "remote", c.remote, "resource", rt.String(), "name", name, "operation", op.String())
	}
	return ok
}

// allowedTopics reports whether op is allowed on every topic.
func (c *conn) allowedTopics(op kmsg.ACLOperation, topics ...string) bool {
	for _, t := range topics {
		if !c.allowed(rtTopic, t, op) {
			return false
		}
	}
	return true
}

// mayCreate reports whether the principal may create topic (Create on
// the cluster or on the topic).
func (c *conn) mayCreate(topic string) bool {
	return c.allowed(rtCluster, clusterName, opCreate) || c.allowed(rtTopic, topic, opCreate)
}

// dispatch authorises req and runs its handler, or answers with the
// refusal.
func (c *conn) dispatch(a api, h *header, req kmsg.Request) *pending {
	if c.s.opts.Security.ACLs == nil {
		return a.handle(c, h, req)
	}
	if p := c.authorize(h, req); p != nil {
		return p
	}
	p := a.handle(c, h, req)
	if p != nil && p.ready == nil && p.resp != nil {
		c.filter(p.resp)
	}
	return p
}

// filter removes from a response what the principal may not see.
func (c *conn) filter(resp kmsg.Response) {
	switch r := resp.(type) {
	case *kmsg.MetadataResponse:
		r.Topics = slices.DeleteFunc(r.Topics, func(t kmsg.MetadataResponseTopic) bool {
			return t.Topic != nil && t.ErrorCode != kerr.TopicAuthorizationFailed.Code && !c.allowed(rtTopic, *t.Topic, opDescribe)
		})
	case *kmsg.ListGroupsResponse:
		if !c.allowed(rtCluster, clusterName, opDescribe) {
			r.Groups = slices.DeleteFunc(r.Groups, func(g kmsg.ListGroupsResponseGroup) bool {
				return !c.allowed(rtGroup, g.Group, opDescribe)
			})
		}
	}
}

var (
	topicDenied   = kerr.TopicAuthorizationFailed.Code
	groupDenied   = kerr.GroupAuthorizationFailed.Code
	clusterDenied = kerr.ClusterAuthorizationFailed.Code
	txnDenied     = kerr.TransactionalIDAuthorizationFailed.Code
)

// authorize returns the refusal of req, or nil when it is allowed.
func (c *conn) authorize(h *header, kreq kmsg.Request) *pending {
	switch req := kreq.(type) {
	case *kmsg.ApiVersionsRequest, *kmsg.SASLHandshakeRequest, *kmsg.SASLAuthenticateRequest:
		return nil

	case *kmsg.MetadataRequest:
		// Topics the principal may not describe are answered
		// TOPIC_AUTHORIZATION_FAILED; missing ones it may not create are
		// not created. The listing of all topics is filtered afterwards.
		var denied []kmsg.MetadataResponseTopic
		kept := req.Topics[:0:0]
		for _, t := range req.Topics {
			if t.Topic == nil {
				kept = append(kept, t)
				continue
			}
			code := int16(0)
			switch {
			case !c.allowed(rtTopic, *t.Topic, opDescribe):
				code = topicDenied
			case !c.mayCreate(*t.Topic):
				if _, err := c.s.hub.Dataset(*t.Topic); err != nil {
					code = kerr.UnknownTopicOrPartition.Code
				}
			}
			if code == 0 {
				kept = append(kept, t)
				continue
			}
			rt := kmsg.NewMetadataResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, code
			denied = append(denied, rt)
		}
		if len(denied) == 0 {
			return nil
		}
		if len(kept) == 0 {
			// Nothing left to ask: answer with the brokers and the
			// refusals (an empty list would mean all topics in v0).
			a := apis[h.key]
			empty := *req
			empty.Topics = []kmsg.MetadataRequestTopic{}
			if h.version == 0 {
				empty.Topics = nil
			}
			p := a.handle(c, h, &empty)
			resp := p.resp.(*kmsg.MetadataResponse)
			resp.Topics = denied
			return p
		}
		req.Topics = kept
		p := apis[h.key].handle(c, h, req)
		resp := p.resp.(*kmsg.MetadataResponse)
		c.filter(resp)
		resp.Topics = append(resp.Topics, denied...)
		return p

	case *kmsg.ProduceRequest:
		// Refused topics get the error; the others are stored, as Kafka
		// does. A transactional id the principal may not write refuses all.
		txnOK := req.TransactionID == nil || c.allowed(rtTxn, *req.TransactionID, opWrite)
		var kept, denied []kmsg.ProduceRequestTopic
		for _, t := range req.Topics {
			ok := txnOK && c.allowed(rtTopic, t.Topic, opWrite)
			if ok {
				if _, err := c.s.hub.Dataset(t.Topic); err != nil && !c.mayCreate(t.Topic) {
					ok = false
				}
			}
			if ok {
				kept = append(kept, t)
			} else {
				denied = append(denied, t)
			}
		}
		if len(denied) == 0 {
			return nil
		}
		if req.Acks == 0 {
			return &pending{closeAfter: true, write: func(*conn) error { return nil }}
		}
		code := topicDenied
		if !txnOK {
			code = txnDenied
		}
		refusals := make([]kmsg.ProduceResponseTopic, 0, len(denied))
		for _, t := range denied {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			refusals = append(refusals, rt)
		}
		if len(kept) == 0 {
			resp := req.ResponseKind().(*kmsg.ProduceResponse)
			resp.Topics = refusals
			return ready(resp)
		}
		req.Topics = kept
		p := apis[h.key].handle(c, h, req)
		add := func() {
			p.resp.(*kmsg.ProduceResponse).Topics = append(p.resp.(*kmsg.ProduceResponse).Topics, refusals...)
		}
		if p.ready == nil {
			add()
			return p
		}
		// The stored part completes later: add the refusals once it has.
		out := &pending{ready: make(chan struct{}), done: p.done, closeAfter: p.closeAfter}
		go func() {
			<-p.ready
			add()
			out.resp = p.resp
			close(out.ready)
		}()
		return out

	case *kmsg.FetchRequest:
		return nil // handleFetch refuses the topics deniedFetch names

	case *kmsg.ListOffsetsRequest:
		for _, t := range req.Topics {
			if !c.allowed(rtTopic, t.Topic, opDescribe) {
				resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
				for _, t := range req.Topics {
					rt := kmsg.NewListOffsetsResponseTopic()
					rt.Topic = t.Topic
					for _, p := range t.Partitions {
						rp := kmsg.NewListOffsetsResponseTopicPartition()
						rp.Partition, rp.ErrorCode = p.Partition, topicDenied
						rt.Partitions = append(rt.Partitions, rp)
					}
					resp.Topics = append(resp.Topics, rt)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.OffsetForLeaderEpochRequest:
		for _, t := range req.Topics {
			if !c.allowed(rtTopic, t.Topic, opDescribe) {
				resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
				for _, t := range req.Topics {
					rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
					rt.Topic = t.Topic
					for _, p := range t.Partitions {
						rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
						rp.Partition, rp.ErrorCode = p.Partition, topicDenied
						rt.Partitions = append(rt.Partitions, rp)
					}
					resp.Topics = append(resp.Topics, rt)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.OffsetCommitRequest:
		code := int16(0)
		if !c.allowed(rtGroup, req.Group, opRead) {
			code = groupDenied
		} else {
			for _, t := range req.Topics {
				if !c.allowed(rtTopic, t.Topic, opRead) {
					code = topicDenied
				}
			}
		}
		if code == 0 {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)

	case *kmsg.OffsetFetchRequest:
		groups := []string{req.Group}
		if len(req.Groups) > 0 {
			groups = groups[:0]
			for _, g := range req.Groups {
				groups = append(groups, g.Group)
			}
		}
		for _, g := range groups {
			if !c.allowed(rtGroup, g, opDescribe) {
				resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
				resp.ErrorCode = groupDenied
				for _, g := range groups {
					rg := kmsg.NewOffsetFetchResponseGroup()
					rg.Group, rg.ErrorCode = g, groupDenied
					resp.Groups = append(resp.Groups, rg)
				}
				if h.version < 8 {
					resp.Groups = nil
					for _, t := range req.Topics {
						rt := kmsg.NewOffsetFetchResponseTopic()
						rt.Topic = t.Topic
						for _, p := range t.Partitions {
							rp := kmsg.NewOffsetFetchResponseTopicPartition()
							rp.Partition, rp.ErrorCode, rp.Offset = p, groupDenied, -1
							rt.Partitions = append(rt.Partitions, rp)
						}
						resp.Topics = append(resp.Topics, rt)
					}
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.FindCoordinatorRequest:
		keys := req.CoordinatorKeys
		if h.version < 4 {
			keys = []string{req.CoordinatorKey}
		}
		rt, code := rtGroup, groupDenied
		if req.CoordinatorType == 1 {
			rt, code = rtTxn, txnDenied
		}
		for _, k := range keys {
			if !c.allowed(rt, k, opDescribe) {
				resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
				resp.ErrorCode = code
				for _, k := range keys {
					rc := kmsg.NewFindCoordinatorResponseCoordinator()
					rc.Key, rc.ErrorCode = k, code
					resp.Coordinators = append(resp.Coordinators, rc)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.JoinGroupRequest:
		if c.allowed(rtGroup, req.Group, opRead) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = groupDenied
		return ready(resp)
	case *kmsg.SyncGroupRequest:
		if c.allowed(rtGroup, req.Group, opRead) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = groupDenied
		return ready(resp)
	case *kmsg.HeartbeatRequest:
		if c.allowed(rtGroup, req.Group, opRead) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = groupDenied
		return ready(resp)
	case *kmsg.LeaveGroupRequest:
		if c.allowed(rtGroup, req.Group, opRead) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = groupDenied
		return ready(resp)

	case *kmsg.DescribeGroupsRequest:
		for _, g := range req.Groups {
			if !c.allowed(rtGroup, g, opDescribe) {
				resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
				for _, g := range req.Groups {
					rg := kmsg.NewDescribeGroupsResponseGroup()
					rg.Group, rg.ErrorCode = g, groupDenied
					resp.Groups = append(resp.Groups, rg)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.ListGroupsRequest:
		return nil // filtered

	case *kmsg.DeleteGroupsRequest:
		for _, g := range req.Groups {
			if !c.allowed(rtGroup, g, opDelete) {
				resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
				for _, g := range req.Groups {
					rg := kmsg.NewDeleteGroupsResponseGroup()
					rg.Group, rg.ErrorCode = g, groupDenied
					resp.Groups = append(resp.Groups, rg)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.OffsetDeleteRequest:
		code := int16(0)
		if !c.allowed(rtGroup, req.Group, opDelete) {
			code = groupDenied
		} else {
			for _, t := range req.Topics {
				if !c.allowed(rtTopic, t.Topic, opRead) {
					code = topicDenied
				}
			}
		}
		if code == 0 {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = code
		return ready(resp)

	case *kmsg.InitProducerIDRequest:
		ok := true
		code := clusterDenied
		if req.TransactionalID != nil {
			ok, code = c.allowed(rtTxn, *req.TransactionalID, opWrite), txnDenied
		} else if !c.allowed(rtCluster, clusterName, opIdempotentWrite) {
			// As Kafka 3.0+: Write on any topic is enough for an
			// idempotent producer.
			ok = c.writesAnyTopic()
		}
		if ok {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = code, -1, -1
		return ready(resp)

	case *kmsg.CreateTopicsRequest:
		for _, t := range req.Topics {
			if !c.mayCreate(t.Topic) {
				resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
				for _, t := range req.Topics {
					rt := kmsg.NewCreateTopicsResponseTopic()
					rt.Topic, rt.ErrorCode = t.Topic, topicDenied
					resp.Topics = append(resp.Topics, rt)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.DeleteTopicsRequest:
		names := req.TopicNames
		for _, t := range req.Topics {
			if t.Topic != nil {
				names = append(names, *t.Topic)
			}
		}
		if c.allowedTopics(opDelete, names...) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
		for _, n := range names {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = kmsg.StringPtr(n), topicDenied
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)

	case *kmsg.DeleteRecordsRequest:
		for _, t := range req.Topics {
			if !c.allowed(rtTopic, t.Topic, opDelete) {
				resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
				for _, t := range req.Topics {
					rt := kmsg.NewDeleteRecordsResponseTopic()
					rt.Topic = t.Topic
					for _, p := range t.Partitions {
						rp := kmsg.NewDeleteRecordsResponseTopicPartition()
						rp.Partition, rp.ErrorCode, rp.LowWatermark = p.Partition, topicDenied, -1
						rt.Partitions = append(rt.Partitions, rp)
					}
					resp.Topics = append(resp.Topics, rt)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.CreatePartitionsRequest:
		for _, t := range req.Topics {
			if !c.allowed(rtTopic, t.Topic, opAlter) {
				resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
				for _, t := range req.Topics {
					rt := kmsg.NewCreatePartitionsResponseTopic()
					rt.Topic, rt.ErrorCode = t.Topic, topicDenied
					resp.Topics = append(resp.Topics, rt)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.DescribeConfigsRequest:
		for _, r := range req.Resources {
			if !c.configAllowed(r.ResourceType, r.ResourceName, opDescribeConfigs) {
				resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
				for _, r := range req.Resources {
					rr := kmsg.NewDescribeConfigsResponseResource()
					rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, configDenied(r.ResourceType)
					resp.Resources = append(resp.Resources, rr)
				}
				return ready(resp)
			}
		}
		return nil
	case *kmsg.AlterConfigsRequest:
		for _, r := range req.Resources {
			if !c.configAllowed(r.ResourceType, r.ResourceName, opAlterConfigs) {
				resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
				for _, r := range req.Resources {
					rr := kmsg.NewAlterConfigsResponseResource()
					rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, configDenied(r.ResourceType)
					resp.Resources = append(resp.Resources, rr)
				}
				return ready(resp)
			}
		}
		return nil
	case *kmsg.IncrementalAlterConfigsRequest:
		for _, r := range req.Resources {
			if !c.configAllowed(r.ResourceType, r.ResourceName, opAlterConfigs) {
				resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
				for _, r := range req.Resources {
					rr := kmsg.NewIncrementalAlterConfigsResponseResource()
					rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, configDenied(r.ResourceType)
					resp.Resources = append(resp.Resources, rr)
				}
				return ready(resp)
			}
		}
		return nil

	case *kmsg.DescribeUserSCRAMCredentialsRequest:
		if c.allowed(rtCluster, clusterName, opDescribe) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
		resp.ErrorCode = clusterDenied
		return ready(resp)
	case *kmsg.AlterUserSCRAMCredentialsRequest:
		if c.allowed(rtCluster, clusterName, opAlter) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
		for _, d := range req.Deletions {
			r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			r.User, r.ErrorCode = d.Name, clusterDenied
			resp.Results = append(resp.Results, r)
		}
		for _, u := range req.Upsertions {
			r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			r.User, r.ErrorCode = u.Name, clusterDenied
			resp.Results = append(resp.Results, r)
		}
		return ready(resp)

	case *kmsg.AddPartitionsToTxnRequest:
		// Write on the transactional id and on every topic (v3); v4+
		// batches transactions, refused whole (sent by brokers only).
		code := int16(0)
		if h.version >= 4 {
			if !c.allowed(rtCluster, clusterName, kmsg.ACLOperationClusterAction) {
				code = clusterDenied
			}
		} else if !c.allowed(rtTxn, req.TransactionalID, opWrite) {
			code = txnDenied
		} else {
			for _, t := range req.Topics {
				if !c.allowed(rtTopic, t.Topic, opWrite) {
					code = topicDenied
				}
			}
		}
		if code == 0 {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		if h.version >= 4 {
			resp.ErrorCode = code
			return ready(resp)
		}
		for _, t := range req.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)
	case *kmsg.AddOffsetsToTxnRequest:
		code := int16(0)
		switch {
		case !c.allowed(rtTxn, req.TransactionalID, opWrite):
			code = txnDenied
		case !c.allowed(rtGroup, req.Group, opRead):
			code = groupDenied
		}
		if code == 0 {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = code
		return ready(resp)
	case *kmsg.EndTxnRequest:
		if c.allowed(rtTxn, req.TransactionalID, opWrite) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = txnDenied
		return ready(resp)
	case *kmsg.TxnOffsetCommitRequest:
		code := int16(0)
		switch {
		case !c.allowed(rtTxn, req.TransactionalID, opWrite):
			code = txnDenied
		case !c.allowed(rtGroup, req.Group, opRead):
			code = groupDenied
		default:
			for _, t := range req.Topics {
				if !c.allowed(rtTopic, t.Topic, opRead) {
					code = topicDenied
				}
			}
		}
		if code == 0 {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return ready(resp)
	case *kmsg.DescribeTransactionsRequest:
		for _, id := range req.TransactionalIDs {
			if !c.allowed(rtTxn, id, opDescribe) {
				resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
				for _, id := range req.TransactionalIDs {
					st := kmsg.NewDescribeTransactionsResponseTransactionState()
					st.TransactionalID, st.ErrorCode = id, txnDenied
					resp.TransactionStates = append(resp.TransactionStates, st)
				}
				return ready(resp)
			}
		}
		return nil
	case *kmsg.ListTransactionsRequest:
		if c.allowed(rtCluster, clusterName, opDescribe) {
			return nil
		}
		// As Kafka: only the transactions the principal may describe; a
		// principal without cluster Describe sees none listed here.
		return ready(req.ResponseKind())

	case *kmsg.DescribeLogDirsRequest:
		if c.allowed(rtCluster, clusterName, opDescribe) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
		resp.ErrorCode = clusterDenied
		return ready(resp)
	case *kmsg.DescribeACLsRequest:
		if c.allowed(rtCluster, clusterName, opDescribe) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
		resp.ErrorCode = clusterDenied
		return ready(resp)
	case *kmsg.CreateACLsRequest:
		if c.allowed(rtCluster, clusterName, opAlter) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
		for range req.Creations {
			r := kmsg.NewCreateACLsResponseResult()
			r.ErrorCode = clusterDenied
			resp.Results = append(resp.Results, r)
		}
		return ready(resp)
	case *kmsg.DeleteACLsRequest:
		if c.allowed(rtCluster, clusterName, opAlter) {
			return nil
		}
		resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
		for range req.Filters {
			r := kmsg.NewDeleteACLsResponseResult()
			r.ErrorCode = clusterDenied
			resp.Results = append(resp.Results, r)
		}
		return ready(resp)
	}
	// Anything else (new APIs, cluster administration) is for those
	// allowed to alter the cluster; the connection closes, since a refusal
	// cannot be shaped for a request this does not know.
	if c.allowed(rtCluster, clusterName, opAlter) {
		return nil
	}
	return &pending{closeAfter: true, write: func(*conn) error { return nil }}
}

// writesAnyTopic reports whether some ACL lets the principal write to a
// topic (enough for an idempotent producer since Kafka 3.0).
func (c *conn) writesAnyTopic() bool {
	p := c.principal()
	for _, a := range c.s.opts.Security.ACLs.Describe(auth.Filter{ResourceType: rtTopic, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAllow}) {
		if (a.Principal == p || a.Principal == "User:*") && (a.Operation == opWrite || a.Operation == kmsg.ACLOperationAll) {
			return true
		}
	}
	return false
}

// configAllowed authorises configs of a topic (2) or the broker (4).
func (c *conn) configAllowed(rt kmsg.ConfigResourceType, name string, op kmsg.ACLOperation) bool {
	if rt == kmsg.ConfigResourceTypeTopic {
		return c.allowed(rtTopic, name, op)
	}
	return c.allowed(rtCluster, clusterName, op)
}

func configDenied(rt kmsg.ConfigResourceType) int16 {
	if rt == kmsg.ConfigResourceTypeTopic {
		return topicDenied
	}
	return clusterDenied
}
