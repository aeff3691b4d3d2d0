package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runIn is run with stdin.
func runIn(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

// committed is what group committed on topic partition 0.
func committed(t *testing.T, addr, group, topic string) int64 {
	t.Helper()
	o, ok := committedOK(t, addr, group, topic)
	if !ok {
		t.Fatalf("group %s committed nothing on %s/0", group, topic)
	}
	return o
}

func committedOK(t *testing.T, addr, group, topic string) (int64, bool) {
	t.Helper()
	cl := mustClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	o, ok := resp.Lookup(topic, 0)
	return o.At, ok && o.At >= 0
}

// TestConsumeGroupCommitsWhatItPrinted: `weir consume --group` commits the
// offset after the last record it printed: not a timestamp when it started
// by time (--since), not the end of what it fetched (--offset 3 --max 2).
func TestConsumeGroupCommitsWhatItPrinted(t *testing.T) {
	p := startServe(t, t.TempDir())
	var lines []string
	for i := range 20 {
		lines = append(lines, string(rune('a'+i)))
	}
	if _, errOut, err := runIn(t, strings.Join(lines, "\n")+"\n", "produce", "orders", "--brokers", p.addr); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut)
	}
	out, _, err := runIn(t, "", "consume", "orders", "--brokers", p.addr, "--group", "audit", "--since", "1h", "--max", "5")
	if err != nil || out != "a\nb\nc\nd\ne\n" {
		t.Fatalf("consume --group audit --since 1h --max 5 = %q, %v; want a..e", out, err)
	}
	if got := committed(t, p.addr, "audit", "orders"); got != 5 {
		t.Errorf("after --since 1h --max 5, group audit committed %d, want 5", got)
	}
	out, _, err = runIn(t, "", "consume", "orders", "--brokers", p.addr, "--group", "g", "--offset", "3", "--max", "2")
	if err != nil || out != "d\ne\n" {
		t.Fatalf("consume --group g --offset 3 --max 2 = %q, %v; want d, e", out, err)
	}
	if got := committed(t, p.addr, "g", "orders"); got != 5 {
		t.Errorf("after --offset 3 --max 2, group g committed %d, want 5", got)
	}
	// The group resumes where it committed, and --end ends.
	out, _, err = runIn(t, "", "consume", "orders", "--brokers", p.addr, "--group", "g", "--end")
	if err != nil || out != strings.Join(lines[5:], "\n")+"\n" {
		t.Fatalf("consume --group g --end = %q, %v; want f..t", out, err)
	}
	if got := committed(t, p.addr, "g", "orders"); got != 20 {
		t.Errorf("after --end, group g committed %d, want 20", got)
	}
}

// TestConsumeEndFromTheEndExits: --end with nothing left to read (the
// default start is the end; a group that consumed everything) exits.
func TestConsumeEndFromTheEndExits(t *testing.T) {
	p := startServe(t, t.TempDir())
	if _, errOut, err := runIn(t, "x\ny\n", "produce", "t", "--brokers", p.addr); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut)
	}
	if out, _, err := runIn(t, "", "consume", "t", "--brokers", p.addr, "--group", "all", "--from-beginning", "--end"); err != nil || out != "x\ny\n" {
		t.Fatalf("consume --group all --from-beginning --end = %q, %v", out, err)
	}
	for _, args := range [][]string{
		{"consume", "t", "--end"},
		{"consume", "t", "--end", "--offset", "2"},
		{"consume", "t", "--end", "--group", "all", "--from-beginning"},
	} {
		done := make(chan error, 1)
		var out string
		go func() {
			var err error
			out, _, err = runIn(t, "", append(args, "--brokers", p.addr)...)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil || out != "" {
				t.Errorf("weir %s = %q, %v; want nothing, no error", strings.Join(args, " "), out, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("weir %s did not exit in 20s", strings.Join(args, " "))
		}
	}
}

// TestClientCommandsFailFastWithoutABroker: every command against an
// address where nothing listens fails within its --timeout, naming the
// address and what to check; so does one against a listener that never
// answers.
func TestClientCommandsFailFastWithoutABroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cmds := [][]string{
		{"produce", "t"}, {"consume", "t"}, {"consume", "t", "--end"}, {"consume", "t", "--group", "g"},
		{"topics", "list"}, {"topics", "create", "t"}, {"topics", "describe", "t"}, {"topics", "delete", "t"},
		{"groups", "list"}, {"groups", "describe", "g"},
	}
	for _, addr := range []string{closed, silent.Addr().String()} {
		for _, args := range cmds {
			start := time.Now()
			_, _, err := runIn(t, "x\n", append(args, "--brokers", addr, "--timeout", "2s")...)
			took := time.Since(start)
			what := "weir " + strings.Join(args, " ") + " --brokers " + addr
			if err == nil {
				t.Errorf("%s: no error", what)
				continue
			}
			if took > 8*time.Second {
				t.Errorf("%s took %v with --timeout 2s", what, took.Round(time.Millisecond))
			}
			if msg := err.Error(); !strings.Contains(msg, addr) || !strings.Contains(msg, "weir serve") {
				t.Errorf("%s: %q does not name the address and what to check", what, msg)
			}
		}
	}
}

