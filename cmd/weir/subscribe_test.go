package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestServeSubscriptions: weir serve --http-listen serves the
// subscriptions of a dataset created by a Kafka admin client with
// cleanup.policy=compact; curl reads the snapshot as Server-Sent Events,
// and weir subscribe prints the snapshot and then a change as JSON lines.
func TestServeSubscriptions(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("needs curl")
	}
	p := startServe(t, t.TempDir(), "--http-listen", "127.0.0.1:0", "--fsync", "always")
	httpAddr := httpAddr(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.DefaultProduceTopic("users"))
	defer cl.Close()
	adm := kadm.NewClient(cl)
	res, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "users")
	if err != nil || res.Err != nil {
		t.Fatalf("CreateTopic: %v %v", err, res.Err)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, "users")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := cfgs.On("users", nil); err != nil || !strings.Contains(describe(c.Configs), "cleanup.policy=compact") {
		t.Errorf("described configs %s, %v: want cleanup.policy=compact", describe(c.Configs), err)
	}
	for _, r := range []*kgo.Record{
		{Key: []byte("u1"), Value: []byte(`{"name":"Ann"}`)},
		{Key: []byte("u2"), Value: []byte(`{"name":"Bob"}`)},
		{Key: []byte("u1"), Value: []byte(`{"name":"Ann B."}`)},
	} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// curl: the snapshot as an event stream.
	out, err := exec.CommandContext(ctx, curl, "-sN", "--max-time", "2", "http://"+httpAddr+"/v1/datasets/users/subscribe").Output()
	if len(out) == 0 {
		t.Fatalf("curl: %v", err)
	}
	s := string(out)
	if !strings.Contains(s, "event: record\nid: ") || !strings.Contains(s, `"key":"u1","value":{"name":"Ann B."}`) ||
		!strings.Contains(s, "event: snapshot_end\n") || strings.Contains(s, `"Ann"}`) {
		t.Errorf("curl got:\n%s", s)
	}

	// weir subscribe: JSON lines, then a live change.
	exe, _ := os.Executable()
	sub := exec.CommandContext(ctx, exe, "-test.run=^$")
	sub.Env = append(os.Environ(), mainEnv+"=1", "WEIR_TEST_ARGS="+strings.Join([]string{"subscribe", "users", "--http", httpAddr}, "\x1f"))
	stdout, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sub.Process.Signal(syscall.SIGTERM); sub.Wait() }()
	lines := bufio.NewScanner(stdout)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("weir subscribe ended: %v", lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return m
	}
	var keys []string
	for {
		m := next()
		if m["type"] == "snapshot_end" {
			break
		}
		keys = append(keys, m["key"].(string))
	}
	if strings.Join(keys, ",") != "u2,u1" {
		t.Errorf("snapshot keys %v, want u2, u1 (in offset order)", keys)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("u2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if m := next(); m["type"] != "delete" || m["key"] != "u2" || m["id"] == "" {
		t.Errorf("after deleting u2: %v", m)
	}
}

func describe(cs []kadm.Config) string {
	var b strings.Builder
	for _, c := range cs {
		if c.Value != nil {
			b.WriteString(c.Key + "=" + *c.Value + " ")
		}
	}
	return b.String()
}

// TestRunSubscriptions: weir run with the embedded hub and http.listen
// serves the subscriptions of its datasets as weir serve does, with the
// file's allow_origins: curl reads what a source wrote, as Server-Sent
// Events, from another origin.
func TestRunSubscriptions(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("needs curl")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s}
http: {listen: "127.0.0.1:0", allow_origins: ["http://app.example"]}
datasets: {in: {partitions: 1}}
sources:
  gen:
    generate: {count: 5}
    to: in
