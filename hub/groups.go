package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"
)

// GroupOptions configure the consumer group coordinator.
type GroupOptions struct {
	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a
	// member may ask for. Defaults 6s and 30m, as Kafka's.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay holds the first rebalance of an empty group
	// this long so that members starting together land in one
	// generation. Default 0 (Kafka's is 3s).
	InitialRebalanceDelay time.Duration
}

func (o *GroupOptions) setDefaults() {
	if o.MinSessionTimeout <= 0 {
		o.MinSessionTimeout = 6 * time.Second
	}
	if o.MaxSessionTimeout <= 0 {
		o.MaxSessionTimeout = 30 * time.Minute
	}
}

// GroupState is the state of a consumer group in the classic protocol.
type GroupState int

// The states of a group.
const (
	GroupEmpty GroupState = iota
	GroupPreparingRebalance
	GroupCompletingRebalance
	GroupStable
	GroupDead
)

func (s GroupState) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}[s]
}

// GroupProtocol is one assignment protocol a member supports, with its
// metadata (for "consumer" groups, its subscription).
type GroupProtocol struct {
	Name     string
	Metadata []byte
}

// JoinGroupRequest is a member joining or rejoining a group.
type JoinGroupRequest struct {
	Group            string
	MemberID         string // "" for a new member
	InstanceID       string // static membership; "" for none
	ClientID         string
	ClientHost       string
	ProtocolType     string // "consumer" for Kafka consumers
	Protocols        []GroupProtocol
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// RequireKnownMemberID makes a new member first get its id with
	// ErrMemberIDRequired and join again with it (KIP-394; JoinGroup v4+).
	RequireKnownMemberID bool
}

// GroupMember is a member as the leader sees it in a join response.
type GroupMember struct {
	MemberID   string
	InstanceID string
	Metadata   []byte
}

// JoinGroupResult is the answer to a join, once the rebalance completes.
type JoinGroupResult struct {
	Err          error
	Generation   int32
	ProtocolType string
	Protocol     string
	Leader       string
	MemberID     string
	Members      []GroupMember // for the leader only
}

// SyncGroupRequest carries the leader's assignments, or a follower's ask
// for its own.
type SyncGroupRequest struct {
	Group        string
	MemberID     string
	InstanceID   string
	Generation   int32
	ProtocolType string // checked when not empty
	Protocol     string // checked when not empty
	Assignments  map[string][]byte
}

// SyncGroupResult is a member's assignment.
type SyncGroupResult struct {
	Err          error
	ProtocolType string
	Protocol     string
	Assignment   []byte
}

// MemberDescription describes a member for DescribeGroups.
type MemberDescription struct {
	MemberID, InstanceID, ClientID, ClientHost string
	Metadata, Assignment                       []byte
}

// GroupDescription describes a group for operators.
type GroupDescription struct {
	Name         string
	State        GroupState
	ProtocolType string
	Protocol     string
	Generation   int32
	Leader       string
	Members      []MemberDescription
}

type coordinator struct {
	h    *Hub
	opts GroupOptions

	mu     sync.Mutex
	groups map[string]*group
	closed bool
}

type group struct {
	c    *coordinator
	name string

	mu           sync.Mutex
	state        GroupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	order        []string             // member ids in join order
	pending      map[string]time.Time // ids handed out with ErrMemberIDRequired
	timer        *time.Timer          // rebalance deadline
	everJoined   bool
}

type member struct {
	id, instanceID, clientID, clientHost string
	protocols                            []GroupProtocol
	session, rebalance                   time.Duration
	assignment                           []byte
	join                                 chan JoinGroupResult // while a JoinGroup waits
	sync                                 chan SyncGroupResult // while a SyncGroup waits
	lastSeen                             time.Time
	timer                                *time.Timer
}

func newCoordinator(h *Hub, opts GroupOptions) *coordinator {
	return &coordinator{h: h, opts: opts, groups: map[string]*group{}}
}

