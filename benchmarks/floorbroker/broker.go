package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxRequest is the largest request accepted (Kafka's
// socket.request.max.bytes).
const maxRequest = 100 << 20

// nodeID is the one broker's id.
const nodeID = 0

// versions are the API versions advertised: those weir serve advertises
// for the same APIs (hub/kafka/apis.go), so that the clients send the same
// requests to both, except Produce from v3 (the record batch format; the
// older message sets are not read here) and ListOffsets up to v6 (v7's max
// timestamp lookup is not answered).
var versions = map[int16][2]int16{
	0:  {3, 11}, // Produce
	1:  {4, 12}, // Fetch
	2:  {1, 6},  // ListOffsets
	3:  {0, 12}, // Metadata
	18: {0, 3},  // ApiVersions
	19: {0, 7},  // CreateTopics
	20: {0, 5},  // DeleteTopics
	22: {0, 4},  // InitProducerID
}

type topic struct {
	id    [16]byte
	parts []*partition
}

// broker serves the Kafka protocol from memory on one listener.
type broker struct {
	ln     net.Listener
	host   string
	port   int32
	retain int64

	mu      sync.RWMutex
	topics  map[string]*topic
	nextPID int64
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

func newBroker(ln net.Listener, retain int64) (*broker, error) {
	host, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("listener port %q: %w", port, err)
	}
	return &broker{ln: ln, host: host, port: int32(p), retain: retain, topics: map[string]*topic{}, conns: map[net.Conn]struct{}{}}, nil
}

// serve accepts connections until close.
func (b *broker) serve() {
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			b.mu.RLock()
			closed := b.closed
			b.mu.RUnlock()
			if !closed {
				fmt.Fprintf(os.Stderr, "floorbroker: accept: %v\n", err)
			}
			return
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			nc.Close()
			return
		}
		b.conns[nc] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			err := b.handle(nc)
			b.mu.Lock()
			delete(b.conns, nc)
			closed := b.closed
			b.mu.Unlock()
			nc.Close()
			if err != nil && !closed && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				fmt.Fprintf(os.Stderr, "floorbroker: connection %s: %v\n", nc.RemoteAddr(), err)
			}
		}()
	}
}

// close stops accepting, closes every connection and waits for their
// goroutines.
func (b *broker) close() {
	b.mu.Lock()
	b.closed = true
	for nc := range b.conns {
		nc.Close()
	}
	b.mu.Unlock()
	b.ln.Close()
	b.wg.Wait()
}

// conn is one client connection's state, touched by its goroutine only.
type conn struct {
	b    *broker
	nc   net.Conn
	r    *bufio.Reader
	req  []byte   // the request being handled
	out  []byte   // answers not written yet
	held []*chunk // chunks the fetch being answered reads from
}

