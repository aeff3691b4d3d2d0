package sources

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

var syslogSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "syslog",
	Summary: "Receive syslog over UDP and TCP (RFC 5424 and RFC 3164), parsed into JSON fields.",
	Doc: "Listens on address over the protocols given: UDP (a message per datagram) and TCP (RFC 6587 framing, " +
		"detected per message: octet counting, \"<length> <message>\", as rsyslog and syslog-ng send it, or one " +
		"message per line). Both RFC 5424 and the older RFC 3164 (BSD) format are parsed, and each message becomes " +
		"a record whose value is a JSON object: facility and severity (numbers), facility_name and severity_name, " +
		"rfc (5424 or 3164), timestamp (RFC 3339, UTC), host, app, procid, msgid, structured_data (an object per " +
		"SD element, of its params) and message; fields a message lacks are left out. The record's time is the " +
		"message's timestamp, or the time it arrived if it has none; RFC 3164 timestamps, which carry no zone, " +
		"are read in timezone. Every record has the header weir.peer, the sender's address.\n\n" +
		"A message that is not syslog (no <PRI>, a broken RFC 5424 header or structured data) goes to the " +
		"dead-letter dataset as it arrived, with the reason and the byte where it went wrong. A TCP frame over " +
		"max_message_bytes closes its connection (the stream cannot be resynchronised) and leaves a dead letter " +
		"saying so; a longer UDP datagram is cut and dead-lettered.\n\n" +
		"Syslog has no acknowledgements: a message counts once it arrived. When max_pending batches wait to be " +
		"stored the source stops reading, so TCP senders are slowed down by TCP itself and UDP datagrams wait in " +
		"the socket's receive buffer (read_buffer) and are dropped by the kernel beyond it.\n\n" +
		"With tls set, TCP connections are TLS (RFC 5425, syslog over TLS, usually port 6514; rsyslog's " +
		"gtls driver, syslog-ng's tls()); with tls.client_ca_file, senders must present a certificate that " +
		"authority signed. TLS is for TCP only: list protocols: [tcp].",
	Fields: []connectors.Field{
		{Name: "address", Type: connectors.TypeString, Default: "127.0.0.1:5514", Doc: "host:port to listen on, for UDP and TCP alike (:514 for every interface; port 514 needs privileges)."},
		{Name: "protocols", Type: connectors.TypeStrings, Default: []string{"udp", "tcp"}, Doc: "Which of udp and tcp to listen on.", Example: []string{"tcp"}},
		{Name: "timezone", Type: connectors.TypeString, Default: "Local", Doc: "Zone of RFC 3164 timestamps, which carry none: an IANA name (Europe/Paris), UTC or Local."},
		{Name: "max_message_bytes", Type: connectors.TypeSize, Default: "64KiB", Min: "480B", Doc: "Longest message (RFC 5424 asks receivers to take 480 bytes at least)."},
		{Name: "max_connections", Type: connectors.TypeInt, Default: 1024, Min: 1, Doc: "Most TCP connections at once; more are closed at once."},
		{Name: "idle_timeout", Type: connectors.TypeDuration, Default: "10m", Min: "1ms", Doc: "A TCP connection silent this long is closed."},
		{Name: "read_buffer", Type: connectors.TypeSize, Default: "4MiB", Doc: "Receive buffer asked of the kernel for the UDP socket (bounded by net.core.rmem_max)."},
		{Name: "tls", Type: connectors.TypeObject, Doc: "Serve TCP over TLS (RFC 5425).", Fields: []connectors.Field{
			{Name: "cert_file", Type: connectors.TypeString, Required: true, Doc: "PEM certificate (chain) of this server.", Example: "/etc/weir/syslog.crt"},
			{Name: "key_file", Type: connectors.TypeString, Required: true, Doc: "PEM private key of the certificate.", Example: "/etc/weir/syslog.key"},
			{Name: "client_ca_file", Type: connectors.TypeString, Doc: "PEM authorities whose certificates senders must present (mutual TLS); default: none asked.", Example: "/etc/weir/senders-ca.pem"},
		}},
		{Name: "batch_size", Type: connectors.TypeInt, Default: 1000, Min: 1, Doc: "Most messages in a batch."},
		{Name: "batch_period", Type: connectors.TypeDuration, Default: "200ms", Min: "1ms", Doc: "Longest a message waits for a fuller batch."},
		{Name: "max_pending", Type: connectors.TypeInt, Default: 8, Min: 1, Doc: "Most batches handed on and not yet stored; then reading waits."},
	},
	Example: `sources:
  network:
    syslog: {address: "0.0.0.0:5514", protocols: [udp, tcp], timezone: UTC}
    to: logs`,
}

