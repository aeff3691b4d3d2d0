package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/internal/auth"
)

func TestUserSCRAMCredentialsWithKadm(t *testing.T) {
	dir := t.TempDir()
	b := aclBroker(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.addr, as("admin")))
	// kadm salts the password itself (KIP-554): the broker gets the salted
	// password only.
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "erin", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "erin-pw"},
		{User: "erin", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "erin-pw"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{auth.ScramSHA256, auth.ScramSHA512, auth.Plain} {
		if err := tryMetadata(t, b.addr, kgo.SASL(mechanism(m, "erin", "erin-pw"))); err != nil {
			t.Fatalf("erin with %s: %v", m, err)
		}
	}
	desc, err := adm.DescribeUserSCRAMs(ctx, "erin", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if e := desc["erin"]; e.Err != nil || len(e.CredInfos) != 2 {
		t.Fatalf("erin described as %+v", e)
	}
	if !errors.Is(desc["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("nobody described as %+v", desc["nobody"])
	}
	// Iterations out of Kafka's bounds are refused.
	res, err = adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "weak", Mechanism: kadm.ScramSha256, Iterations: 100, Password: "x"}})
	if err == nil {
		err = res.Error()
	}
	if !errors.Is(err, kerr.UnacceptableCredential) {
		t.Fatalf("100 iterations: %v", err)
	}
	// Deleting both credentials removes the user.
	res, err = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "erin", Mechanism: kadm.ScramSha256}, {User: "erin", Mechanism: kadm.ScramSha512}}, nil)
	if err != nil || res.Error() != nil {
		t.Fatal(err, res.Error())
	}
	if err := tryMetadata(t, b.addr, kgo.SASL(mechanism(auth.ScramSHA512, "erin", "erin-pw"))); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("deleted erin: %v", err)
	}
	// alice, not a super user without a cluster ACL, may not manage users.
	res, err = kadm.NewClient(newClient(t, b.addr, as("alice"))).AlterUserSCRAMs(ctx, nil,
		[]kadm.UpsertSCRAM{{User: "mallory", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "x"}})
	if err == nil {
		err = res.Error()
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice altering users: %v", err)
	}
	// The store keeps no password: only salted, hashed keys.
	users, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := users.Credential("alice", auth.ScramSHA512); !ok || len(c.StoredKey) != 64 {
		t.Fatalf("alice's credential on disk: %+v", c)
	}
}

func tryMetadata(t *testing.T, addr string, opts ...kgo.Opt) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := newClient(t, addr, append(opts, kgo.RequestRetries(0), kgo.DialTimeout(2*time.Second))...)
	return cl.Ping(ctx)
}
