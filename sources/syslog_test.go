package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// newTestSyslog starts a syslog source on a free port of 127.0.0.1.
func newTestSyslog(t *testing.T, conf string) (*syslogSource, string) {
	t.Helper()
	src, err := newSyslog(parseConfig(t, &syslogSpec, "address: 127.0.0.1:0\ntimezone: UTC\n"+conf), connectors.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*syslogSource)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var connectErr error
	for range 5 { // UDP may find the port TCP got taken; rare
		if connectErr = s.Connect(ctx); connectErr == nil {
			break
		}
	}
	if connectErr != nil {
		t.Fatal(connectErr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s, s.addr()
}

// readN reads and acknowledges batches until n messages arrived.
func readN(t *testing.T, s connectors.Source, n int) []*connectors.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*connectors.Message
	for len(out) < n {
		b, ack, err := s.Read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, b...)
		ack(ctx, nil)
	}
	if len(out) != n {
		t.Fatalf("%d messages, want %d", len(out), n)
	}
	return out
}

func fields(t *testing.T, m *connectors.Message) map[string]any {
	t.Helper()
	if m.Err != nil {
		t.Fatalf("message %q failed: %v", m.Value, m.Err)
	}
	var f map[string]any
	if err := json.Unmarshal(m.Value, &f); err != nil {
		t.Fatalf("value %q: %v", m.Value, err)
	}
	return f
}

func TestSyslogLogger(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("needs logger(1) from util-linux (bsdutils): make test-deps installs it")
	}
	s, addr := newTestSyslog(t, "batch_period: 20ms")
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		want map[string]any
	}{
		{[]string{"--rfc5424", "--tcp", "-t", "app1", "-p", "local3.warning", "--sd-id", "zoo@123", "--sd-param", `tiger="hungry"`, "over tcp"},
			map[string]any{"rfc": 5424.0, "app": "app1", "facility_name": "local3", "severity_name": "warning", "message": "over tcp"}},
		{[]string{"--rfc5424", "--udp", "-t", "app2", "--id=4242", "over udp"},
			map[string]any{"rfc": 5424.0, "app": "app2", "procid": "4242", "facility_name": "user", "severity_name": "notice", "message": "over udp"}},
		{[]string{"--rfc5424", "--tcp", "--octet-count", "-t", "app3", "octet counted"},
			map[string]any{"rfc": 5424.0, "app": "app3", "message": "octet counted"}},
		{[]string{"--rfc3164", "--udp", "-t", "app4", "-p", "auth.err", "bsd over udp"},
			map[string]any{"rfc": 3164.0, "app": "app4", "facility_name": "auth", "severity_name": "err", "message": "bsd over udp"}},
		{[]string{"--rfc3164", "--tcp", "-t", "app5", "bsd over tcp"},
			map[string]any{"rfc": 3164.0, "app": "app5", "message": "bsd over tcp"}},
	} {
		args := append([]string{"-n", "127.0.0.1", "-P", port}, tc.args...)
		if out, err := exec.Command(logger, args...).CombinedOutput(); err != nil {
			t.Fatalf("logger %s: %v: %s", strings.Join(args, " "), err, out)
		}
		m := readN(t, s, 1)[0]
		f := fields(t, m)
		for k, v := range tc.want {
			if f[k] != v {
				t.Errorf("logger %s: %s = %v, want %v (all: %v)", strings.Join(tc.args, " "), k, f[k], v, f)
			}
		}
		if f["host"] == nil || f["timestamp"] == nil {
			t.Errorf("logger %s: no host or timestamp: %v", strings.Join(tc.args, " "), f)
		}
		if ts, _ := time.Parse(time.RFC3339Nano, f["timestamp"].(string)); time.Since(ts).Abs() > time.Hour || !m.Time.Equal(ts) {
			t.Errorf("logger %s: timestamp %v, record time %v", strings.Join(tc.args, " "), f["timestamp"], m.Time)
		}
		if !strings.HasPrefix(string(m.Header(HeaderPeer)), "127.0.0.1:") {
			t.Errorf("peer header %q", m.Header(HeaderPeer))
		}
		if tc.want["app"] == "app1" {
			sd, _ := f["structured_data"].(map[string]any)
			if zoo, _ := sd["zoo@123"].(map[string]any); zoo["tiger"] != "hungry" {
				t.Errorf("structured data %v", f["structured_data"])
			}
		}
	}
}