func init() { connectors.MustRegisterSource(syslogSpec, newSyslog) }

// HeaderPeer is the header with the address a syslog message came from.
const HeaderPeer = "weir.peer"

// syslogSource runs a reader goroutine for the UDP socket and one per TCP
// connection; each parses its messages and adds them to the open batch.
// Batches are sealed when full or batch_period old, and wait in ready for
// Read; slots bounds how many are sealed and not yet acknowledged.
type syslogSource struct {
	address   string
	udp, tcp  bool
	loc       *time.Location
	maxMsg    int
	maxConns  int
	idle      time.Duration
	readBuf   int
	batchSize int
	period    time.Duration
	tlsConfig *tls.Config // nil: plain TCP
	log       *slog.Logger
	slots     chan struct{}
	ready     chan []*connectors.Message
	closing   chan struct{} // closed by Close
	stopInput chan struct{} // closed by Drain and Close: readers finish
	stopOnce  sync.Once
	drainOnce sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup // readers and the flusher
	drained   chan struct{}  // closed once Drain sealed the last batch

	mu      sync.Mutex // guards the fields below
	cur     []*connectors.Message
	first   time.Time // when cur got its first message
	started bool
	closed  bool
	pc      *net.UDPConn
	ln      net.Listener
	conns   map[net.Conn]struct{}
}

var (
	_ connectors.Source    = (*syslogSource)(nil)
	_ connectors.Connector = (*syslogSource)(nil)
)

func newSyslog(conf *connectors.Config, res connectors.Resources) (connectors.Source, error) {
	s := &syslogSource{
		address:   conf.String("address"),
		maxMsg:    int(conf.Size("max_message_bytes")),
		maxConns:  conf.Int("max_connections"),
		idle:      conf.Duration("idle_timeout"),
		readBuf:   int(conf.Size("read_buffer")),
		batchSize: conf.Int("batch_size"),
		period:    conf.Duration("batch_period"),
		log:       res.Logger,
		closing:   make(chan struct{}),
		stopInput: make(chan struct{}),
		drained:   make(chan struct{}),
		conns:     map[net.Conn]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if _, _, err := net.SplitHostPort(s.address); err != nil {
		return nil, conf.Errorf("address", "%q is not host:port", s.address)
	}
	protocols := conf.Strings("protocols")
	if len(protocols) == 0 {
		return nil, conf.Errorf("protocols", "name udp, tcp or both")
	}
	for _, p := range protocols {
		switch strings.ToLower(p) {
		case "udp":
			s.udp = true
		case "tcp":
			s.tcp = true
		default:
			return nil, conf.Errorf("protocols", "%q is neither udp nor tcp", p)
		}
	}
	tz := conf.String("timezone")
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, conf.Errorf("timezone", "%q is not a time zone (an IANA name such as Europe/Paris, UTC or Local)", tz)
	}
	s.loc = loc
	n := conf.Int("max_pending")
	s.slots = make(chan struct{}, n)
	s.ready = make(chan []*connectors.Message, n)
	if t := conf.Object("tls"); t != nil && t.String("cert_file") != "" {
		if s.udp {
			return nil, conf.Errorf("tls", "TLS is for TCP only; set protocols: [tcp]")
		}
		cert, err := tls.LoadX509KeyPair(t.String("cert_file"), t.String("key_file"))
		if err != nil {
			return nil, conf.Errorf("tls", "loading the certificate: %v", err)
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if ca := t.String("client_ca_file"); ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, conf.Errorf("tls", "client_ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, conf.Errorf("tls", "client_ca_file %s holds no PEM certificate", ca)
			}
			s.tlsConfig.ClientCAs, s.tlsConfig.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	return s, nil
}

// Connect binds the address and starts reading. Calling it again once
// bound does nothing.
func (s *syslogSource) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSourceClosed
	}
	if s.started {
		return nil
	}
	var lc net.ListenConfig
	addr := s.address
	if s.tcp {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			// An address that cannot be bound is an error of the start.
			return connectors.Permanent(fmt.Errorf("sources: syslog: %w", err))
		}
		addr = ln.Addr().String() // port 0: UDP takes the same port
		if s.tlsConfig != nil {
			ln = tls.NewListener(ln, s.tlsConfig)
		}
		s.ln = ln
	}
	if s.udp {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
				s.ln = nil
			}
			return connectors.Permanent(fmt.Errorf("sources: syslog: %w", err))
		}
		s.pc = pc.(*net.UDPConn) // what ListenPacket("udp") returns
		if s.readBuf > 0 {
			s.pc.SetReadBuffer(s.readBuf)
		}
		addr = pc.LocalAddr().String()
	}
	s.started = true
	s.wg.Add(1)
	go s.flusher()
	if s.pc != nil {
		s.wg.Add(1)
		go s.readUDP(s.pc)
	}
	if s.ln != nil {
		s.wg.Add(1)
		go s.accept(s.ln)
	}
	var protos []string
	if s.udp {
		protos = append(protos, "udp")
	}
	if s.tcp && s.tlsConfig != nil {
		protos = append(protos, "tcp+tls")
	} else if s.tcp {
		protos = append(protos, "tcp")
	}
	s.log.Info("weir: syslog source listening", "address", addr, "protocols", strings.Join(protos, ","))
	return nil
}

