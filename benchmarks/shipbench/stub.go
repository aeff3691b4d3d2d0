package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
)

// The stub is a minimal Elasticsearch that answers every document of a
// bulk request created, without storing it: against it, the client's own
// cost shows, where against a real server the server's dominates. It runs
// in a process of its own, so that its CPU time is nobody's.

// stubServer is the parent's handle on a running stub.
type stubServer struct {
	URL string
	cmd *exec.Cmd
}

func startStub() *stubServer {
	self, err := os.Executable()
	check(err)
	cmd := exec.Command(self, "child", "stub")
	out, err := cmd.StdoutPipe()
	check(err)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	check(err)
	return &stubServer{URL: strings.TrimSpace(line), cmd: cmd}
}

func (s *stubServer) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// count is how many documents the stub answered so far.
func (s *stubServer) count() int64 {
	resp, err := http.Get(s.URL + "/_stub/count")
	check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	check(err)
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	check(err)
	return n
}

// runStub serves until killed; it prints its URL first.
func runStub() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	fmt.Printf("http://%s\n", l.Addr())
	var docs atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"stub","cluster_name":"shipbench","version":{"number":"8.11.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
	})
	mux.HandleFunc("GET /_stub/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, docs.Load())
	})
	item := []byte(`{"index":{"status":201}}`)
	bulk := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Every action of the benchmark is index or create, followed by
		// its source line.
		n := 0
		for line := range bytes.Lines(body) {
			if bytes.HasPrefix(line, []byte(`{"index"`)) || bytes.HasPrefix(line, []byte(`{"create"`)) {
				n++
			}
		}
		docs.Add(int64(n))
		out := make([]byte, 0, 32+n*(len(item)+1))
		out = append(out, `{"took":1,"errors":false,"items":[`...)
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, item...)
		}
		out = append(out, "]}"...)
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}
	mux.HandleFunc("POST /_bulk", bulk)
	mux.HandleFunc("POST /{index}/_bulk", bulk)
	check(http.Serve(l, mux))
}
