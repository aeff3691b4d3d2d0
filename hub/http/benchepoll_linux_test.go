package http

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"
)

// The subscribers of BenchmarkBroadcast as other machines would cost the
// servers: a few goroutines (one per processor) wait in epoll_wait(2) for
// any of their sockets, raw non-blocking file descriptors outside Go's
// netpoller, and read each ready one into its buffer, parsing the events
// in place, instead of a goroutine per subscriber woken by the netpoller
// for each read (about 20 µs of the subscribers' processor time per read,
// which the servers' writers then wait for on a 2-processor machine).
// With -broadcast.client-poll=D (benchClientPoll), a poller that finds
// nothing ready sleeps D before it looks again instead of waiting in
// epoll_wait: a socket that gets data then wakes nobody (on this machine
// the server's write otherwise wakes the poller's thread, which then
// preempts the writer: both part of the server's processor time that
// subscribers on other machines would not cost it), for up to D more
// delay. Level-triggered: a read that filled less than the buffer's room is
// taken as the socket drained (a sixth of the reads otherwise return
// EAGAIN), and epoll_wait reports the socket again if more came since.
//
// SSE subscribers send a GET as net/http's client does and read the head
// of the response blocking (it must be a 200 with neither chunked nor
// any other transfer coding: weir and the floor server write the events
// as they are until the connection ends); Redis subscribers SUBSCRIBE
// (RESP2) and wait for the confirmation; both then go non-blocking.

// pollSub is one subscriber read by a poller.
type pollSub interface {
	// readable reads what the socket has and takes every complete
	// event; done after the end.
	readable() (done bool, err error)
	// finish adds what it saw to the benchmark's events.
	finish()
}

// runEpollSubscribers connects subs subscribers of kind ("sse" or
// "redis") to url, each with a socket of its own, and returns once all
// are subscribed; pollers then read them until each has the end.
func runEpollSubscribers(kind, rawURL string, clientPoll time.Duration, subs, sample, total int, ev *benchEvents, wg *sync.WaitGroup, errs chan<- error) error {
	var (
		addr    string
		request []byte
		connect func(fd int) (pollSub, error)
	)
	switch kind {
	case "sse":
		u, err := url.Parse(rawURL)
		if err != nil {
			return err
		}
		addr = u.Host
		request = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n", u.RequestURI(), u.Host)
		connect = func(fd int) (pollSub, error) {
			r, err := sseHandshake(fd, request)
			if err != nil {
				return nil, err
			}
			chk := newSSECheck(ev, sample, total)
			return &ssePollSub{r: r, on: chk.event, done: func() { chk.finish(); ev.reads.Add(r.reads) }, n: &chk.n}, nil
		}
	case "redis":
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return err
		}
		addr = opts.Addr
		connect = func(fd int) (pollSub, error) {
			s := &redisPollSub{fd: fd, buf: make([]byte, 64<<10), ev: ev, sample: sample, mine: make([]time.Duration, 0, total/sample+1)}
			return s, s.subscribe("bench")
		}
	default:
		return fmt.Errorf("subscriber kind %q: the epoll subscribers are sse or redis", kind)
	}
	tcp, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: tcp.Port}
	copy(sa.Addr[:], tcp.IP.To4())
	n := min(runtime.GOMAXPROCS(0), max(subs, 1))
	pollers := make([]*poller, n)
	for i := range pollers {
		p, err := newPoller()
		if err != nil {
			for _, p := range pollers[:i] {
				p.closeAll()
			}
			return err
		}
		p.interval = clientPoll
		pollers[i] = p
	}
	// Each poller connects its share, blocking, then goes.
	var connecting sync.WaitGroup
	connErrs := make(chan error, n)
	for i, p := range pollers {
		mine := subs / n
		if i < subs%n {
			mine++
		}
		connecting.Add(1)
		go func() {
			defer connecting.Done()
			for range mine {
				if err := p.connect(*sa, connect); err != nil {
					connErrs <- err
					return
				}
			}
		}()
	}
	connecting.Wait()
	close(connErrs)
	if err := <-connErrs; err != nil {
		for _, p := range pollers {
			p.closeAll()
		}
		return err
	}
	for _, p := range pollers {
		wg.Add(p.live)
		go p.run(wg, errs)
	}
	return nil
}

// poller reads the sockets of its subscribers.
type poller struct {
	epfd     int
	interval time.Duration // benchClientPoll
	subs     []pollSub     // by file descriptor
	live     int
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &poller{epfd: epfd}, nil
}