// addr is the bound address (for tests binding port 0), or "".
func (s *syslogSource) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ln != nil:
		return s.ln.Addr().String()
	case s.pc != nil:
		return s.pc.LocalAddr().String()
	}
	return ""
}

func (s *syslogSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	select {
	case b, ok := <-s.ready:
		if !ok {
			return nil, nil, connectors.ErrEndOfInput
		}
		var once sync.Once
		return b, func(context.Context, error) error {
			once.Do(func() { <-s.slots })
			return nil
		}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-s.closing:
		return nil, nil, errSourceClosed
	}
}

var _ connectors.Drainer = (*syslogSource)(nil)

// Drain stops taking input: the listeners close, connections and the UDP
// socket are read for what the kernel already holds (drainGrace), then
// closed; the open batch is sealed, and Read returns ErrEndOfInput after
// the last one.
func (s *syslogSource) Drain() {
	s.drainOnce.Do(s.drain)
}

func (s *syslogSource) drain() {
	s.stopReading(drainGrace)
	go func() {
		s.wg.Wait()
		s.mu.Lock()
		if len(s.cur) > 0 && !s.closed {
			s.sealLocked()
		}
		s.closed = true // nothing more is pushed
		close(s.ready)
		s.mu.Unlock()
		close(s.drained)
	}()
}

// drainGrace is how long Drain keeps reading what senders already sent.
const drainGrace = 200 * time.Millisecond

// stopReading closes the listeners and lets the readers finish within
// grace.
func (s *syslogSource) stopReading(grace time.Duration) {
	s.stopOnce.Do(func() {
		close(s.stopInput)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ln != nil {
			s.ln.Close()
		}
		deadline := time.Now().Add(grace)
		if s.pc != nil {
			s.pc.SetReadDeadline(deadline)
		}
		for c := range s.conns {
			c.SetReadDeadline(deadline)
		}
	})
}

// syslogReader is the per-goroutine state of a reader: the parsed message,
// a scratch buffer and the arena records are carved from.
type syslogReader struct {
	s       *syslogSource
	msg     codecs.SyslogMessage
	scratch []byte
	mem     arena
	hdrs    []codecs.RecordHeader
}

var peerKey = []byte(HeaderPeer)

// add parses one message into a record and adds it to the open batch. It
// blocks while max_pending batches wait; false means the source closed.
func (r *syslogReader) add(frame []byte, peer []byte, now time.Time) bool {
	m := r.mem.message()
	if err := codecs.ParseSyslog(frame, now, r.s.loc, &r.msg); err != nil {
		m.Value, m.Time = r.mem.copy(frame), now
		m.Err = fmt.Errorf("sources: syslog from %s: %w", peer, err)
	} else {
		r.scratch = codecs.AppendSyslogJSON(r.scratch[:0], &r.msg)
		m.Value, m.Time = r.mem.copy(r.scratch), now
		if r.msg.HasTimestamp {
			m.Time = r.msg.Timestamp
		}
	}
	if len(r.hdrs) == cap(r.hdrs) {
		r.hdrs = make([]codecs.RecordHeader, 0, 256)
	}
	r.hdrs = append(r.hdrs, codecs.RecordHeader{Key: peerKey, Value: peer})
	m.Headers = r.hdrs[len(r.hdrs)-1 : len(r.hdrs) : len(r.hdrs)]
	return r.s.push(m)
}

// deadLetter adds a record that carries only a reason: input that could
// not be split into messages.
func (r *syslogReader) deadLetter(raw, peer []byte, now time.Time, format string, args ...any) bool {
	m := r.mem.message()
	m.Value, m.Time = r.mem.copy(raw), now
	m.Headers = []codecs.RecordHeader{{Key: peerKey, Value: peer}}
	m.Err = fmt.Errorf("sources: syslog from %s: %s", peer, fmt.Sprintf(format, args...))
	return r.s.push(m)
}

// push adds m to the open batch and seals it when full.
func (s *syslogSource) push(m *connectors.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.cur) == 0 {
		s.first = time.Now()
	}
	s.cur = append(s.cur, m)
	if len(s.cur) >= s.batchSize {
		return s.sealLocked()
	}
	return true
}