// handle reads requests from nc and answers each in order until the client
// goes away or sends something this broker cannot answer.
func (b *broker) handle(nc net.Conn) error {
	c := &conn{b: b, nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	defer c.releaseHeld()
	var size [4]byte
	for {
		if _, err := io.ReadFull(c.r, size[:]); err != nil {
			return err
		}
		n := int32(binary.BigEndian.Uint32(size[:]))
		if n < 8 || n > maxRequest {
			return fmt.Errorf("request of %d bytes: want 8 to %d", n, maxRequest)
		}
		if cap(c.req) < int(n) {
			c.req = make([]byte, n)
		}
		c.req = c.req[:n]
		if _, err := io.ReadFull(c.r, c.req); err != nil {
			return err
		}
		if err := c.serveOne(); err != nil {
			return err
		}
		// Answers to pipelined requests already here whole go out in one
		// write; the rest at once.
		if !c.wholeRequestBuffered() {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
}

// wholeRequestBuffered reports whether the next request is in c.r whole,
// so that reading it does not wait on the socket.
func (c *conn) wholeRequestBuffered() bool {
	n := c.r.Buffered()
	if n < 4 {
		return false
	}
	size, _ := c.r.Peek(4)
	return n-4 >= int(binary.BigEndian.Uint32(size))
}

func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err
}

// serveOne decodes the request in c.req, handles it and appends its answer
// to c.out.
func (c *conn) serveOne() error {
	key := int16(binary.BigEndian.Uint16(c.req[0:]))
	version := int16(binary.BigEndian.Uint16(c.req[2:]))
	corr := int32(binary.BigEndian.Uint32(c.req[4:]))
	body := c.req[8:]
	// Client id: a nullable string.
	if len(body) < 2 {
		return errors.New("request header cut short")
	}
	if l := int16(binary.BigEndian.Uint16(body)); l > 0 {
		if len(body) < 2+int(l) {
			return errors.New("request header cut short")
		}
		body = body[2+int(l):]
	} else {
		body = body[2:]
	}
	vr, ok := versions[key]
	if !ok {
		return fmt.Errorf("request key %d: not an API this broker advertises", key)
	}
	if key == 18 && version > vr[1] {
		// A newer ApiVersions than known: answer v0 with the error, as
		// Kafka does, so the client retries with one of ours.
		resp := apiVersions(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		c.appendResponse(corr, false, resp)
		return nil
	}
	if version < vr[0] || version > vr[1] {
		return fmt.Errorf("request key %d version %d: want %d to %d", key, version, vr[0], vr[1])
	}
	req := kmsg.RequestForKey(key)
	req.SetVersion(version)
	flexible := req.IsFlexible()
	if flexible {
		var err error
		if body, err = skipTags(body); err != nil {
			return fmt.Errorf("request key %d header tags: %w", key, err)
		}
	}
	// The request's byte and string fields alias c.req: nothing of it is
	// kept after the answer is appended (produce copies its batch).
	if err := req.(interface{ UnsafeReadFrom([]byte) error }).UnsafeReadFrom(body); err != nil {
		return fmt.Errorf("request key %d version %d: %w", key, version, err)
	}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		resp = apiVersions(version)
		flexible = false // ApiVersions answers with header v0 always
	case *kmsg.MetadataRequest:
		resp = c.b.metadata(r)
	case *kmsg.CreateTopicsRequest:
		resp = c.b.createTopics(r)
	case *kmsg.DeleteTopicsRequest:
		resp = c.b.deleteTopics(r)
	case *kmsg.InitProducerIDRequest:
		resp = c.b.initProducerID(r)
	case *kmsg.ListOffsetsRequest:
		resp = c.b.listOffsets(r)
	case *kmsg.ProduceRequest:
		resp = c.b.produce(r)
		if r.Acks == 0 {
			return nil // acks=0: no answer
		}
	case *kmsg.FetchRequest:
		resp = c.fetch(r)
		defer c.releaseHeld() // once the answer holds a copy
	default:
		return fmt.Errorf("request key %d: no handler", key)
	}
	c.appendResponse(corr, flexible, resp)
	return nil
}

// appendResponse frames resp (size, correlation id, empty tags when
// flexible) onto c.out.
func (c *conn) appendResponse(corr int32, flexible bool, resp kmsg.Response) {
	start := len(c.out)
	c.out = append(c.out, 0, 0, 0, 0)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(corr))
	if flexible {
		c.out = append(c.out, 0)
	}
	c.out = resp.AppendTo(c.out)
	binary.BigEndian.PutUint32(c.out[start:], uint32(len(c.out)-start-4))
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil, errors.New("bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

func apiVersions(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	keys := make([]int16, 0, len(versions))
	for k := range versions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := kmsg.NewApiVersionsResponseApiKey()
		a.ApiKey, a.MinVersion, a.MaxVersion = k, versions[k][0], versions[k][1]
		resp.ApiKeys = append(resp.ApiKeys, a)
	}
	return resp
}

// partition returns a topic's partition, or nil.
func (b *broker) partition(name string, p int32) *partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[name]
	if t == nil || p < 0 || int(p) >= len(t.parts) {
		return nil
	}
	return t.parts[p]
}

func (b *broker) metadata(req *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	br := kmsg.NewMetadataResponseBroker()
	br.NodeID, br.Host, br.Port = nodeID, b.host, b.port
	resp.Brokers = []kmsg.MetadataResponseBroker{br}
	resp.ClusterID = kmsg.StringPtr("floorbroker")
	resp.ControllerID = nodeID
	b.mu.RLock()
	defer b.mu.RUnlock()
	var names []string
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		for name := range b.topics {
			names = append(names, name)
		}
		slices.Sort(names)
	} else {
		for _, t := range req.Topics {
			if t.Topic != nil {
				names = append(names, *t.Topic)
			}
		}
	}
	for _, name := range names {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr(name) // a copy: name may alias the request
		t := b.topics[name]
		if t == nil {
			// No automatic creation: topics are made with CreateTopics.
			rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, rt)
			continue
		}
		rt.TopicID = t.id
		for i := range t.parts {
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Partition, p.Leader, p.LeaderEpoch = int32(i), nodeID, 0
			p.Replicas, p.ISR = []int32{nodeID}, []int32{nodeID}
			rt.Partitions = append(rt.Partitions, p)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (b *broker) createTopics(req *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range req.Topics {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = string([]byte(rt.Topic))
		n, rf := rt.NumPartitions, rt.ReplicationFactor
		if n == -1 {
			n = 1
		}
		if rf == -1 {
			rf = 1
		}
		switch {
		case b.topics[t.Topic] != nil:
			t.ErrorCode = kerr.TopicAlreadyExists.Code
		case rt.Topic == "" || len(rt.Topic) > 249:
			t.ErrorCode = kerr.InvalidTopicException.Code
		case len(rt.ReplicaAssignment) > 0:
			t.ErrorCode = kerr.InvalidReplicaAssignment.Code
		case n < 1 || n > 1<<16:
			t.ErrorCode = kerr.InvalidPartitions.Code
		case rf != 1:
			t.ErrorCode = kerr.InvalidReplicationFactor.Code
			t.ErrorMessage = kmsg.StringPtr("one broker: replication factor 1 only")
		case len(rt.Configs) > 0:
			t.ErrorCode = kerr.InvalidConfig.Code
			t.ErrorMessage = kmsg.StringPtr("floorbroker takes no topic configs")
		}
		if t.ErrorCode == 0 {
			t.NumPartitions, t.ReplicationFactor = n, rf
			if !req.ValidateOnly {
				nt := &topic{}
				_, _ = rand.Read(nt.id[:])
				for range n {
					nt.parts = append(nt.parts, newPartition(b.retain))
				}
				b.topics[t.Topic] = nt
				t.TopicID = nt.id
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (b *broker) deleteTopics(req *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range req.TopicNames {
		t := kmsg.NewDeleteTopicsResponseTopic()
		t.Topic = kmsg.StringPtr(string([]byte(name)))
		if old := b.topics[name]; old == nil {
			t.ErrorCode = kerr.UnknownTopicOrPartition.Code
		} else {
			delete(b.topics, name)
			for _, p := range old.parts {
				p.remove()
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (b *broker) initProducerID(req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		// No transaction coordinator here.
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if req.ProducerID >= 0 && req.ProducerID < b.nextPID && req.ProducerEpoch >= 0 && req.ProducerEpoch < 1<<15-1 {
		// KIP-360: the producer bumps its epoch and starts its sequences over.
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = b.nextPID, 0
	b.nextPID++
	return resp
}

func (b *broker) listOffsets(req *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = string([]byte(rt.Topic))
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition, p.Timestamp, p.Offset = rp.Partition, -1, -1
			part := b.partition(rt.Topic, rp.Partition)
			switch {
			case part == nil:
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.CurrentLeaderEpoch > 0:
				p.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case rp.Timestamp == -2:
				p.Offset, _ = part.offsets()
			case rp.Timestamp == -1:
				_, p.Offset = part.offsets()
			case rp.Timestamp >= 0:
				p.Offset, p.Timestamp = part.offsetForTime(rp.Timestamp)
			default:
				p.ErrorCode = kerr.InvalidRequest.Code
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (b *broker) produce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	code := int16(0)
	switch {
	case req.TransactionID != nil:
		code = kerr.InvalidRequest.Code // no transactions here: no transactional id gets a producer id
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		code = kerr.InvalidRequiredAcks.Code
	}
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = string([]byte(rt.Topic))
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition, p.BaseOffset, p.LogAppendTime, p.LogStartOffset = rp.Partition, -1, -1, -1
			p.ErrorCode = code
			if code == 0 {
				part := b.partition(rt.Topic, rp.Partition)
				h, err := checkBatch(rp.Records)
				switch {
				case part == nil:
					p.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case err != nil:
					p.ErrorCode = kerr.InvalidRecord.Code
				default:
					p.BaseOffset, p.ErrorCode = part.appendBatch(rp.Records, h)
					if p.ErrorCode == 0 {
						p.LogStartOffset, _ = part.offsets()
					}
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// fetch answers a fetch: at once when it has fetch.min.bytes ready or an
// error to tell, else once a produce to one of its partitions brings
// enough, or at fetch.max.wait. Answers already owed on the connection are
// written before it waits.
func (c *conn) fetch(req *kmsg.FetchRequest) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.SessionID != 0 {
		// Every answer says session 0 (none), so no client has one.
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.releaseHeld()
		resp.Topics = resp.Topics[:0]
		size, failed, wakes := c.fetchOnce(req, resp)
		if failed || size >= int(req.MinBytes) || len(wakes) == 0 {
			return resp
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return resp
		}
		if err := c.flush(); err != nil {
			return resp // the write's failure ends the connection at the next one
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		if len(wakes) == 1 {
			select {
			case <-wakes[0]:
			case <-timer.C:
				return c.fetchFinal(req, resp)
			}
			continue
		}
		cases := make([]reflect.SelectCase, 0, len(wakes)+1)
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
		for _, w := range wakes {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			return c.fetchFinal(req, resp)
		}
	}
}

// fetchFinal reads once more at fetch.max.wait and answers with what there is.
func (c *conn) fetchFinal(req *kmsg.FetchRequest, resp *kmsg.FetchResponse) *kmsg.FetchResponse {
	c.releaseHeld()
	resp.Topics = resp.Topics[:0]
	c.fetchOnce(req, resp)
	return resp
}

// releaseHeld releases the chunks the fetch being answered read from.
func (c *conn) releaseHeld() {
	for i, ch := range c.held {
		ch.release()
		c.held[i] = nil
	}
	c.held = c.held[:0]
}

// fetchOnce fills resp with what the fetched partitions hold now. It
// returns the record bytes in it, whether a partition answered with an
// error, and the wake channels of the partitions with nothing past the
// fetch offset.
// The chunks read from are in c.held until the answer is copied out.
func (c *conn) fetchOnce(req *kmsg.FetchRequest, resp *kmsg.FetchResponse) (size int, failed bool, wakes []<-chan struct{}) {
	b := c.b
	budget := int(req.MaxBytes)
	if req.Version < 3 || budget <= 0 {
		budget = 1<<31 - 1
	}
	for _, rt := range req.Topics {
		t := kmsg.NewFetchResponseTopic()
		t.Topic = rt.Topic // written out before the request's buffer is reused
		for _, rp := range rt.Partitions {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition, p.PreferredReadReplica = rp.Partition, -1
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset = -1, -1, -1
			part := b.partition(rt.Topic, rp.Partition)
			switch {
			case part == nil:
				p.ErrorCode, failed = kerr.UnknownTopicOrPartition.Code, true
			case rp.CurrentLeaderEpoch > 0:
				p.ErrorCode, failed = kerr.UnknownLeaderEpoch.Code, true
			default:
				limit := min(int(rp.PartitionMaxBytes), budget)
				data, held, start, hw, wake, code := part.read(rp.FetchOffset, limit, size == 0, req.MinBytes > 1)
				if held != nil {
					c.held = append(c.held, held)
				}
				p.ErrorCode, p.RecordBatches = code, data
				p.HighWatermark, p.LastStableOffset, p.LogStartOffset = hw, hw, start
				if code != 0 {
					failed = true
				}
				if wake != nil {
					wakes = append(wakes, wake)
				}
				size += len(data)
				budget -= len(data)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return size, failed, wakes
}