// connect opens a socket to sa, subscribes it with connect and adds it
// to p's epoll set, non-blocking.
func (p *poller) connect(sa unix.SockaddrInet4, connect func(fd int) (pollSub, error)) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &sa); err != nil { // sa, a copy: Connect writes in it
		unix.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	s, err := connect(fd)
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err == nil {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	if err != nil {
		unix.Close(fd)
		return err
	}
	for len(p.subs) <= fd {
		p.subs = append(p.subs, nil)
	}
	p.subs[fd] = s
	p.live++
	return nil
}

// run reads the ready sockets until every subscriber has the end (or
// failed: its error goes to errs), each done in wg.
func (p *poller) run(wg *sync.WaitGroup, errs chan<- error) {
	defer unix.Close(p.epfd)
	events := make([]unix.EpollEvent, 256)
	wait := -1 // block
	if p.interval > 0 {
		wait = 0
	}
	for p.live > 0 {
		n, err := unix.EpollWait(p.epfd, events, wait)
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil {
			time.Sleep(p.interval) // nothing ready: the next look is a timer's
			continue
		}
		if err != nil {
			// Every subscriber left fails with it.
			for fd, s := range p.subs {
				if s != nil {
					p.drop(fd)
					errs <- fmt.Errorf("epoll_wait: %w", err)
					wg.Done()
				}
			}
			return
		}
		for _, e := range events[:n] {
			fd := int(e.Fd)
			s := p.subs[fd]
			if s == nil {
				continue
			}
			done, err := s.readable()
			if !done && err == nil {
				continue
			}
			p.drop(fd)
			if err != nil {
				errs <- err
			}
			wg.Done()
		}
	}
}

// drop closes the socket of a subscriber that is done.
func (p *poller) drop(fd int) {
	p.subs[fd].finish()
	p.subs[fd] = nil
	p.live--
	unix.Close(fd) // also takes it out of the epoll set
}

func (p *poller) closeAll() {
	for fd, s := range p.subs {
		if s != nil {
			unix.Close(fd)
		}
	}
	unix.Close(p.epfd)
}

// fdReader reads a non-blocking socket: errWouldBlock when it has
// nothing, and without asking it after a read that filled less than the
// room given (see above: epoll_wait says when more comes).
type fdReader struct {
	fd    int
	short bool // the last read filled less than its room
}

func (r *fdReader) Read(p []byte) (int, error) {
	if r.short {
		r.short = false
		return 0, errWouldBlock
	}
	for {
		n, err := unix.Read(r.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			return 0, io.EOF
		}
		r.short = n < len(p)
		return n, nil
	}
}

// writeAll writes b to a blocking socket.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// sseHandshake sends request on the blocking socket fd and reads the
// head of the response; the sseReader it returns has what came after it,
// and reads fd.
func sseHandshake(fd int, request []byte) (*sseReader, error) {
	if err := writeAll(fd, request); err != nil {
		return nil, err
	}
	r := newSSEReader(&fdReader{fd: fd})
	for {
		if i := bytes.Index(r.buf[:r.end], []byte("\r\n\r\n")); i >= 0 {
			if err := checkSSEHead(r.buf[:i+2]); err != nil {
				return nil, err
			}
			r.start = i + 4
			return r, nil
		}
		if r.end == len(r.buf) {
			return nil, fmt.Errorf("the head of the response is longer than %d bytes", len(r.buf))
		}
		n, err := unix.Read(fd, r.buf[r.end:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the head of the response: %w", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("the connection ended in the head of the response: %q", r.buf[:r.end])
		}
		r.end += n
	}
}

// checkSSEHead checks the head of a response (lines ending in \r\n):
// a 200 whose body is the stream as it is.
func checkSSEHead(head []byte) error {
	lines := bytes.Split(bytes.TrimSuffix(head, []byte("\r\n")), []byte("\r\n"))
	if !bytes.HasPrefix(lines[0], []byte("HTTP/1.1 200 ")) && !bytes.HasPrefix(lines[0], []byte("HTTP/1.0 200 ")) {
		return fmt.Errorf("the response is %q, want a 200", lines[0])
	}
	for _, l := range lines[1:] {
		k, v, _ := bytes.Cut(l, []byte(":"))
		if bytes.EqualFold(k, []byte("Transfer-Encoding")) || bytes.EqualFold(k, []byte("Content-Encoding")) {
			return fmt.Errorf("the response has %q: the epoll subscribers read only a stream as it is (-broadcast.client-io=goroutines reads any)", l)
		}
		if bytes.EqualFold(k, []byte("Content-Type")) && !bytes.HasPrefix(bytes.TrimSpace(v), []byte("text/event-stream")) {
			return fmt.Errorf("the response has %q, want text/event-stream", l)
		}
	}
	return nil
}

// ssePollSub is an SSE subscriber read by a poller: on takes each event
// with the last id the stream set (sseCheck.event), done at the end.
type ssePollSub struct {
	r    *sseReader
	on   func(event, data, id []byte) (done bool, err error)
	done func()
	n    *int // events taken, for errors
}

func (s *ssePollSub) readable() (bool, error) {
	for {
		event, data, err := s.r.next()
		if err == errWouldBlock {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("subscriber after %d events: %w", *s.n, err)
		}
		if done, err := s.on(event, data, s.r.lastID); done || err != nil {
			return done, err
		}
	}
}

func (s *ssePollSub) finish() { s.done() }

// redisPollSub is a Redis subscriber read by a poller: RESP2 pushes
// parsed in its buffer.
type redisPollSub struct {
	fd         int
	r          fdReader
	buf        []byte
	start, end int
	items      [][]byte
	ev         *benchEvents
	sample, n  int
	mine       []time.Duration
}

// subscribe subscribes the blocking socket to channel and reads the
// confirmation.
func (s *redisPollSub) subscribe(channel string) error {
	s.r.fd = s.fd
	if err := writeAll(s.fd, fmt.Appendf(nil, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel)); err != nil {
		return err
	}
	for {
		items, k, err := parseRESPArray(s.buf[s.start:s.end], s.items[:0])
		if err != nil {
			return err
		}
		if k > 0 {
			s.start += k
			if len(items) != 3 || string(items[0]) != "subscribe" || string(items[1]) != channel {
				return fmt.Errorf("SUBSCRIBE %s: answered %q", channel, items)
			}
			return nil
		}
		n, err := unix.Read(s.fd, s.buf[s.end:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return fmt.Errorf("SUBSCRIBE %s: no confirmation (%v)", channel, err)
		}
		s.end += n
	}
}

func (s *redisPollSub) readable() (bool, error) {
	for {
		for {
			items, k, err := parseRESPArray(s.buf[s.start:s.end], s.items[:0])
			if err != nil {
				return false, fmt.Errorf("subscriber after %d events: %w", s.n, err)
			}
			if k == 0 {
				break
			}
			s.items = items
			s.start += k
			if len(items) != 3 || string(items[0]) != "message" {
				return false, fmt.Errorf("subscriber after %d events: push %q", s.n, items)
			}
			if string(items[2]) == benchEnd {
				return true, nil
			}
			if err := s.ev.read(items[2], s.sample, &s.n, &s.mine); err != nil {
				return false, err
			}
		}
		// Room for the next read: the partial push to the front, or a
		// bigger buffer for one that does not fit.
		if s.start > 0 {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		if s.end == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		n, err := s.r.Read(s.buf[s.end:])
		if err == errWouldBlock {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("subscriber after %d events: %w", s.n, err)
		}
		s.end += n
	}
}

func (s *redisPollSub) finish() { s.ev.add(s.n, s.mine) }

// parseRESPArray parses one RESP2 array of bulk strings and integers at
// the start of b, appending its items (in b) to items; k is how many
// bytes it took, 0 if b does not hold all of it yet.
func parseRESPArray(b []byte, items [][]byte) (_ [][]byte, k int, err error) {
	line := func(at int) ([]byte, int) { // without \r\n; -1 when incomplete
		i := bytes.Index(b[at:], []byte("\r\n"))
		if i < 0 {
			return nil, -1
		}
		return b[at : at+i], at + i + 2
	}
	l, at := line(0)
	if at < 0 {
		return items, 0, nil
	}
	if len(l) == 0 || l[0] != '*' {
		return items, 0, fmt.Errorf("RESP: %q where an array was due", l)
	}
	count, err := strconv.Atoi(string(l[1:]))
	if err != nil || count < 0 {
		return items, 0, fmt.Errorf("RESP: array header %q", l)
	}
	for range count {
		l, next := line(at)
		if next < 0 {
			return items, 0, nil
		}
		switch {
		case len(l) > 0 && l[0] == ':':
			items = append(items, l[1:])
			at = next
		case len(l) > 0 && l[0] == '$':
			size, err := strconv.Atoi(string(l[1:]))
			if err != nil || size < 0 {
				return items, 0, fmt.Errorf("RESP: bulk string header %q", l)
			}
			if next+size+2 > len(b) {
				return items, 0, nil
			}
			if b[next+size] != '\r' || b[next+size+1] != '\n' {
				return items, 0, fmt.Errorf("RESP: bulk string of %d bytes not followed by \\r\\n", size)
			}
			items = append(items, b[next:next+size])
			at = next + size + 2
		default:
			return items, 0, fmt.Errorf("RESP: %q in an array", l)
		}
	}
	return items, at, nil
}