// sealLocked hands the open batch on, waiting for a slot: while it waits
// every reader waits, which is the backpressure. False means closed.
func (s *syslogSource) sealLocked() bool {
	select {
	case s.slots <- struct{}{}:
	case <-s.closing:
		return false
	}
	s.ready <- s.cur // never blocks: a slot is held
	s.cur = make([]*connectors.Message, 0, min(s.batchSize, 256))
	return true
}

// flusher seals a batch once its first message is batch_period old.
func (s *syslogSource) flusher() {
	defer s.wg.Done()
	tick := time.NewTicker(max(s.period/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.stopInput:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		if len(s.cur) > 0 && time.Since(s.first) >= s.period && !s.closed {
			s.sealLocked()
		}
		s.mu.Unlock()
	}
}

func (s *syslogSource) readUDP(pc *net.UDPConn) {
	defer s.wg.Done()
	r := &syslogReader{s: s}
	buf := make([]byte, s.maxMsg+1)
	var lastPeer netip.AddrPort
	var peer []byte
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf) // no allocation per datagram
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				pc.Close() // drained
				return
			}
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("weir: syslog source: reading UDP failed; UDP input stopped", "err", err)
			}
			return
		}
		if peer == nil || from != lastPeer {
			lastPeer = from
			peer = r.mem.copy(from.AppendTo(nil))
		}
		now := time.Now()
		frame := buf[:n]
		if n > s.maxMsg {
			if !r.deadLetter(frame[:s.maxMsg], peer, now, "a datagram over max_message_bytes (%d), cut", s.maxMsg) {
				return
			}
			continue
		}
		frame = trimFrame(frame)
		if len(frame) == 0 {
			continue
		}
		if !r.add(frame, peer, now) {
			return
		}
	}
}

// trimFrame drops the line breaks and NULs some senders end datagrams
// with.
func trimFrame(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

func (s *syslogSource) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				s.log.Warn("weir: syslog source: accepting a TCP connection failed; retrying", "err", err)
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-s.closing:
					return
				}
			}
			s.log.Error("weir: syslog source: accepting TCP connections failed; TCP input stopped", "err", err)
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= s.maxConns {
			s.mu.Unlock()
			s.log.Warn("weir: syslog source: too many TCP connections; closing a new one", "peer", c.RemoteAddr().String(), "max_connections", s.maxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.readTCP(c)
	}
}

// idleConn pushes the read deadline on before every read.
type idleConn struct {
	net.Conn
	idle time.Duration
	stop <-chan struct{}
}

func (c idleConn) Read(p []byte) (int, error) {
	select {
	case <-c.stop: // the deadline set by stopReading holds
	default:
		c.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}

func (s *syslogSource) readTCP(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := &syslogReader{s: s}
	peer := r.mem.copy([]byte(c.RemoteAddr().String()))
	if tc, ok := c.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			// No message was lost: nothing was said yet.
			s.log.Warn("weir: syslog source: TLS handshake failed; connection closed", "peer", string(peer), "err", err)
			return
		}
	}
	fr := codecs.NewSyslogFrameReader(idleConn{c, s.idle, s.stopInput}, s.maxMsg)
	for {
		frame, err := fr.Next()
		now := time.Now()
		if err != nil {
			switch {
			case err == io.EOF, errors.Is(err, net.ErrClosed):
			case errors.Is(err, codecs.ErrFrameTooLarge):
				r.deadLetter(nil, peer, now, "%v; connection closed", err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				r.deadLetter(nil, peer, now, "the connection ended inside an octet-counted frame")
			default:
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					select {
					case <-s.stopInput: // Drain's or Close's deadline, not idleness
						return
					default:
					}
					s.log.Info("weir: syslog source: closing an idle TCP connection", "peer", string(peer), "idle_timeout", s.idle)
				} else {
					r.deadLetter(nil, peer, now, "%v; connection closed", err)
				}
			}
			return
		}
		if len(frame) == 0 {
			continue
		}
		if !r.add(frame, peer, now) {
			return
		}
	}
}

// Close stops listening, closes the connections, and hands on nothing
// more; what was read and not yet sealed into a batch is lost, as a
// syslog sender that got no acknowledgement expects. It is safe to call
// more than once.
func (s *syslogSource) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closing) // first: a reader waiting for a slot under mu lets go
		s.stopReading(0)
		s.mu.Lock()
		s.closed = true
		if s.ln != nil {
			s.ln.Close()
		}
		if s.pc != nil {
			s.pc.Close()
		}
		conns := slices.Collect(maps.Keys(s.conns))
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
	})
	return nil
}
