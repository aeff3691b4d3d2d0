package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhub/weir/internal/auth"
	"github.com/weirhub/weir/internal/tlstest"
)

// kcatRun runs kcat with a timeout and returns its output and error.
func kcatRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestServeSASLSSLWithKcat(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed: install Debian package kcat (make test-deps)")
	}
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "weir-test-ca")
	cert, key, caFile := ca.Files(t, dir)
	t.Setenv("WEIR_ADMIN_PASSWORD", "s3cret-admin")
	p := startServe(t, t.TempDir(), "--tls-cert", cert, "--tls-key", key, "--sasl", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512")
	if strings.Contains(p.output(), "s3cret-admin") {
		t.Fatal("the admin password appears in the log")
	}
	base := []string{"-b", p.addr, "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + caFile, "-X", "sasl.username=admin"}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			args := append(append([]string{}, base...), "-X", "sasl.mechanisms="+mech, "-X", "sasl.password=s3cret-admin")
			topic := "kcat-" + strings.ToLower(mech)
			if out, err := kcatRun(t, "one\ntwo\n", append(args, "-P", "-t", topic)...); err != nil {
				t.Fatalf("kcat produce: %v\n%s\n%s", err, out, p.output())
			}
			out, err := kcatRun(t, "", append(args, "-C", "-t", topic, "-o", "beginning", "-e", "-q")...)
			if err != nil || out != "one\ntwo\n" {
				t.Fatalf("kcat consume: %v\n%q", err, out)
			}
			// A wrong password is refused and nothing is stored.
			bad := append(append([]string{}, base...), "-X", "sasl.mechanisms="+mech, "-X", "sasl.password=wrong")
			out, err = kcatRun(t, "three\n", append(bad, "-P", "-t", topic, "-X", "message.timeout.ms=3000")...)
			if err == nil || !strings.Contains(out, "Authentication failed") {
				t.Fatalf("kcat with a wrong password: %v\n%s", err, out)
			}
		})
	}
	// franz-go over the same listener sees only the two records per topic.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.DialTLSConfig(tlstest.ClientConfig(ca)),
		kgo.SASL(scram.Auth{User: "admin", Pass: "s3cret-admin"}.AsSha512Mechanism()),
		kgo.ConsumeTopics("kcat-plain"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 2 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if strings.Join(got, ",") != "one,two" {
		t.Fatalf("stored %v", got)
	}
}

