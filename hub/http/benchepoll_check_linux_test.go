package http

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/weirhub/weir/internal/redistest"
)

// TestEpollSSEReader: the epoll subscribers dispatch what EventSource
// (and the goroutine subscribers' reader, TestSSEReader) dispatches of a
// stream that comes in pieces of 1 to 16 bytes, a pause after each, so
// that their sockets run dry in the middle of lines and events.
func TestEpollSSEReader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		rest := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + sseReaderStream
		rng := rand.New(rand.NewPCG(1, 2))
		for len(rest) > 0 {
			n := min(1+rng.IntN(16), len(rest))
			if _, err := c.Write([]byte(rest[:n])); err != nil {
				return
			}
			rest = rest[n:]
			time.Sleep(200 * time.Microsecond)
		}
		// Then it ends: a subscriber that has not dispatched every
		// event by then fails with EOF.
	}()
	tcp := ln.Addr().(*net.TCPAddr)
	sa := &unix.SockaddrInet4{Port: tcp.Port}
	copy(sa.Addr[:], tcp.IP.To4())
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	var got []sseReaderEvent
	var sub *ssePollSub
	n := 0
	err = p.connect(*sa, func(fd int) (pollSub, error) {
		r, err := sseHandshake(fd, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err != nil {
			return nil, err
		}
		sub = &ssePollSub{r: r, n: &n, done: func() {}, on: func(event, data, id []byte) (bool, error) {
			got = append(got, sseReaderEvent{string(event), string(data), string(id)})
			n++
			return len(got) == len(sseReaderWant), nil
		}}
		return sub, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	p.run(&wg, errs)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !slices.Equal(got, sseReaderWant) {
		t.Errorf("got %q, want %q", got, sseReaderWant)
	}
	if sub.r.reads < 10 {
		t.Errorf("%d reads: the stream did not come in pieces", sub.r.reads)
	}
}

// floorEvents publishes events of BenchmarkBroadcast numbered seqs (the
// n of their value), then the end, to the subscribers of a floor server;
// tokens are the offsets, 1 on; ids repeat the token of the event before.
func floorEvents(fs *floorServer, seqs []int, repeatID bool) {
	var f benchFramer
	var vals [][]byte
	for _, n := range seqs {
		vals = append(vals, fmt.Appendf(nil, `{"t":%d,"n":%d}`, time.Now().UnixNano(), n))
	}
	if repeatID {
		f.offset = 0
		fs.publish(f.frames(vals[:1]))
		f.offset = 0
		fs.publish(f.frames(vals[1:]))
	} else {
		fs.publish(f.frames(vals))
	}
	fs.publish(f.frames([][]byte{[]byte(benchEnd)}))
}

// TestBenchSubscribersGap: both kinds of SSE subscribers take every
// event of a stream without a gap, and report a value missing from the
// sequence and an id that does not grow.
func TestBenchSubscribersGap(t *testing.T) {
	for _, how := range []string{"epoll", "goroutines"} {
		for _, c := range []struct {
			name     string
			seqs     []int
			repeatID bool
			want     string // in every subscriber's error; "" none
		}{
			{"complete", []int{0, 1, 2, 3}, false, ""},
			{"gap", []int{0, 1, 3}, false, "event 2 has sequence number 3: out of order"},
			{"id", []int{0, 1, 2}, true, `after offset 1`},
		} {
			t.Run(how+"/"+c.name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				fs := newFloorServer(ln, 2)
				defer fs.close()
				const subs = 5
				var ev benchEvents
				var wg sync.WaitGroup
				errs := make(chan error, subs)
				if err := runSubscribers("sse", how, "http://"+ln.Addr().String()+"/x", subs, 1, 10, &ev, &wg, errs); err != nil {
					t.Fatal(err)
				}
				floorEvents(fs, c.seqs, c.repeatID)
				wg.Wait()
				close(errs)
				checkSubscriberErrors(t, errs, subs, c.want)
				if c.want == "" {
					if got := ev.received.Load(); got != int64(subs*len(c.seqs)) {
						t.Errorf("received %d events, want %d", got, subs*len(c.seqs))
					}
					if len(ev.delays) != subs*len(c.seqs) {
						t.Errorf("%d delays, want %d", len(ev.delays), subs*len(c.seqs))
					}
				}
			})
		}
	}
}

func checkSubscriberErrors(t *testing.T, errs <-chan error, subs int, want string) {
	t.Helper()
	n := 0
	for err := range errs {
		n++
		if want == "" || !strings.Contains(err.Error(), want) {
			t.Errorf("subscriber: %v; want %q", err, want)
		}
	}
	if want != "" && n != subs {
		t.Errorf("%d subscribers failed, want %d", n, subs)
	}
}

// TestBenchRedisSubscribersGap: both kinds of Redis subscribers take
// every message of a channel, and report one missing.
func TestBenchRedisSubscribersGap(t *testing.T) {
	url := redistest.Start(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	for _, how := range []string{"epoll", "goroutines"} {
		for _, c := range []struct {
			name string
			seqs []int
			want string
		}{
			{"complete", []int{0, 1, 2, 3}, ""},
			{"gap", []int{0, 2}, "event 1 has sequence number 2: out of order"},
		} {
			t.Run(how+"/"+c.name, func(t *testing.T) {
				const subs = 5
				var ev benchEvents
				var wg sync.WaitGroup
				errs := make(chan error, subs)
				if err := runSubscribers("redis", how, url, subs, 1, 10, &ev, &wg, errs); err != nil {
					t.Fatal(err)
				}
				pipe := rdb.Pipeline()
				for _, n := range c.seqs {
					// Big enough that some reads end inside a message.
					v := fmt.Sprintf(`{"t":%d,"n":%d}%s`, time.Now().UnixNano(), n, strings.Repeat(" ", 40000))
					pipe.Publish(ctx, "bench", v)
				}
				pipe.Publish(ctx, "bench", benchEnd)
				if _, err := pipe.Exec(ctx); err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				close(errs)
				checkSubscriberErrors(t, errs, subs, c.want)
				if c.want == "" && ev.received.Load() != int64(subs*len(c.seqs)) {
					t.Errorf("received %d events, want %d", ev.received.Load(), subs*len(c.seqs))
				}
			})
		}
	}
}

// TestParseRESPArray: a push is taken whole or not at all, wherever the
// bytes so far end.
func TestParseRESPArray(t *testing.T) {
	msg := "*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$4\r\nab\r\n\r\n"
	all := msg + "*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n"
	for i := range len(msg) {
		if items, k, err := parseRESPArray([]byte(all[:i]), nil); k != 0 || err != nil {
			t.Errorf("parseRESPArray(%q) = %q, %d, %v, want 0, nil", all[:i], items, k, err)
		}
	}
	items, k, err := parseRESPArray([]byte(all), nil)
	if err != nil || k != len(msg) || !slices.Equal(strings.Fields(fmt.Sprintf("%q", items)), []string{`["message"`, `"bench"`, `"ab\r\n"]`}) {
		t.Errorf("parseRESPArray(%q) = %q, %d, %v", all, items, k, err)
	}
	items, k, err = parseRESPArray([]byte(all[len(msg):]), nil)
	if err != nil || k != len(all)-len(msg) || len(items) != 3 || string(items[2]) != "1" {
		t.Errorf("parseRESPArray(subscribe) = %q, %d, %v", items, k, err)
	}
	for _, bad := range []string{"-ERR x\r\n", "*1\r\n+OK\r\n", "*1\r\n$2\r\nabcd\r\n", "*x\r\n"} {
		if _, _, err := parseRESPArray([]byte(bad), nil); err == nil {
			t.Errorf("parseRESPArray(%q): no error", bad)
		}
	}
}
