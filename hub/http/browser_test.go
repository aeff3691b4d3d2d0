package http

import (
	"encoding/json"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/hub"
)

// browserPage subscribes with the browser's own EventSource, keeps a table
// of keys, and posts its state to /results after every event.
const browserPage = `<!doctype html>
<html><body><table id="t"></table><script>
const state = {}, log = [];
const es = new EventSource('/v1/datasets/cache/subscribe');
function post() {
  fetch('/results', {method: 'POST', body: JSON.stringify({state, log, lastEventId: es.lastEventId})});
  document.getElementById('t').innerHTML = Object.keys(state).sort()
    .map(k => '<tr><td>' + k + '</td><td>' + JSON.stringify(state[k]) + '</td></tr>').join('');
}
es.addEventListener('record', e => { const d = JSON.parse(e.data); state[d.key] = d.value; log.push('record ' + d.key); post(); });
es.addEventListener('delete', e => { const d = JSON.parse(e.data); delete state[d.key]; log.push('delete ' + d.key); post(); });
es.addEventListener('snapshot_end', e => { log.push('snapshot_end'); post(); });
es.addEventListener('reset', e => { for (const k in state) delete state[k]; log.push('reset'); post(); });
es.onerror = () => { log.push('error'); };
</script></body></html>`

type pageState struct {
	State       map[string]any `json:"state"`
	Log         []string       `json:"log"`
	LastEventID string         `json:"lastEventId"`
}

// needTool returns the path of a tool the test needs: missing, the test
// is skipped on a developer's machine and fails in CI (CI set), where
// scripts/test-deps.sh installs it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := name + " not found: scripts/test-deps.sh installs the Debian package " + pkg
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// TestBrowserEventSource drives a page in headless Chromium that
// subscribes with EventSource: it shows the snapshot, then a change made
// after it; then the hub is closed and opened again behind the same
// address, and the page, reconnecting with its Last-Event-ID, sees the
// next change without a reset.
func TestBrowserEventSource(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	dir := t.TempDir()
	open := func() *hub.Hub {
		h, err := hub.Open(hub.Options{DataDir: dir, Defaults: hub.DatasetConfig{Fsync: "always"}})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := open()
	if _, err := h.CreateDataset("cache", hub.DatasetConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	put(t, h, "alpha", []byte(`{"v":1}`))
	put(t, h, "beta", []byte(`"two"`))

	var (
		mu      sync.RWMutex // held for writing while the hub restarts
		sub     nethttp.Handler
		results = make(chan pageState, 100)
	)
	mount := func(h *hub.Hub) { sub = Subscriptions(h, SubscribeOptions{Heartbeat: time.Second}) }
	mount(h)
	mux := nethttp.NewServeMux()
	mux.HandleFunc("GET /page", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, browserPage)
	})
	mux.HandleFunc("POST /results", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var s pageState
		if err := json.NewDecoder(r.Body).Decode(&s); err == nil {
			results <- s
		}
	})
	mux.HandleFunc("GET /v1/datasets/{name}/subscribe", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		mu.RLock()
		s := sub
		mu.RUnlock()
		s.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	cmd := startChromium(t, chromium, srv.URL+"/page")
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	// wait returns the first posted state for which ok holds.
	wait := func(what string, ok func(pageState) bool) pageState {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case s := <-results:
				if ok(s) {
					return s
				}
			case <-timeout:
				t.Fatalf("the page never showed %s", what)
			}
		}
	}
	has := func(log []string, entry string) bool {
		for _, e := range log {
			if e == entry {
				return true
			}
		}
		return false
	}
	s := wait("the snapshot", func(s pageState) bool { return has(s.Log, "snapshot_end") })
	if len(s.State) != 2 || s.State["beta"] != "two" {
		t.Fatalf("after the snapshot the page shows %v", s.State)
	}
	put(t, h, "alpha", []byte(`{"v":2}`))
	put(t, h, "beta", nil)
	s = wait("the change", func(s pageState) bool { return has(s.Log, "delete beta") })
	if v, _ := s.State["alpha"].(map[string]any); v["v"] != 2.0 || len(s.State) != 1 {
		t.Fatalf("after the change the page shows %v", s.State)
	}

	// Restart: the hub closes (ending the stream) and opens again.
	mu.Lock()
	h.Close()
	h = open()
	defer h.Close()
	mount(h)
	put(t, h, "gamma", []byte("3"))
	mu.Unlock()
	s = wait("the change after the restart", func(s pageState) bool { return has(s.Log, "record gamma") })
	if has(s.Log, "reset") || len(s.State) != 2 || s.State["gamma"] != 3.0 {
		t.Fatalf("after the restart the page shows %v, log %v (want no reset)", s.State, s.Log)
	}
	snapshots := 0
	for _, e := range s.Log {
		if e == "snapshot_end" {
			snapshots++
		}
	}
	if snapshots != 1 {
		t.Errorf("the page saw %d snapshots, want 1 (the resume must not send a new one): %v", snapshots, s.Log)
	}
}