// TestProduceFailsWhenTheBrokerCannotStore: a broker that answers every
// produce with KAFKA_STORAGE_ERROR (a full disk) makes `weir produce` fail
// within --timeout, saying to check the broker's disk.
func TestProduceFailsWhenTheBrokerCannotStore(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.KafkaStorageError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	addr := c.ListenAddrs()[0]
	start := time.Now()
	_, _, err = runIn(t, "x\n", "produce", "t", "--brokers", addr, "--timeout", "2s")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("produce to a broker that cannot store took %v with --timeout 2s", took)
	}
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "disk") {
		t.Fatalf("produce to a broker that cannot store: %v; want an error naming %s and its disk", err, addr)
	}
}

// TestTopicsAlterAndGroupsResetDelete: `weir topics alter --config`
// changes a live dataset and prints the change, refuses fewer partitions
// and unsupported values; `weir groups reset` is a dry run until
// --execute, then commits; `weir groups delete` forgets the group.
func TestTopicsAlterAndGroupsResetDelete(t *testing.T) {
	p := startServe(t, t.TempDir())
	b := []string{"--brokers", p.addr}
	if _, errOut, err := runIn(t, "", append([]string{"topics", "create", "orders", "--partitions", "2"}, b...)...); err != nil {
		t.Fatalf("create: %v %s", err, errOut)
	}
	out, _, err := runIn(t, "", append([]string{"topics", "alter", "orders", "--config", "retention.ms=3600000", "--config", "segment.bytes=1048576"}, b...)...)
	if err != nil || !strings.Contains(out, "retention.ms 604800000 -> 3600000") || !strings.Contains(out, "segment.bytes 1073741824 -> 1048576") {
		t.Fatalf("topics alter --config = %q, %v", out, err)
	}
	out, _, _ = runIn(t, "", append([]string{"topics", "describe", "orders"}, b...)...)
	if !strings.Contains(out, "retention.ms=3600000") {
		t.Errorf("describe after alter:\n%s", out)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--partitions", "1"}, "can only grow"},
		{[]string{"--config", "cleanup.policy=compact"}, "cleanup.policy"},
		{[]string{"--config", "retention.ms"}, "want key=value"},
		{nil, "nothing to change"},
	} {
		_, _, err := runIn(t, "", append(append([]string{"topics", "alter", "orders"}, c.args...), b...)...)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("topics alter orders %v: %v, want an error naming %q", c.args, err, c.msg)
		}
	}

	lines := strings.Repeat("r\n", 10)
	if _, errOut, err := runIn(t, lines, append([]string{"produce", "orders", "--partition", "0"}, b...)...); err != nil {
		t.Fatalf("produce: %v %s", err, errOut)
	}
	reset := func(args ...string) string {
		t.Helper()
		out, _, err := runIn(t, "", append(append([]string{"groups", "reset", "audit", "--topic", "orders"}, args...), b...)...)
		if err != nil {
			t.Fatalf("groups reset %v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := reset("--to-offset", "4"); !strings.Contains(out, "dry run") {
		t.Errorf("reset without --execute:\n%s", out)
	}
	if got, ok := committedOK(t, p.addr, "audit", "orders"); ok {
		t.Errorf("a dry run committed %d", got)
	}
	reset("--to-offset", "4", "--execute")
	if got := committed(t, p.addr, "audit", "orders"); got != 4 {
		t.Errorf("after reset --to-offset 4 --execute: committed %d", got)
	}
	reset("--to-latest", "--execute")
	if got := committed(t, p.addr, "audit", "orders"); got != 10 {
		t.Errorf("after reset --to-latest: committed %d, want 10", got)
	}
	reset("--to-time", "1h", "--execute")
	if got := committed(t, p.addr, "audit", "orders"); got != 0 {
		t.Errorf("after reset --to-time 1h: committed %d, want 0", got)
	}
	if _, _, err := runIn(t, "", append([]string{"groups", "reset", "audit", "--topic", "orders", "--to-earliest", "--to-latest"}, b...)...); err == nil {
		t.Errorf("two targets were accepted")
	}
	out, _, err = runIn(t, "", append([]string{"groups", "delete", "audit"}, b...)...)
	if err != nil || !strings.Contains(out, "deleted group audit") {
		t.Fatalf("groups delete = %q, %v", out, err)
	}
	if _, _, err := runIn(t, "", append([]string{"groups", "delete", "audit"}, b...)...); err == nil || !strings.Contains(err.Error(), "GROUP_ID_NOT_FOUND") {
		t.Errorf("deleting a deleted group: %v", err)
	}
	if _, _, err := runIn(t, "", append([]string{"groups", "describe", "audit"}, b...)...); err == nil || !strings.Contains(err.Error(), "no such group") {
		t.Errorf("describing a deleted group: %v", err)
	}
}

// TestConsumeFailsWhenTheBrokerGoes: a following `weir consume` whose
// broker goes away fails within about --timeout, naming the address.
func TestConsumeFailsWhenTheBrokerGoes(t *testing.T) {
	p := startServe(t, t.TempDir())
	if _, errOut, err := runIn(t, "x\n", "produce", "t", "--brokers", p.addr); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := runIn(t, "", "consume", "t", "--brokers", p.addr, "--from-beginning", "--timeout", "2s")
		done <- err
	}()
	time.Sleep(500 * time.Millisecond) // consuming
	p.kill9(t)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), p.addr) || !strings.Contains(err.Error(), "weir serve") {
			t.Errorf("consume after its broker went: %v; want an error naming %s", err, p.addr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("consume still following 20s after its broker went, with --timeout 2s")
	}
}
