package http

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSubscribeSSEDirect: over HTTP/1 an SSE subscription takes its
// connection over and writes a response delimited by the connection's
// close (no chunked encoding), which Go's client and curl read; caught
// up, its events come from the fan-out's shared writers: a subscriber
// that reads keeps getting them past WriteTimeout, one that stops reading
// holds up neither the others nor the producer and is cut after
// WriteTimeout, and resuming with the last id it got delivers the rest
// with nothing lost or repeated (a loaded machine may cut a resumed
// reader too: each resume goes on from its own last id).
func TestSubscribeSSEDirect(t *testing.T) {
	h, srv := subHub(t, SubscribeOptions{WriteTimeout: 300 * time.Millisecond, AllowOrigins: []string{"http://app.example"}})
	url := srv.URL + "/v1/datasets/cache/subscribe?from=latest"
	// The response as it is on the wire.
	slow, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /v1/datasets/cache/subscribe?from=latest HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n\r\n")
	br := bufio.NewReaderSize(slow, 64<<10)
	var head []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the response's head: %v (%q)", err, head)
		}
		if line == "\r\n" {
			break
		}
		head = append(head, strings.TrimSuffix(line, "\r\n"))
	}
	for _, want := range []string{"HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Connection: close",
		"Cache-Control: no-cache", "Access-Control-Allow-Origin: http://app.example"} {
		if !containsLine(head, want) {
			t.Errorf("response head %q: no %q", head, want)
		}
	}
	for _, l := range head {
		if strings.HasPrefix(strings.ToLower(l), "transfer-encoding") || strings.HasPrefix(strings.ToLower(l), "content-length") {
			t.Errorf("response head has %q: the body ends with the connection", l)
		}
	}
	fast := subscribe(t, url, "")
	// A subscriber that reads gets every event, also once the write
	// deadline it had when it parked has passed.
	for i := range 16 {
		put(t, h, "k"+strconv.Itoa(i), []byte(strconv.Itoa(i)))
		time.Sleep(40 * time.Millisecond)
	}
	for i := range 16 {
		expect(t, fast.next(t, false), "record", "k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	// The slow one stops reading while 19 MiB are written.
	big := []byte(`"` + strings.Repeat("v", 16<<10) + `"`)
	const total = 1200
	for i := range total {
		put(t, h, "b"+strconv.Itoa(i), big)
	}
	for i := range total {
		e := fast.next(t, false)
		if e.typ != "record" || !strings.Contains(e.data, `"key":"b`+strconv.Itoa(i)+`"`) {
			t.Fatalf("fast subscriber: event %d is %s %.60s", i, e.typ, e.data)
		}
	}
	// It got the first 16 and some of the rest, then the connection
	// was closed.
	time.Sleep(time.Second)
	var ids []string
	last := ""
	c := newSSEReader(br)
	for {
		_, data, err := c.next()
		if err != nil {
			break
		}
		last = string(c.lastID)
		if !strings.Contains(string(data), `"key":"k`) {
			ids = append(ids, last)
		}
	}
	if len(ids) >= total {
		t.Fatalf("the slow subscriber got all %d events: it was not cut", len(ids))
	}
	got := len(ids)
	t.Logf("the slow subscriber got %d events of %d, resuming after %s", got, total, last)
	for i, attempt := got, 0; i < total; attempt++ {
		if attempt == 20 {
			t.Fatalf("%d of %d events after 20 resumes", i, total)
		}
		r := subscribe(t, url, last)
		for e := range r.events {
			if e.typ == ":" {
				continue
			}
			if e.typ != "record" || !strings.Contains(e.data, `"key":"b`+strconv.Itoa(i)+`"`) {
				t.Fatalf("resumed after %d events: event %d is %s %.60s", got, i, e.typ, e.data)
			}
			last = e.id
			if i++; i == total {
				break
			}
		}
		r.close()
	}
	// curl reads the stream.
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("needs curl")
	}
	cmd := exec.Command(curl, "-sN", "--max-time", "3", url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	cr := bufio.NewReader(out)
	if l, err := cr.ReadString('\n'); l != "retry: 1000\n" {
		t.Fatalf("curl read %q (%v)", l, err)
	}
	put(t, h, "c", []byte(`"curl"`))
	var lines []string
	for len(lines) < 3 {
		l, err := cr.ReadString('\n')
		if err != nil {
			t.Fatalf("curl: %v after %q", err, lines)
		}
		if l = strings.TrimSuffix(l, "\n"); l != "" {
			lines = append(lines, l)
		}
	}
	if lines[0] != "event: record" || !strings.HasPrefix(lines[1], "id: ") || !strings.Contains(lines[2], `"key":"c","value":"curl"`) {
		t.Errorf("curl read %q", lines)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.EqualFold(l, want) {
			return true
		}
	}
	return false
}