func (c *coordinator) group(name string, create bool) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[name]
	if g == nil && create && !c.closed {
		g = &group{c: c, name: name, members: map[string]*member{}, pending: map[string]time.Time{}}
		c.groups[name] = g
	}
	return g
}

func (c *coordinator) close() {
	c.mu.Lock()
	c.closed = true
	groups := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		groups = append(groups, g)
	}
	c.mu.Unlock()
	for _, g := range groups {
		g.mu.Lock()
		for _, m := range g.members {
			g.answerJoin(m, JoinGroupResult{Err: ErrClosed})
			g.answerSync(m, SyncGroupResult{Err: ErrClosed})
			if m.timer != nil {
				m.timer.Stop()
			}
		}
		if g.timer != nil {
			g.timer.Stop()
		}
		g.mu.Unlock()
	}
}

func newMemberID(clientID string) string {
	var b [8]byte
	rand.Read(b[:])
	if clientID == "" {
		clientID = "member"
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

// JoinGroup adds or refreshes a member and blocks until the group's
// rebalance completes (every member rejoined, or the rebalance timeout
// passed), or ctx ends.
func (h *Hub) JoinGroup(ctx context.Context, req JoinGroupRequest) JoinGroupResult {
	if req.Group == "" {
		return JoinGroupResult{Err: ErrInvalidGroupID}
	}
	o := h.groups.opts
	if req.SessionTimeout < o.MinSessionTimeout || req.SessionTimeout > o.MaxSessionTimeout {
		return JoinGroupResult{Err: fmt.Errorf("%w: %v is outside [%v, %v]", ErrInvalidSessionTimeout, req.SessionTimeout, o.MinSessionTimeout, o.MaxSessionTimeout)}
	}
	if req.RebalanceTimeout <= 0 {
		req.RebalanceTimeout = req.SessionTimeout
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return JoinGroupResult{Err: fmt.Errorf("%w: no protocol type or protocols", ErrInconsistentProtocol)}
	}
	g := h.groups.group(req.Group, true)
	if g == nil {
		return JoinGroupResult{Err: ErrClosed}
	}
	g.mu.Lock()
	if len(g.members) > 0 && (req.ProtocolType != g.protocolType || !g.supportsAny(req.Protocols)) {
		g.mu.Unlock()
		return JoinGroupResult{Err: fmt.Errorf("%w: group %q uses %s with %v", ErrInconsistentProtocol, g.name, g.protocolType, g.protocolNames())}
	}
	id := req.MemberID
	m := g.members[id]
	switch {
	case id == "":
		id = newMemberID(req.ClientID)
		if req.RequireKnownMemberID {
			g.pending[id] = time.Now()
			g.mu.Unlock()
			return JoinGroupResult{Err: ErrMemberIDRequired, MemberID: id}
		}
	case m == nil:
		if _, ok := g.pending[id]; !ok {
			g.mu.Unlock()
			return JoinGroupResult{Err: fmt.Errorf("%w: %q in group %q", ErrUnknownMemberID, id, g.name), MemberID: id}
		}
	}
	delete(g.pending, id)
	for pid, at := range g.pending { // ids handed out but never used
		if time.Since(at) > o.MaxSessionTimeout {
			delete(g.pending, pid)
		}
	}
	if req.InstanceID != "" { // a static member replacing its earlier incarnation
		for _, old := range g.members {
			if old.instanceID == req.InstanceID && old.id != id {
				g.removeMember(old, ErrFencedInstanceID)
			}
		}
	}
	if m == nil {
		m = &member{id: id}
		g.members[id] = m
		g.order = append(g.order, id)
	}
	if g.state == GroupStable && m.join == nil && len(g.members) > 0 && m.id != g.leader && sameProtocols(m.protocols, req.Protocols) {
		// A follower rejoining with nothing changed: no rebalance.
		res := JoinGroupResult{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: id}
		g.touch(m)
		g.mu.Unlock()
		return res
	}
	m.instanceID, m.clientID, m.clientHost = req.InstanceID, req.ClientID, req.ClientHost
	m.protocols, m.session, m.rebalance = req.Protocols, req.SessionTimeout, req.RebalanceTimeout
	ch := make(chan JoinGroupResult, 1)
	g.answerJoin(m, JoinGroupResult{Err: fmt.Errorf("%w: the member joined again", ErrRebalanceInProgress)})
	m.join = ch
	g.protocolType = req.ProtocolType
	g.touch(m)
	if g.state != GroupPreparingRebalance {
		g.prepareRebalance()
	}
	g.maybeCompleteJoin()
	g.mu.Unlock()
	select {
	case res := <-ch:
		return res
	case <-ctx.Done():
		return JoinGroupResult{Err: context.Cause(ctx), MemberID: id}
	}
}

func sameProtocols(a, b []GroupProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || string(a[i].Metadata) != string(b[i].Metadata) {
			return false
		}
	}
	return true
}

// supportsAny reports whether every member supports one of protos.
func (g *group) supportsAny(protos []GroupProtocol) bool {
	for _, p := range protos {
		if g.allSupport(p.Name, nil) {
			return true
		}
	}
	return false
}

// allSupport reports whether every member (but skip) supports name.
func (g *group) allSupport(name string, skip *member) bool {
	for _, m := range g.members {
		if m == skip {
			continue
		}
		found := false
		for _, p := range m.protocols {
			if p.Name == name {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (g *group) protocolNames() []string {
	seen := map[string]bool{}
	var names []string
	for _, m := range g.members {
		for _, p := range m.protocols {
			if !seen[p.Name] {
				seen[p.Name] = true
				names = append(names, p.Name)
			}
		}
	}
	sort.Strings(names)
	return names
}

// prepareRebalance moves the group to PreparingRebalance and arms the
// rebalance deadline: the longest rebalance timeout of its members.
func (g *group) prepareRebalance() {
	if g.state == GroupCompletingRebalance {
		for _, m := range g.members {
			g.answerSync(m, SyncGroupResult{Err: ErrRebalanceInProgress})
		}
	}
	wasEmpty := g.state == GroupEmpty
	g.state = GroupPreparingRebalance
	var timeout time.Duration
	for _, m := range g.members {
		timeout = max(timeout, m.rebalance)
	}
	if wasEmpty && !g.everJoined && g.c.opts.InitialRebalanceDelay > 0 {
		timeout = min(timeout, g.c.opts.InitialRebalanceDelay)
	}
	g.everJoined = true
	if g.timer != nil {
		g.timer.Stop()
	}
	gen := g.generation
	g.timer = time.AfterFunc(timeout, func() { g.rebalanceDeadline(gen) })
}

// maybeCompleteJoin completes the join once every member has rejoined,
// unless an initial delay is holding a new group open.
func (g *group) maybeCompleteJoin() {
	if g.state != GroupPreparingRebalance {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			return
		}
	}
	if g.generation == 0 && g.c.opts.InitialRebalanceDelay > 0 {
		return // the delay timer completes it
	}
	g.completeJoin()
}

// rebalanceDeadline drops members that did not rejoin in time and
// completes the join with the rest.
func (g *group) rebalanceDeadline(gen int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != GroupPreparingRebalance || g.generation != gen {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			g.c.h.opts.Logger.Info("hub: group member did not rejoin in time; removing it", "group", g.name, "member", m.id)
			g.dropMember(m, ErrUnknownMemberID)
		}
	}
	g.completeJoin()
}

// completeJoin starts a new generation: picks the protocol and the leader
// and answers every pending join; the leader gets the member list.
func (g *group) completeJoin() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = GroupEmpty, "", ""
		return
	}
	g.protocol = g.selectProtocol()
	if _, ok := g.members[g.leader]; !ok {
		g.leader = g.order[0]
	}
	g.state = GroupCompletingRebalance
	var members []GroupMember
	for _, id := range g.order {
		m := g.members[id]
		members = append(members, GroupMember{MemberID: id, InstanceID: m.instanceID, Metadata: m.metadata(g.protocol)})
	}
	for _, id := range g.order {
		m := g.members[id]
		m.assignment = nil
		res := JoinGroupResult{Generation: g.generation, ProtocolType: g.protocolType, Protocol: g.protocol, Leader: g.leader, MemberID: id}
		if id == g.leader {
			res.Members = members
		}
		g.answerJoin(m, res)
		g.touch(m)
	}
}

// selectProtocol picks the protocol all members support that most of them
// prefer, as Kafka does: each votes for its first supported choice.
func (g *group) selectProtocol() string {
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if g.allSupport(p.Name, nil) {
				votes[p.Name]++
				break
			}
		}
	}
	best, n := "", -1
	for _, id := range g.order { // ties go to the earliest member's preference
		for _, p := range g.members[id].protocols {
			if v, ok := votes[p.Name]; ok && v > n {
				best, n = p.Name, v
			}
		}
	}
	return best
}

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (g *group) answerJoin(m *member, res JoinGroupResult) {
	if m.join != nil {
		m.join <- res
		m.join = nil
	}
}