`, filepath.Join(dir, "data"))), 0o644)
	addr, logs := startRun(t, file)
	var s string
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, _ := exec.Command(curl, "-sN", "-i", "--max-time", "1", "-H", "Origin: http://app.example",
			"http://"+addr+"/v1/datasets/in/subscribe?from=earliest").Output()
		s = string(out)
		if strings.Count(s, "event: record\n") == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl got:\n%s\nweir run:\n%s", s, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(s, "Content-Type: text/event-stream") || !strings.Contains(s, "Access-Control-Allow-Origin: http://app.example") {
		t.Errorf("curl got:\n%s", s)
	}
}

// TestServeSubscribeSizes: http.subscribe_buffer and subscribe_coalesce
// (or --subscribe-buffer, --subscribe-coalesce) set the shared window and
// the per-subscriber coalescing bound; a size that does not parse is an
// error naming the key.
func TestServeSubscribeSizes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	os.WriteFile(path, []byte("data_dir: "+dir+"/data\nhttp: {listen: 9644, subscribe_buffer: 1MiB, subscribe_coalesce: 2MiB}\n"), 0o644)
	var cfg serveConfig
	if err := loadServeConfig(path, &cfg); err != nil {
		t.Fatal(err)
	}
	o, err := cfg.hubOptions(nil)
	if err != nil || o.SubscribeBuffer != 1<<20 {
		t.Fatalf("hubOptions: %v, SubscribeBuffer %d, want %d", err, o.SubscribeBuffer, 1<<20)
	}
	if _, coalesce, err := cfg.HTTP.subscribeSizes(); err != nil || coalesce != 2<<20 {
		t.Fatalf("coalesce %d, %v: want %d", coalesce, err, 2<<20)
	}
	cfg.HTTP.SubscribeCoalesce = "lots"
	if _, err := cfg.hubOptions(nil); err == nil || !strings.Contains(err.Error(), "http.subscribe_coalesce") {
		t.Fatalf("a bad size gave %v, want an error naming http.subscribe_coalesce", err)
	}
}

// TestServeSubscribeCPU: http.subscribe_procs and subscribe_nice (or
// --subscribe-procs, --subscribe-nice, over the file's) set
// hub.Options.SubscribeProcs and SubscribeNice, 0 meaning the hub's own
// priority; out of range, an error naming the key and the flag; serve
// --help lists both with their defaults.
func TestServeSubscribeCPU(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	for _, c := range []struct {
		yaml        string
		procs, nice int
		err         string
	}{
		{"", 0, 0, ""}, // the hub's defaults
		{"subscribe_procs: 3, subscribe_nice: 5", 3, 5, ""},
		{"subscribe_nice: 0", 0, -1, ""},
		{"subscribe_nice: 19", 0, 19, ""},
		{"subscribe_nice: 20", 0, 0, "http.subscribe_nice (--subscribe-nice) 20"},
		{"subscribe_nice: -1", 0, 0, "http.subscribe_nice (--subscribe-nice) -1"},
		{"subscribe_procs: -2", 0, 0, "http.subscribe_procs (--subscribe-procs) -2"},
	} {
		os.WriteFile(path, []byte("data_dir: "+dir+"/data\nhttp: {"+c.yaml+"}\n"), 0o644)
		var cfg serveConfig
		if err := loadServeConfig(path, &cfg); err != nil {
			t.Fatal(err)
		}
		o, err := cfg.hubOptions(nil)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("http: {%s}: error %v, want one naming %s", c.yaml, err, c.err)
			}
			continue
		}
		if err != nil || o.SubscribeProcs != c.procs || o.SubscribeNice != c.nice {
			t.Errorf("http: {%s}: SubscribeProcs %d, SubscribeNice %d, %v; want %d, %d", c.yaml, o.SubscribeProcs, o.SubscribeNice, err, c.procs, c.nice)
		}
	}
	// The flags go over the file's values: a bad one fails before the
	// hub opens.
	os.WriteFile(path, []byte("data_dir: "+dir+"/data\nhttp: {subscribe_procs: 1, subscribe_nice: 5}\n"), 0o644)
	for flag, want := range map[string]string{"--subscribe-nice=25": "(--subscribe-nice) 25", "--subscribe-procs=-1": "(--subscribe-procs) -1"} {
		if _, err := run(t, "serve", "--config", path, "--listen", "127.0.0.1:0", flag); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("serve %s: %v, want an error with %q", flag, err, want)
		}
	}
	help, err := run(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--subscribe-procs int", "(default 0: all but one, at least 1)", "--subscribe-nice int", "(default 10)"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help has no %q:\n%s", want, help)
		}
	}
}

// TestServeSlowSubscriberResumes: with a small window and coalescing bound
// (--subscribe-buffer, --subscribe-coalesce), an SSE client that stops
// reading while 20 MB of distinct keys are produced gets a resume event
// and the end of its stream, never a silent gap; reconnecting with that
// event's id (Last-Event-ID) goes on from there without a reset.
func TestServeSlowSubscriberResumes(t *testing.T) {
	p := startServe(t, t.TempDir(), "--http-listen", "127.0.0.1:0", "--subscribe-buffer", "64KiB", "--subscribe-coalesce", "32KiB")
	slowSubscriberResumes(t, p.addr, httpAddr(t, p), true)
}

// TestRunSubscribeSizes: weir run takes the sizes of the subscriptions as
// serve does, from the file (http.subscribe_buffer) and the flags
// (--subscribe-coalesce): with small ones, a subscriber that stops
// reading gets a resume event, and resumes with its id without a reset.
// A size that does not parse is refused, named.
func TestRunSubscribeSizes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`
hub: {data_dir: %s, listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0", subscribe_buffer: 64KiB}
datasets: {events: {partitions: 1}, other: {partitions: 1}}
sources:
  gen:
    generate: {count: 1}
    to: other
`, filepath.Join(dir, "data"))), 0o644)
	out, err := weirCmd(t, nil, "run", file, "--subscribe-coalesce", "lots").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--subscribe-coalesce "lots"`) {
		t.Fatalf("weir run --subscribe-coalesce lots: %v\n%s", err, out)
	}
	addr, logs, _ := startRunCmd(t, file, "--subscribe-coalesce", "32KiB")
	slowSubscriberResumes(t, runKafkaAddr(t, logs), addr, false)
}