func TestSyslogMalformedGoesToDeadLetters(t *testing.T) {
	s, addr := newTestSyslog(t, "batch_period: 20ms\nmax_message_bytes: 512")
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.Write([]byte("no priority here\n"))
	m := readN(t, s, 1)[0]
	if m.Err == nil || !strings.Contains(m.Err.Error(), "no <PRI>") || string(m.Value) != "no priority here" {
		t.Fatalf("udp: value %q err %v", m.Value, m.Err)
	}
	udp.Write([]byte("<13>" + strings.Repeat("x", 600)))
	m = readN(t, s, 1)[0]
	if m.Err == nil || !strings.Contains(m.Err.Error(), "over max_message_bytes") || len(m.Value) != 512 {
		t.Fatalf("long datagram: %d bytes, err %v", len(m.Value), m.Err)
	}

	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	// A good message, a broken one, an octet-counted one with a newline
	// inside, then a frame over the limit, which closes the connection.
	fmt.Fprintf(tcp, "<13>1 - h a - - - fine\n<13>1 2026-13-45T00:00:00Z h a - - - bad date\n")
	msg := "<13>1 - h a - - - two\nlines"
	fmt.Fprintf(tcp, "%d %s", len(msg), msg)
	fmt.Fprintf(tcp, "9999 <13>")
	got := readN(t, s, 4)
	if f := fields(t, got[0]); f["message"] != "fine" {
		t.Errorf("first: %v", f)
	}
	if got[1].Err == nil || !strings.Contains(got[1].Err.Error(), "is not RFC 3339") || !strings.Contains(string(got[1].Value), "bad date") {
		t.Errorf("second: %q %v", got[1].Value, got[1].Err)
	}
	if f := fields(t, got[2]); f["message"] != "two\nlines" {
		t.Errorf("third: %v", f)
	}
	if got[3].Err == nil || !strings.Contains(got[3].Err.Error(), "too large") {
		t.Errorf("fourth: %v", got[3].Err)
	}
	tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tcp.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open after a frame over the limit")
	}
}

// With max_pending batches unacknowledged the source reads no more; TCP
// holds the rest, and nothing is lost once acknowledgements come.
func TestSyslogBackpressure(t *testing.T) {
	s, addr := newTestSyslog(t, "batch_size: 10\nmax_pending: 2\nbatch_period: 10ms")
	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	const n = 5000
	go func() {
		for i := range n {
			fmt.Fprintf(tcp, "<13>1 - h a - - - m%d\n", i)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var acks []connectors.AckFunc
	for range 2 {
		_, ack, err := s.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	if b, _, err := s.Read(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third batch (%d messages) while two wait for acknowledgement", len(b))
	}
	cancelShort()
	for _, ack := range acks {
		ack(ctx, nil)
	}
	got := readN(t, s, n-20)
	for i, m := range got {
		if want := fmt.Sprintf("m%d", i+20); fields(t, m)["message"] != want {
			t.Fatalf("message %d is %q, want %s", i, m.Value, want)
		}
	}
}

// Drain hands on everything already sent, then ends the input.
func TestSyslogDrain(t *testing.T) {
	s, addr := newTestSyslog(t, "batch_period: 1h\nbatch_size: 100000")
	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	const n = 1000
	for i := range n {
		fmt.Fprintf(tcp, "<13>1 - h a - - - t%d\n", i)
	}
	for i := range 10 {
		fmt.Fprintf(udp, "<13>1 - h a - - - u%d", i)
	}
	// Datagrams on loopback are in the socket's buffer once sent, and so
	// are the lines of an accepted connection; a connection still in the
	// listen queue would be reset when Drain closes the listener. Wait
	// for the accept, not for a guessed time.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.mu.Lock()
		accepted := len(s.conns)
		s.mu.Unlock()
		if accepted == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the TCP connection was not accepted within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	s.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var total int
	for {
		b, ack, err := s.Read(ctx)
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
		ack(ctx, nil)
	}
	if total != n+10 {
		t.Errorf("drained %d messages, want %d", total, n+10)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting connections after Drain")
	}
}

func TestSyslogConfigErrors(t *testing.T) {
	for conf, want := range map[string]string{
		"protocols: [sctp]":       `"sctp" is neither udp nor tcp`,
		"timezone: Mars/Olympus":  "is not a time zone",
		"max_message_bytes: 100B": "at least 480",
		"address: nope":           "is not host:port",
		"max_pending: 0":          "at least 1",
	} {
		c, err := parseOrErr(t, &syslogSpec, conf)
		if err == nil {
			_, err = newSyslog(c, connectors.Resources{})
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", conf, err, want)
		}
	}
}

func BenchmarkSyslogTCP(b *testing.B) {
	src, err := newSyslog(parseConfig(b, &syslogSpec, "address: 127.0.0.1:0\nprotocols: [tcp]\nbatch_size: 1000\nmax_pending: 64"), connectors.Resources{})
	if err != nil {
		b.Fatal(err)
	}
	s := src.(*syslogSource)
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	msg := []byte(`<165>1 2026-11-21T18:56:42.289961Z web01 nginx 811 ID47 [req@1 id="af3"] GET /api/orders 200 12ms` + "\n")
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	go func() {
		buf := make([]byte, 0, 64<<10)
		for sent := 0; sent < b.N; {
			buf = buf[:0]
			for ; sent < b.N && len(buf)+len(msg) <= cap(buf); sent++ {
				buf = append(buf, msg...)
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	for got := 0; got < b.N; {
		batch, ack, err := s.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		got += len(batch)
		ack(ctx, nil)
	}
}