// TestExamplePageInBrowser loads examples/cache-sync.html in headless
// Chromium against a hub; a script the test adds to the page posts the
// table the page built once it says it is live, and again after a change.
func TestExamplePageInBrowser(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	page, err := os.ReadFile("../../examples/cache-sync.html")
	if err != nil {
		t.Fatal(err)
	}
	const probe = `<script>
let sent = '';
setInterval(() => {
  const s = document.getElementById('status').textContent + ' ' + document.getElementById('table').innerHTML;
  if (s !== sent) { sent = s; fetch('/dom', {method: 'POST', body: s}); }
}, 50);
</script></body>`
	page = []byte(strings.Replace(string(page), "</body>", probe, 1))
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.CreateDataset("cache", hub.DatasetConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	put(t, h, "u1", []byte(`{"name":"Ann"}`))
	put(t, h, "u2", []byte(`{"name":"Bob"}`))
	put(t, h, "u1", []byte(`{"name":"Ann B."}`))
	put(t, h, "u2", nil)
	put(t, h, "u3", []byte(`"Cy"`))
	doms := make(chan string, 100)
	mux := nethttp.NewServeMux()
	mux.HandleFunc("GET /page", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(page)
	})
	mux.HandleFunc("POST /dom", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		doms <- string(b)
	})
	mux.Handle(SubscribePattern, Subscriptions(h, SubscribeOptions{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cmd := startChromium(t, chromium, srv.URL+"/page?dataset=cache&weir="+srv.URL)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	wait := func(want ...string) string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		last := ""
		for {
			select {
			case last = <-doms:
				ok := true
				for _, w := range want {
					ok = ok && strings.Contains(last, w)
				}
				if ok {
					return last
				}
			case <-timeout:
				t.Fatalf("the page never showed %q; last: %s", want, last)
			}
		}
	}
	dom := wait("live ", `<td>u1</td><td>{"name":"Ann B."}</td>`, `<td>u3</td><td>"Cy"</td>`)
	if strings.Contains(dom, "<td>u2</td>") {
		t.Errorf("the deleted key u2 is shown: %s", dom)
	}
	put(t, h, "u3", nil)
	put(t, h, "u4", []byte(`4`))
	dom = wait("live ", `<td>u4</td><td>4</td>`)
	if strings.Contains(dom, "<td>u3</td>") {
		t.Errorf("the deleted key u3 is shown: %s", dom)
	}
}

// startChromium runs headless Chromium on url in a process group of its
// own, killed (children included, which keep writing to the profile) and
// waited for before the test's temporary directories are removed; its
// TMPDIR is in the profile, so that it leaves nothing in the machine's.
func startChromium(t *testing.T, chromium, url string) *exec.Cmd {
	t.Helper()
	profile := t.TempDir()
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+profile, url)
	// Chromium makes its singleton socket's directory
	// (org.chromium.Chromium.*) in TMPDIR and leaves it when killed: in
	// the profile, it goes with it.
	tmp := filepath.Join(profile, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for i := 0; i < 50; i++ { // the group's last writers exit asynchronously
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return cmd
}

// browserWSPage subscribes with the browser's own WebSocket and posts
// what each message said (its type, key, id, and the length of its
// value's JSON) to /results.
const browserWSPage = `<!doctype html>
<html><body><script>
const ws = new WebSocket('ws://' + location.host + '/v1/datasets/cache/subscribe');
ws.onmessage = m => {
  const d = JSON.parse(m.data);
  fetch('/results', {method: 'POST', body: JSON.stringify({type: d.type, key: d.key || '', id: d.id,
    value: d.value === undefined ? '' : JSON.stringify(d.value)})});
};
ws.onclose = e => fetch('/results', {method: 'POST', body: JSON.stringify({type: 'closed ' + e.code})});
</script></body></html>`

// TestBrowserWebSocket: headless Chromium's WebSocket reads the snapshot
// and then live events, which the fan-out framed once for every
// WebSocket subscriber and its shared writers wrote, with payloads of
// each length form (7, 16 and 64 bits) and at their edges, every one
// whole and once (the page reports them by fetch, which may reorder).
func TestBrowserWebSocket(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	h, err := hub.Open(hub.Options{DataDir: t.TempDir(), Defaults: hub.DatasetConfig{Fsync: "never"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.CreateDataset("cache", hub.DatasetConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	put(t, h, "alpha", []byte(`{"v":1}`))
	type msg struct{ Type, Key, ID, Value string }
	results := make(chan msg, 1000)
	mux := nethttp.NewServeMux()
	mux.Handle(SubscribePattern, Subscriptions(h, SubscribeOptions{}))
	mux.HandleFunc("GET /page", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, browserWSPage)
	})
	mux.HandleFunc("POST /results", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var m msg
		if err := json.NewDecoder(r.Body).Decode(&m); err == nil {
			results <- m
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	startChromium(t, chromium, srv.URL+"/page")
	// The page's fetches may arrive out of order: messages are matched
	// by key, and their ids give their order.
	next := func(what string) msg {
		t.Helper()
		select {
		case m := <-results:
			return m
		case <-time.After(60 * time.Second):
			t.Fatalf("the page never reported %s", what)
		}
		return msg{}
	}
	got := map[string]msg{}
	for len(got) < 2 {
		m := next("the snapshot")
		got[m.Type+" "+m.Key] = m
	}
	if got["record alpha"].Value != `{"v":1}` || got["snapshot_end "].ID == "" {
		t.Fatalf("the snapshot: %v", got)
	}
	// Values whose messages are about 100 to 220 bytes long, 65,460 to
	// 65,580, and 200,100 (the JSON around a value is about 100 bytes):
	// every length at the edges of the length forms.
	values := map[string]string{}
	var sizes []int
	for n := range 120 {
		sizes = append(sizes, n, 65460-100+n)
	}
	ds, _ := h.Dataset("cache")
	p, _ := ds.Partition(0)
	for i, n := range append(sizes, 200000) {
		k := "k" + strconv.Itoa(i)
		values[k] = `"` + strings.Repeat("v", n) + `"`
		var b codecs.Builder // no headers: the JSON around a value is short enough
		b.Append(time.Now().UnixMilli(), []byte(k), []byte(values[k]), nil)
		batch, _ := b.Build()
		if _, err := p.Produce(batch, true); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			time.Sleep(10 * time.Millisecond) // caught up now and then: the shared writers write them
		}
	}
	var offsets []int64
	for len(values) > 0 {
		m := next("the live events")
		want, ok := values[m.Key]
		if !ok || m.Type != "record" || m.Value != want {
			t.Fatalf("the page got %s %s with %d bytes of value: want one of %d records", m.Type, m.Key, len(m.Value), len(values))
		}
		delete(values, m.Key)
		off, err := strconv.ParseInt(m.ID[strings.LastIndexAny(m.ID, "-.")+1:], 10, 64)
		if err != nil {
			t.Fatalf("id %q: %v", m.ID, err)
		}
		offsets = append(offsets, off)
	}
	slices.Sort(offsets)
	for i := 1; i < len(offsets); i++ {
		if offsets[i] == offsets[i-1] {
			t.Fatalf("two messages with the id of offset %d", offsets[i])
		}
	}
}
