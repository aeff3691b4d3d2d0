package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/internal/auth"
)

// aclBroker serves SASL with ACLs: admin is a super user, alice and bob
// ordinary users.
func aclBroker(t *testing.T, dir string) *testBroker {
	t.Helper()
	users, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for u, p := range map[string]string{"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"} {
		if err := users.SetPassword(u, auth.ScramSHA512, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	acls, err := auth.OpenACLs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return startBroker(t, dir, Options{Security: Security{SASLMechanisms: []string{auth.Plain, auth.ScramSHA256, auth.ScramSHA512}, Users: users,
		ACLs: acls, SuperUsers: []string{"User:admin"}}})
}

func as(user string) kgo.Opt {
	return kgo.SASL(mechanism(auth.ScramSHA512, user, user+"-secret"))
}

func TestACLsWithFranzGo(t *testing.T) {
	dir := t.TempDir()
	b := aclBroker(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.addr, as("admin")))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "secret"); err != nil {
		t.Fatal(err)
	}
	// alice may write, read and create topics starting with "alice-", and
	// use group "alice-group"; denied "alice-private".
	acl := kadm.NewACLs().Allow("User:alice").Topics("alice-").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpWrite, kadm.OpRead, kadm.OpCreate)
	grp := kadm.NewACLs().Allow("User:alice").Groups("alice-group").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	deny := kadm.NewACLs().Deny("User:alice").Topics("alice-private").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral)
	for _, a := range []*kadm.ACLBuilder{acl, grp, deny} {
		res, err := adm.CreateACLs(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}

	// Allowed: produce (creating the topic) and consume in her group.
	alice := newClient(t, b.addr, as("alice"), kgo.AllowAutoTopicCreation())
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "alice-a", Value: []byte("v")}, &kgo.Record{Topic: "alice-private", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := newClient(t, b.addr, as("alice"), kgo.ConsumerGroup("alice-group"), kgo.ConsumeTopics("alice-a"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if fs := cons.PollRecords(ctx, 1); fs.Err() != nil || len(fs.Records()) != 1 {
		t.Fatalf("alice consuming her topic: %v", fs.Err())
	}

	// Refused: produce to a topic she has no ACL for; nothing is stored.
	req := produceRequest("secret", []byte("stolen"))
	// In the same request, a topic she may write: stored, as Kafka does.
	ok := req.Topics[0]
	ok.Topic = "alice-a"
	req.Topics = append(req.Topics, ok)
	presp, err := req.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, t := range presp.Topics {
		codes[t.Topic] = t.Partitions[0].ErrorCode
	}
	if codes["secret"] != kerr.TopicAuthorizationFailed.Code || codes["alice-a"] != 0 || len(codes) != 2 {
		t.Fatalf("produce to secret and alice-a: error codes %v, want TOPIC_AUTHORIZATION_FAILED for secret only", codes)
	}
	if ends, err := adm.ListEndOffsets(ctx, "alice-a"); err != nil {
		t.Fatal(err)
	} else if o, _ := ends.Lookup("alice-a", 0); o.Offset != 2 {
		t.Fatalf("alice-a ends at %d, want 2", o.Offset)
	}
	if ends, err := adm.ListEndOffsets(ctx, "secret"); err != nil {
		t.Fatal(err)
	} else if o, _ := ends.Lookup("secret", 0); o.Offset != 0 {
		t.Fatalf("secret holds %d records after a refused produce", o.Offset)
	}

	// Metadata hides topics she may not describe.
	aliceAdm := kadm.NewClient(alice)
	td, err := aliceAdm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := td.Names(); slices.Contains(names, "secret") || !slices.Contains(names, "alice-a") {
		t.Fatalf("alice sees topics %v", names)
	}
	// Explicitly asked, the topic is refused.
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("secret")
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code || len(mresp.Topics[0].Partitions) != 0 {
		t.Fatalf("metadata of secret: %+v", mresp.Topics)
	}

	// A deny wins over the prefixed allow.
	cl := newClient(t, b.addr, as("alice"), kgo.ConsumeTopics("alice-private"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("fetch of alice-private: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}

	// Fetching both: alice-a is served, alice-private refused.
	both := newClient(t, b.addr, as("alice"), kgo.ConsumeTopics("alice-a", "alice-private"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var served int
	var refused bool
	for i := 0; i < 50 && (served < 2 || !refused); i++ {
		fs := both.PollFetches(ctx)
		fs.EachError(func(topic string, _ int32, err error) {
			if topic == "alice-private" && errors.Is(err, kerr.TopicAuthorizationFailed) {
				refused = true
			} else if topic == "alice-a" {
				t.Errorf("alice-a: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != "alice-a" {
				t.Errorf("record of %s served", r.Topic)
			}
			served++
		})
	}
	if served < 2 || !refused {
		t.Fatalf("fetching both: %d records of alice-a served, alice-private refused %v", served, refused)
	}

	// Another group: GROUP_AUTHORIZATION_FAILED.
	jreq := kmsg.NewPtrJoinGroupRequest()
	jreq.Group, jreq.ProtocolType, jreq.SessionTimeoutMillis = "other-group", "consumer", 10000
	// (franz-go asks FindCoordinator first, which is refused the same.)
	jresp, err := jreq.RequestWith(ctx, alice)
	if err == nil {
		err = kerr.ErrorForCode(jresp.ErrorCode)
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("join other-group: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}

	// Managing ACLs is for the cluster's administrators.
	res, err := aliceAdm.CreateACLs(ctx, kadm.NewACLs().Allow("User:alice").Topics("secret").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternLiteral))
	if err == nil && len(res) > 0 {
		err = res[0].Err
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice creating an ACL: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}

	// Describing the log directories needs Describe on the cluster, as in
	// Kafka; the admin (a super user) gets the data directory.
	ldreq := kmsg.NewPtrDescribeLogDirsRequest()
	// (franz-go merges the answers of all brokers, dropping the top-level
	// error code: one broker is asked directly.)
	ldraw, err := alice.Broker(0).Request(ctx, ldreq)
	ldresp, _ := ldraw.(*kmsg.DescribeLogDirsResponse)
	if err != nil || ldresp == nil || ldresp.ErrorCode != kerr.ClusterAuthorizationFailed.Code || len(ldresp.Dirs) != 0 {
		t.Fatalf("alice describing log dirs: %v %+v, want CLUSTER_AUTHORIZATION_FAILED", err, ldresp)
	}
	if ldresp, err = ldreq.RequestWith(ctx, newClient(t, b.addr, as("admin"))); err != nil || ldresp.ErrorCode != 0 || len(ldresp.Dirs) != 1 ||
		len(ldresp.Dirs[0].Topics) == 0 {
		t.Fatalf("admin describing log dirs: %v %+v", err, ldresp)
	}

	// bob, with no ACL at all, sees no topics and cannot create one.
	bobAdm := kadm.NewClient(newClient(t, b.addr, as("bob")))
	if td, err := bobAdm.ListTopics(ctx); err != nil || len(td.Names()) != 0 {
		t.Fatalf("bob lists %v, %v", td.Names(), err)
	}
	cr, err := bobAdm.CreateTopic(ctx, 1, 1, nil, "bobs")
	if err == nil {
		err = cr.Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob creating a topic: %v", err)
	}

	// The ACLs survive a restart.
	b.stop()
	b = aclBroker(t, dir)
	adm = kadm.NewClient(newClient(t, b.addr, as("admin")))
	dreq := kmsg.NewPtrDescribeACLsRequest()
	dreq.ResourceType, dreq.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	dreq.Operation, dreq.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	desc, err := dreq.RequestWith(ctx, newClient(t, b.addr, as("admin")))
	if err != nil || desc.ErrorCode != 0 {
		t.Fatal(err, desc.ErrorCode)
	}
	n := 0
	for _, r := range desc.Resources {
		n += len(r.ACLs)
	}
	if n != 5 { // write, read, create on alice-, read on the group, the deny
		t.Fatalf("%d ACLs after a restart, want 5", n)
	}
	del, err := adm.DeleteACLs(ctx, kadm.NewACLs().Deny("User:alice").DenyHosts("*").Topics("alice-private").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral))
	if err != nil || len(del) != 1 || len(del[0].Deleted) != 1 {
		t.Fatalf("deleting the deny: %v %+v", err, del)
	}
}

func TestACLAuthorizeSemantics(t *testing.T) {
	s, err := auth.OpenACLs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	allow, deny := kmsg.ACLPermissionTypeAllow, kmsg.ACLPermissionTypeDeny
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	must := func(a auth.ACL) {
		if err := s.Add(a); err != nil {
			t.Fatal(err)
		}
	}
	must(auth.ACL{Principal: "User:*", Host: "*", ResourceType: rtTopic, ResourceName: "public", PatternType: lit, Operation: opRead, Permission: allow})
	must(auth.ACL{Principal: "User:carol", Host: "*", ResourceType: rtTopic, ResourceName: "logs.", PatternType: pre, Operation: kmsg.ACLOperationAll, Permission: allow})
	must(auth.ACL{Principal: "User:carol", Host: "10.0.0.9", ResourceType: rtTopic, ResourceName: "logs.", PatternType: pre, Operation: opWrite, Permission: deny})
	must(auth.ACL{Principal: "User:dave", Host: "*", ResourceType: rtTopic, ResourceName: "*", PatternType: lit, Operation: opDescribe, Permission: allow})
	for _, c := range []struct {
		who, host, topic string
		op               kmsg.ACLOperation
		want, found      bool
	}{
		{"User:anyone", "1.2.3.4", "public", opRead, true, true},
		{"User:anyone", "1.2.3.4", "public", opDescribe, true, true}, // read implies describe
		{"User:anyone", "1.2.3.4", "public", opWrite, false, true},
		{"User:carol", "1.2.3.4", "logs.app", opWrite, true, true},
		{"User:carol", "10.0.0.9", "logs.app", opWrite, false, true}, // deny from that host wins
		{"User:carol", "10.0.0.9", "logs.app", opRead, true, true},
		{"User:carol", "1.2.3.4", "logsx", opRead, false, true}, // dave's * names every topic
		{"User:dave", "1.2.3.4", "anything", opDescribe, true, true},
		{"User:dave", "1.2.3.4", "anything", opRead, false, true},
	} {
		got, found := s.Authorize(c.who, c.host, rtTopic, c.topic, c.op)
		if got != c.want || found != c.found {
			t.Errorf("%s from %s %s %s: allowed %v found %v, want %v %v", c.who, c.host, c.op, c.topic, got, found, c.want, c.found)
		}
	}
	if _, found := s.Authorize("User:x", "h", rtGroup, "g", opRead); found {
		t.Error("a group no ACL names was found")
	}
}

func TestMutualTLSPrincipalInACLs(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := newCA(t, "ca"), newCA(t, "client-ca")
	r, err := NewTLSReloader(tlsFiles(t, t.TempDir(), ca, clientCA), nil)
	if err != nil {
		t.Fatal(err)
	}
	acls, err := auth.OpenACLs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := acls.Add(auth.ACL{Principal: "User:CN=shipper", Host: "*", ResourceType: rtTopic, ResourceName: "logs",
		PatternType: kmsg.ACLResourcePatternTypeLiteral, Operation: opWrite, Permission: kmsg.ACLPermissionTypeAllow}); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, dir, Options{Security: Security{TLS: r.Config(), ACLs: acls, SuperUsers: []string{"User:CN=ops"}}})
	client := func(cn string) kgo.Opt {
		certPEM, keyPEM := clientCA.Issue(t, cn, true)
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg := clientTLS(ca)
		cfg.Certificates = []tls.Certificate{cert}
		return kgo.DialTLSConfig(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(newClient(t, b.addr, client("ops"))).CreateTopic(ctx, 1, 1, nil, "logs"); err != nil {
		t.Fatal(err)
	}
	if err := tryProduce(t, b.addr, "logs", client("shipper")); err != nil {
		t.Fatalf("shipper writing logs: %v", err)
	}
	if err := tryProduce(t, b.addr, "logs", client("intruder")); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("intruder writing logs: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
}