// TestRunSubscribeCPU: weir run takes http.subscribe_procs and
// subscribe_nice from the file into the embedded hub's options, as serve
// does; --subscribe-procs and --subscribe-nice go over them; values out
// of range are refused, named with their place in the file or the flag.
func TestRunSubscribeCPU(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	for _, c := range []struct {
		yaml        string
		flags       []string
		procs, nice int
		err         string
	}{
		{"", nil, 0, 0, ""}, // the hub's defaults
		{"subscribe_procs: 3, subscribe_nice: 5", nil, 3, 5, ""},
		{"subscribe_nice: 0", nil, 0, -1, ""},
		{"subscribe_procs: 3, subscribe_nice: 5", []string{"--subscribe-procs=1", "--subscribe-nice=0"}, 1, -1, ""},
		{"subscribe_nice: 20", nil, 0, 0, "p.yaml:2:24: subscribe_nice: must be from 0 to 19, not 20"},
		{"subscribe_procs: -1", nil, 0, 0, "p.yaml:2:25: subscribe_procs: must be at least 0, not -1"},
		{"", []string{"--subscribe-nice=25"}, 0, 0, "(--subscribe-nice) 25"},
		{"", []string{"--subscribe-procs=-2"}, 0, 0, "(--subscribe-procs) -2"},
	} {
		os.WriteFile(file, []byte(fmt.Sprintf("hub: {data_dir: %s}\nhttp: {%s}\ndatasets: {events: {partitions: 1}}\nsources: {gen: {generate: {count: 1}, to: events}}\n", filepath.Join(dir, "data"), c.yaml)), 0o644)
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		var procs, nice int
		addSubscribeCPUFlags(fs, &procs, &nice)
		if err := fs.Parse(c.flags); err != nil {
			t.Fatal(err)
		}
		cfg, err := load(file)
		if err == nil {
			err = subscribeCPUFlags(fs, cfg, procs, nice)
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("http: {%s} %v: error %v, want one naming %s", c.yaml, c.flags, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("http: {%s} %v: %v", c.yaml, c.flags, err)
		}
		o, err := cfg.HubOptions(nil)
		if err != nil || o.SubscribeProcs != c.procs || o.SubscribeNice != c.nice {
			t.Errorf("http: {%s} %v: SubscribeProcs %d, SubscribeNice %d, %v; want %d, %d", c.yaml, c.flags, o.SubscribeProcs, o.SubscribeNice, err, c.procs, c.nice)
		}
	}
}

// slowSubscriberResumes checks, against a weir serving Kafka clients on
// kafkaAddr and subscriptions on httpAddr with a subscription window of
// 64KiB and a coalescing bound of 32KiB, that an SSE client of the
// dataset events (created first if create) that stops reading gets a
// resume event, and resumes with its id without a reset.
func slowSubscriberResumes(t *testing.T, kafkaAddr, httpAddr string, create bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := mustClient(t, kafkaAddr, kgo.DefaultProduceTopic("events"), kgo.ProducerBatchMaxBytes(1<<20))
	defer cl.Close()
	if create {
		if res, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "events"); err != nil || res.Err != nil {
			t.Fatalf("CreateTopic: %v %v", err, res.Err)
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("first"), Value: []byte(`{"n":-1}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/v1/datasets/events/subscribe?from=earliest", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	// One event read, then the client stops reading while the log grows
	// far past the window, the coalescing bound and the socket buffers.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("before the first event: %v", err)
		}
		if strings.HasPrefix(line, "event: ") {
			break
		}
	}
	pad := strings.Repeat("x", 1000)
	const n = 20000
	for i := 0; i < n; i += 1000 {
		var recs []*kgo.Record
		for j := i; j < i+1000; j++ {
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", j), Value: fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, j, pad)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var resumeID string
	events := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break // the server ended the stream
		}
		if strings.HasPrefix(line, "event: ") {
			events++
			if line == "event: resume\n" {
				idLine, _ := br.ReadString('\n')
				resumeID = strings.TrimSpace(strings.TrimPrefix(idLine, "id: "))
			}
		}
	}
	if resumeID == "" {
		t.Fatalf("a subscriber that stopped reading got %d events and no resume event", events)
	}
	t.Logf("%d events before the resume event", events)
	// Resuming with the token: records follow, no reset.
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/v1/datasets/events/subscribe", nil)
	req.Header.Set("Last-Event-ID", resumeID)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	br2 := bufio.NewReader(resp2.Body)
	for {
		line, err := br2.ReadString('\n')
		if err != nil {
			t.Fatalf("resumed stream ended before a record: %v", err)
		}
		if line == "event: reset\n" {
			t.Fatal("resuming with the resume event's id gave a reset")
		}
		if line == "event: record\n" {
			break
		}
	}
}
