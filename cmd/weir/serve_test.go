package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const mainEnv = "WEIR_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	// Re-executed by tests that need a real `weir` process.
	if os.Getenv(mainEnv) == "1" {
		os.Args = append([]string{"weir"}, strings.Split(os.Getenv("WEIR_TEST_ARGS"), "\x1f")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// weirProcess is a `weir` subprocess.
type weirProcess struct {
	cmd  *exec.Cmd
	addr string
	logs *strings.Builder
	mu   sync.Mutex
}

var servingRE = regexp.MustCompile(`"weir: hub serving" listen=(\S+)`)

// startServe runs `weir serve` on a free loopback port and waits until it
// serves.
func startServe(t *testing.T, dataDir string, extra ...string) *weirProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "info"}, extra...)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), mainEnv+"=1", "WEIR_TEST_ARGS="+strings.Join(args, "\x1f"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &weirProcess{cmd: cmd, logs: &strings.Builder{}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case p.addr = <-addr:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("weir serve did not start: %s", p.output())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

func (p *weirProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *weirProcess) kill9(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// TestServeGracefulShutdown: SIGTERM stops the server cleanly and the
// data is there on the next start.
func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, "--fsync", "always")
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.addr), kgo.DefaultProduceTopic("graceful"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("kept")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("weir serve exited with %v after SIGTERM:\n%s", err, p.output())
	}
	if !strings.Contains(p.output(), "weir: stopped") {
		t.Fatalf("no clean stop in the log:\n%s", p.output())
	}
	p = startServe(t, dir)
	cl, _ = kgo.NewClient(kgo.SeedBrokers(p.addr), kgo.ConsumeTopics("graceful"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	if fs.NumRecords() != 1 || string(fs.Records()[0].Value) != "kept" {
		t.Fatalf("after restart: %d records, errors %v", fs.NumRecords(), fs.Errors())
	}
}

// TestServeCrashKeepsAcknowledgedData kills `weir serve` with SIGKILL
// while a producer writes with acks=all to datasets with fsync always and
// a group commits offsets, restarts it, and checks that every acknowledged
// record, every acknowledged commit and every dataset survived.
// WEIR_SERVE_CRASHES sets the number of kills (default 6).
func TestServeCrashKeepsAcknowledgedData(t *testing.T) {
	kills := 6
	if s := os.Getenv("WEIR_SERVE_CRASHES"); s != "" {
		fmt.Sscan(s, &kills)
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	type ack struct {
		partition int32
		offset    int64
	}
	acked := map[string]ack{} // value -> where it was acknowledged
	committed := map[int32]int64{}
	topics := []string{}
	var seq int
	for k := range kills {
		p := startServe(t, dir, "--fsync", "always")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		adm := kadm.NewClient(mustClient(t, p.addr))
		topic := fmt.Sprintf("crash-%d", k)
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
			t.Fatalf("kill %d: create topic: %v", k, err)
		}
		topics = append(topics, topic)
		if k == 0 {
			if _, err := adm.CreateTopic(ctx, 3, 1, nil, "crash"); err != nil {
				t.Fatal(err)
			}
		}
		prod := mustClient(t, p.addr, kgo.DefaultProduceTopic("crash"), kgo.AllowAutoTopicCreation(),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond), kgo.RecordRetries(0))
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // producer
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				seq++
				v := fmt.Sprintf("k%d-%d", k, seq)
				prod.Produce(ctx, &kgo.Record{Key: []byte(v), Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err == nil {
						mu.Lock()
						acked[v] = ack{r.Partition, r.Offset}
						mu.Unlock()
					}
				})
				time.Sleep(50 * time.Microsecond)
			}
		}()
		wg.Add(1)
		go func() { // a committer of group offsets
			defer wg.Done()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				offs := kadm.Offsets{}
				offs.AddOffset("crash", int32(i%3), i*10+int64(k)*100000, -1)
				resp, err := adm.CommitOffsets(ctx, "crash-group", offs)
				if err == nil && resp.Ok() {
					mu.Lock()
					committed[int32(i%3)] = i*10 + int64(k)*100000
					mu.Unlock()
				}
			}
		}()
		time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
		p.kill9(t)
		close(stop)
		wg.Wait()
		prod.Close()
		cancel()
	}

	p := startServe(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(mustClient(t, p.addr))
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range append(topics, "crash") {
		if !listed.Has(topic) {
			t.Fatalf("dataset %s lost after kill -9", topic)
		}
	}
	cons := mustClient(t, p.addr, kgo.ConsumeTopics("crash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ends, _ := adm.ListEndOffsets(ctx, "crash")
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	found := map[string]ack{}
	for int64(len(found)) < total && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { found[string(r.Value)] = ack{r.Partition, r.Offset} })
	}
	if len(acked) < 100 || len(committed) != 3 {
		t.Fatalf("only %d records and %d partitions' commits acknowledged across %d kills; the test did not exercise anything", len(acked), len(committed), kills)
	}
	for v, a := range acked {
		f, ok := found[v]
		if !ok {
			t.Fatalf("acknowledged record %s (partition %d offset %d) lost after kill -9", v, a.partition, a.offset)
		}
		if f != a {
			t.Fatalf("record %s acknowledged at %v, found at %v", v, a, f)
		}
	}
	got, err := adm.FetchOffsets(ctx, "crash-group")
	if err != nil {
		t.Fatal(err)
	}
	for part, off := range committed {
		o, ok := got.Lookup("crash", part)
		if !ok || o.At < off {
			t.Fatalf("committed offset of partition %d: %v, acknowledged %d", part, o.At, off)
		}
	}
	t.Logf("%d kills: %d acknowledged records and %d committed partitions intact, %d records stored", kills, len(acked), len(committed), total)
}

func mustClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