func (g *group) answerSync(m *member, res SyncGroupResult) {
	if m.sync != nil {
		m.sync <- res
		m.sync = nil
	}
}

// touch records that a member was heard from and re-arms its session timer.
func (g *group) touch(m *member) {
	m.lastSeen = time.Now()
	if m.timer == nil {
		m.timer = time.AfterFunc(m.session, func() { g.sessionCheck(m) })
	} else {
		m.timer.Reset(m.session)
	}
}

// sessionCheck removes a member whose session expired. A member waiting
// in a join is bounded by the rebalance timeout instead.
func (g *group) sessionCheck(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.members[m.id] != m {
		return
	}
	if left := m.session - time.Since(m.lastSeen); left > 0 || m.join != nil {
		m.timer.Reset(max(left, m.session/2))
		return
	}
	g.c.h.opts.Logger.Info("hub: group member session expired", "group", g.name, "member", m.id, "session_timeout", m.session)
	g.removeMember(m, ErrUnknownMemberID)
}

// dropMember takes a member out of the group without starting a
// rebalance.
func (g *group) dropMember(m *member, why error) {
	g.answerJoin(m, JoinGroupResult{Err: why, MemberID: m.id})
	g.answerSync(m, SyncGroupResult{Err: why})
	if m.timer != nil {
		m.timer.Stop()
	}
	delete(g.members, m.id)
	for i, id := range g.order {
		if id == m.id {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
}

// removeMember takes a member out and rebalances the rest.
func (g *group) removeMember(m *member, why error) {
	g.dropMember(m, why)
	switch g.state {
	case GroupStable, GroupCompletingRebalance:
		if len(g.members) == 0 {
			g.generation++
			g.state, g.protocol, g.leader = GroupEmpty, "", ""
			return
		}
		g.prepareRebalance()
		g.maybeCompleteJoin()
	case GroupPreparingRebalance:
		if len(g.members) == 0 {
			g.completeJoin()
			return
		}
		g.maybeCompleteJoin()
	}
}

// SyncGroup hands the leader's assignments to the group, or waits for
// them as a follower, and returns the member's own.
func (h *Hub) SyncGroup(ctx context.Context, req SyncGroupRequest) SyncGroupResult {
	g := h.groups.group(req.Group, false)
	if g == nil {
		return SyncGroupResult{Err: fmt.Errorf("%w: group %q", ErrUnknownMemberID, req.Group)}
	}
	g.mu.Lock()
	m := g.members[req.MemberID]
	switch {
	case m == nil:
		g.mu.Unlock()
		return SyncGroupResult{Err: fmt.Errorf("%w: %q in group %q", ErrUnknownMemberID, req.MemberID, g.name)}
	case req.Generation != g.generation:
		g.mu.Unlock()
		return SyncGroupResult{Err: fmt.Errorf("%w: %d, the group is at %d", ErrIllegalGeneration, req.Generation, g.generation)}
	case req.ProtocolType != "" && req.ProtocolType != g.protocolType, req.Protocol != "" && req.Protocol != g.protocol:
		g.mu.Unlock()
		return SyncGroupResult{Err: ErrInconsistentProtocol}
	}
	g.touch(m)
	switch g.state {
	case GroupPreparingRebalance:
		g.mu.Unlock()
		return SyncGroupResult{Err: ErrRebalanceInProgress}
	case GroupStable:
		res := SyncGroupResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: m.assignment}
		g.mu.Unlock()
		return res
	case GroupCompletingRebalance:
	default:
		g.mu.Unlock()
		return SyncGroupResult{Err: ErrUnknownMemberID}
	}
	ch := make(chan SyncGroupResult, 1)
	g.answerSync(m, SyncGroupResult{Err: ErrRebalanceInProgress})
	m.sync = ch
	if m.id == g.leader {
		for _, mm := range g.members {
			mm.assignment = req.Assignments[mm.id]
		}
		g.state = GroupStable
		for _, mm := range g.members {
			g.answerSync(mm, SyncGroupResult{ProtocolType: g.protocolType, Protocol: g.protocol, Assignment: mm.assignment})
		}
	}
	g.mu.Unlock()
	select {
	case res := <-ch:
		return res
	case <-ctx.Done():
		return SyncGroupResult{Err: context.Cause(ctx)}
	}
}

// Heartbeat keeps a member's session alive and tells it whether a
// rebalance is under way (ErrRebalanceInProgress: rejoin).
func (h *Hub) Heartbeat(group, memberID string, generation int32) error {
	g := h.groups.group(group, false)
	if g == nil {
		return fmt.Errorf("%w: group %q", ErrUnknownMemberID, group)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[memberID]
	if m == nil {
		return fmt.Errorf("%w: %q in group %q", ErrUnknownMemberID, memberID, group)
	}
	if generation != g.generation {
		return fmt.Errorf("%w: %d, the group is at %d", ErrIllegalGeneration, generation, g.generation)
	}
	g.touch(m)
	if g.state == GroupPreparingRebalance {
		return ErrRebalanceInProgress
	}
	return nil
}

// LeaveGroup removes members (by member id, or by instance id for static
// members) and rebalances the rest. It returns one error per member.
func (h *Hub) LeaveGroup(group string, memberIDs, instanceIDs []string) []error {
	errs := make([]error, len(memberIDs))
	g := h.groups.group(group, false)
	if g == nil {
		for i := range errs {
			errs[i] = fmt.Errorf("%w: group %q", ErrUnknownMemberID, group)
		}
		return errs
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, id := range memberIDs {
		m := g.members[id]
		if m == nil && i < len(instanceIDs) && instanceIDs[i] != "" {
			for _, mm := range g.members {
				if mm.instanceID == instanceIDs[i] {
					m = mm
				}
			}
		}
		if m == nil {
			errs[i] = fmt.Errorf("%w: %q in group %q", ErrUnknownMemberID, id, group)
			continue
		}
		g.removeMember(m, ErrUnknownMemberID)
	}
	return errs
}

// DescribeGroup describes a group; an unknown group is reported Dead, as
// Kafka does.
func (h *Hub) DescribeGroup(name string) GroupDescription {
	g := h.groups.group(name, false)
	if g == nil {
		if _, ok := h.offsets.fetchGroup(name); ok {
			return GroupDescription{Name: name, State: GroupEmpty, ProtocolType: "consumer"}
		}
		return GroupDescription{Name: name, State: GroupDead}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	d := GroupDescription{Name: name, State: g.state, ProtocolType: g.protocolType, Protocol: g.protocol, Generation: g.generation, Leader: g.leader}
	for _, id := range g.order {
		m := g.members[id]
		d.Members = append(d.Members, MemberDescription{MemberID: id, InstanceID: m.instanceID, ClientID: m.clientID,
			ClientHost: m.clientHost, Metadata: m.metadata(g.protocol), Assignment: m.assignment})
	}
	return d
}

// ListGroups lists the groups the coordinator knows and those with
// committed offsets, sorted by name.
func (h *Hub) ListGroups() []GroupDescription {
	seen := map[string]bool{}
	var out []GroupDescription
	h.groups.mu.Lock()
	names := make([]string, 0, len(h.groups.groups))
	for name := range h.groups.groups {
		names = append(names, name)
	}
	h.groups.mu.Unlock()
	for _, name := range names {
		d := h.DescribeGroup(name)
		d.Members = nil
		out = append(out, d)
		seen[name] = true
	}
	for _, name := range h.offsets.groupNames() {
		if !seen[name] {
			out = append(out, GroupDescription{Name: name, State: GroupEmpty, ProtocolType: "consumer"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OffsetCommitRequest commits a group's positions. A member of an active
// group passes its member id and generation; a standalone consumer (no
// group membership) passes "" and -1, which is allowed while the group
// has no members.
type OffsetCommitRequest struct {
	Group      string
	MemberID   string
	Generation int32
	Offsets    map[TopicPartition]CommittedOffset
}

// CommitOffsets durably stores committed offsets after checking the
// committer's membership.
func (h *Hub) CommitOffsets(req OffsetCommitRequest) error {
	if req.Group == "" {
		return ErrInvalidGroupID
	}
	if err := h.checkMember(req.Group, req.MemberID, req.Generation); err != nil {
		return err
	}
	return h.offsets.commit(req.Group, req.Offsets)
}

// checkMember checks that a committer may commit the group's offsets: a
// member of its current generation, outside a rebalance, or (no member id,
// generation -1) anyone while the group has no members.
func (h *Hub) checkMember(group, memberID string, generation int32) error {
	g := h.groups.group(group, generation >= 0 || memberID != "")
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if generation < 0 && memberID == "" {
		if len(g.members) > 0 {
			return fmt.Errorf("%w: group %q has members; commit as one of them", ErrUnknownMemberID, group)
		}
		return nil
	}
	m := g.members[memberID]
	switch {
	case m == nil:
		return fmt.Errorf("%w: %q in group %q", ErrUnknownMemberID, memberID, group)
	case generation != g.generation:
		return fmt.Errorf("%w: %d, the group is at %d", ErrIllegalGeneration, generation, g.generation)
	case g.state == GroupCompletingRebalance:
		return ErrRebalanceInProgress
	}
	g.touch(m)
	return nil
}

// FetchOffsets returns a group's committed offsets for tps, or all of them
// when tps is nil. Partitions without a commit are absent.
func (h *Hub) FetchOffsets(group string, tps []TopicPartition) map[TopicPartition]CommittedOffset {
	return h.offsets.fetch(group, tps)
}

// DeleteGroup forgets an empty group and its committed offsets.
func (h *Hub) DeleteGroup(name string) error {
	if g := h.groups.group(name, false); g != nil {
		g.mu.Lock()
		n := len(g.members)
		if n == 0 {
			g.state = GroupDead
		}
		g.mu.Unlock()
		if n > 0 {
			return fmt.Errorf("%w: %q has %d members", ErrGroupNotEmpty, name, n)
		}
		h.groups.mu.Lock()
		delete(h.groups.groups, name)
		h.groups.mu.Unlock()
	} else if _, ok := h.offsets.fetchGroup(name); !ok {
		return fmt.Errorf("%w: %q", ErrGroupNotFound, name)
	}
	return h.offsets.deleteGroup(name)
}

// DeleteOffsets forgets group's committed offsets of tps, as Kafka's
// OffsetDelete does. A group with members may be consuming them, so it
// fails with ErrGroupNotEmpty; an unknown group with ErrGroupNotFound.
func (h *Hub) DeleteOffsets(group string, tps []TopicPartition) error {
	if g := h.groups.group(group, false); g != nil {
		g.mu.Lock()
		n := len(g.members)
		g.mu.Unlock()
		if n > 0 {
			return fmt.Errorf("%w: %q has %d members, which may be consuming these partitions", ErrGroupNotEmpty, group, n)
		}
	} else if _, ok := h.offsets.fetchGroup(group); !ok {
		return fmt.Errorf("%w: %q", ErrGroupNotFound, group)
	}
	return h.offsets.deleteOffsets(group, tps)
}