func TestListenerBeyondLoopbackWithoutAuthWarns(t *testing.T) {
	for _, c := range []struct {
		l    listenerConfig
		warn bool
	}{
		{listenerConfig{Listen: "0.0.0.0:9092"}, true},
		{listenerConfig{Listen: "10.1.2.3:9092"}, true},
		{listenerConfig{Listen: "127.0.0.1:9092"}, false},
		{listenerConfig{Listen: "[::1]:9092"}, false},
		{listenerConfig{Listen: "0.0.0.0:9092", SASL: []string{"SCRAM-SHA-512"}}, false},
	} {
		var buf bytes.Buffer
		users := auth.NewMemory()
		if err := users.SetPassword("u", auth.ScramSHA512, "p", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.l.security(users, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "beyond loopback"); got != c.warn {
			t.Errorf("%+v: warned %v, want %v: %s", c.l, got, c.warn, buf.String())
		}
	}
}

func TestNoDefaultAdminPassword(t *testing.T) {
	t.Setenv("WEIR_ADMIN_PASSWORD", "")
	t.Setenv("WEIR_ADMIN_PASSWORD_FILE", "")
	cfg := serveConfig{DataDir: t.TempDir()}
	users, admin, err := cfg.openUsers(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if admin != "" || len(users.Users()) != 0 {
		t.Fatalf("an administrator %q was made without a password: %v", admin, users.Users())
	}
}

func TestServeACLsWithUsersAndACLsCommands(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed: install Debian package kcat (make test-deps)")
	}
	dir := t.TempDir()
	t.Setenv("WEIR_ADMIN_PASSWORD", "admin-pw")
	p := startServe(t, t.TempDir(), "--sasl", "SCRAM-SHA-512,SCRAM-SHA-256", "--acls")
	t.Setenv("WEIR_ADMIN_PASSWORD", "")
	t.Setenv("WEIR_BROKERS", p.addr)
	t.Setenv("WEIR_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("WEIR_SASL_USER", "admin")
	t.Setenv("WEIR_SASL_PASSWORD", "admin-pw")
	pwFile := filepath.Join(dir, "alice.pass")
	if err := os.WriteFile(pwFile, []byte("alice-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := runIn(t, "", args...)
		if err != nil {
			t.Fatalf("weir %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	mustRun("users", "add", "alice", "--password-file", pwFile)
	if out := mustRun("users", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "SCRAM-SHA-512") {
		t.Fatalf("users list:\n%s", out)
	}
	mustRun("acls", "add", "--principal", "User:alice", "--operation", "write,create,read", "--topic", "app.", "--prefixed")
	if out := mustRun("acls", "list", "--principal", "User:alice"); strings.Count(out, "User:alice") != 3 || !strings.Contains(out, "PREFIXED") {
		t.Fatalf("acls list:\n%s", out)
	}
	kc := []string{"-b", p.addr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-256",
		"-X", "sasl.username=alice", "-X", "sasl.password=alice-pw", "-X", "message.timeout.ms=5000"}
	if out, err := kcatRun(t, "hello\n", append(kc, "-P", "-t", "app.events")...); err != nil {
		t.Fatalf("kcat as alice to app.events: %v\n%s", err, out)
	}
	out, err := kcatRun(t, "stolen\n", append(kc, "-P", "-t", "payments")...)
	if err == nil || !strings.Contains(strings.ToLower(out), "authorization failed") {
		t.Fatalf("kcat as alice to payments: %v\n%s", err, out)
	}
	// The admin sees no payments topic: the refused produce created nothing.
	if out := mustRun("topics", "list"); strings.Contains(out, "payments") || !strings.Contains(out, "app.events") {
		t.Fatalf("topics after a refused produce:\n%s", out)
	}
	if out := mustRun("acls", "delete", "--principal", "User:alice"); !strings.Contains(out, "deleted 3 ACLs") {
		t.Fatalf("acls delete: %s", out)
	}
	if out, err := kcatRun(t, "again\n", append(kc, "-P", "-t", "app.events")...); err == nil {
		t.Fatalf("alice produced after her ACLs were deleted:\n%s", out)
	}
	mustRun("users", "delete", "alice")
	if out := mustRun("users", "list"); strings.Contains(out, "alice") {
		t.Fatalf("users list after delete:\n%s", out)
	}
}

func TestServeListenersFromConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "weir-test-ca")
	cert, key, _ := ca.Files(t, dir)
	cfgFile := filepath.Join(dir, "weir.yaml")
	yml := "data_dir: " + filepath.Join(dir, "data") + "\nlisteners:\n" +
		"  - listen: 127.0.0.1:0\n" +
		"  - listen: 127.0.0.1:0\n    tls: {cert_file: " + cert + ", key_file: " + key + "}\n    sasl: [SCRAM-SHA-256]\n"
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	if err := loadServeConfig(cfgFile, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.LogLevel = "info"
	t.Setenv("WEIR_ADMIN_PASSWORD", "pw")
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, &logs, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addrs []string
	deadline := time.Now().Add(10 * time.Second)
	for len(addrs) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("listeners did not start:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
		addrs = nil
		for _, m := range servingRE.FindAllStringSubmatch(logs.String(), -1) {
			addrs = append(addrs, m[1])
		}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer ccancel()
	plain := mustClient(t, addrs[0], kgo.DefaultProduceTopic("multi"), kgo.AllowAutoTopicCreation())
	if err := plain.ProduceSync(cctx, &kgo.Record{Value: []byte("p")}).FirstErr(); err != nil {
		t.Fatalf("plaintext listener: %v", err)
	}
	sec := mustClient(t, addrs[1], kgo.DialTLSConfig(tlstest.ClientConfig(ca)), kgo.SASL(scram.Auth{User: "admin", Pass: "pw"}.AsSha256Mechanism()),
		kgo.ConsumeTopics("multi"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := sec.PollRecords(cctx, 1)
	if err := fs.Err(); err != nil || len(fs.Records()) != 1 {
		t.Fatalf("SASL_SSL listener: %v", err)
	}
	// Metadata on each listener advertises that listener.
	for _, a := range addrs[:1] {
		req := kmsg.NewPtrMetadataRequest()
		resp, err := req.RequestWith(cctx, plain)
		if err != nil || len(resp.Brokers) != 1 || fmt.Sprintf("%s:%d", resp.Brokers[0].Host, resp.Brokers[0].Port) != a {
			t.Fatalf("metadata on %s: %v %+v", a, err, resp)
		}
	}
}

func TestServeSASLWithPythonClients(t *testing.T) {
	const py = "/usr/bin/python3"
	for _, mod := range []string{"kafka", "confluent_kafka"} {
		if out, err := exec.Command(py, "-c", "import "+mod).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s: install Debian packages python3-kafka python3-confluent-kafka (make test-deps)", mod, err, out)
		}
	}
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "weir-test-ca")
	cert, key, caFile := ca.Files(t, dir)
	cfgFile := filepath.Join(dir, "weir.yaml")
	// Failed authentications are limited per address; librdkafka retries
	// a wrong password, so the tests allow more.
	yml := "listeners:\n  - {listen: 127.0.0.1:0, sasl: [PLAIN, SCRAM-SHA-256, SCRAM-SHA-512], max_auth_failures: 1000}\n" +
		"  - {listen: 127.0.0.1:0, sasl: [PLAIN, SCRAM-SHA-256, SCRAM-SHA-512], max_auth_failures: 1000, tls: {cert_file: " + cert + ", key_file: " + key + "}}\n"
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	if err := loadServeConfig(cfgFile, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.LogLevel = filepath.Join(dir, "data"), "info"
	t.Setenv("WEIR_ADMIN_PASSWORD", "py-pw")
	addrs := serveInProcess(t, cfg)
	run := func(t *testing.T, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, append([]string{filepath.Join("testdata", "sasl_clients.py")}, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, lib := range []string{"kafka-python", "confluent-kafka"} {
		for li, proto := range []string{"SASL_PLAINTEXT", "SASL_SSL"} {
			for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
				t.Run(lib+"/"+proto+"/"+mech, func(t *testing.T) {
					topic := strings.ToLower(strings.NewReplacer("_", "-", "/", "-").Replace(lib + "-" + proto + "-" + mech))
					out, err := run(t, lib, addrs[li], proto, mech, "admin", "py-pw", caFile, topic)
					if err != nil || !strings.HasPrefix(out, "ok 3") {
						t.Fatalf("%v\n%s", err, out)
					}
					out, err = run(t, lib, addrs[li], proto, mech, "admin", "wrong", caFile, topic+"-refused")
					if err == nil || !strings.Contains(out, "AUTH_FAILED") {
						t.Fatalf("wrong password: %v\n%s", err, out)
					}
				})
			}
		}
	}
}

// serveInProcess runs weir serve with cfg in this process until the test
// ends and returns the listeners' addresses.
func serveInProcess(t *testing.T, cfg serveConfig) []string {
	t.Helper()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, logs, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	want := len(cfg.listeners())
	deadline := time.Now().Add(10 * time.Second)
	for {
		var addrs []string
		for _, m := range servingRE.FindAllStringSubmatch(logs.String(), -1) {
			addrs = append(addrs, m[1])
		}
		if len(addrs) == want {
			return addrs
		}
		if time.Now().After(deadline) {
			t.Fatalf("listeners did not start:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
