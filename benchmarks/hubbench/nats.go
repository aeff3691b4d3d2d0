package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	natsModule = "github.com/nats-io/nats-server/v2@latest"
	natsWindow = 16384 // async publishes in flight
)

// benchBinDir is where scripts/bench-peers.sh and this program install
// peer binaries: $XDG_CACHE_HOME/weir-bench/bin, usually ~/.cache/weir-bench/bin.
func benchBinDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache dir for peer binaries: %w", err)
	}
	return filepath.Join(dir, "weir-bench", "bin"), nil
}

// findNats returns the nats-server binary from PATH or the bench cache
// dir, installing it there with go install when it is in neither.
func findNats(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	dir, err := benchBinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("nats-server not found and no go command to install it: run scripts/bench-peers.sh, or pass -skip-nats")
	}
	fmt.Printf("nats-server not found; installing it: GOBIN=%s go install %s\n", dir, natsModule)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", natsModule)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s: %w (needs the Go module proxy; or run scripts/bench-peers.sh, or pass -skip-nats)", natsModule, err)
	}
	return p, nil
}

// natsBench starts a single nats-server with JetStream file storage in the
// work dir and measures async publish, an ordered consumer reading it all
// back, and publish→consume latency at half the publish rate. The server
// stays up for the knee search: it returns the latency step (each step on
// a stream of its own) and a function that stops the server.
func natsBench(ctx context.Context, cfg *config) (res result, step stepFunc, closeFn func(), err error) {
	bin := cfg.natsBin
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return res, nil, nil, fmt.Errorf("%s --version: %w", bin, err)
	}
	res.system = "NATS JetStream " + strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: ")
	port, err := freePort()
	if err != nil {
		return res, nil, nil, err
	}
	dir := filepath.Join(cfg.workdir, "nats")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, nil, nil, err
	}
	srv, err := startProc("nats-server", filepath.Join(cfg.workdir, "nats-server.log"), bin,
		"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir, "-n", "hubbench")
	if err != nil {
		return res, nil, nil, err
	}
	defer func() {
		if err != nil {
			srv.stop()
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := srv.waitTCP(ctx, addr); err != nil {
		return res, nil, nil, err
	}
	nc, err := nats.Connect("nats://"+addr, nats.Name("hubbench"))
	if err != nil {
		return res, nil, nil, fmt.Errorf("connect to nats-server at %s: %w", addr, err)
	}
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()

	pctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("NATS publish took longer than -timeout %s", cfg.timeout))
	defer cancel()
	stream, err := natsStream(pctx, nc, "HUBBENCH", "hubbench.data")
	if err != nil {
		return res, nil, nil, err
	}
	res.produce, err = natsPublish(pctx, cfg, nc, stream)
	if err != nil {
		return res, nil, nil, fmt.Errorf("NATS publish: %w", err)
	}
	fmt.Printf("  produce: %s\n", res.produce)
	cctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("NATS consume took longer than -timeout %s", cfg.timeout))
	defer cancel()
	res.consume, err = natsConsume(cctx, cfg, stream)
	if err != nil {
		return res, nil, nil, fmt.Errorf("NATS consume: %w", err)
	}
	fmt.Printf("  consume: %s\n", res.consume)
	for i := 1; i < cfg.produceRuns; i++ {
		name := fmt.Sprintf("HUBBENCH_PRODUCE%d", i)
		s, err := natsStream(pctx, nc, name, fmt.Sprintf("hubbench.produce%d", i))
		if err != nil {
			return res, nil, nil, err
		}
		r, err := natsPublish(pctx, cfg, nc, s)
		natsDeleteStream(nc, name)
		if err != nil {
			return res, nil, nil, fmt.Errorf("NATS publish (run %d): %w", i+1, err)
		}
		fmt.Printf("  produce: %s\n", r)
		res.produce = res.produce.faster(r)
	}
	if cfg.latencyDuration > 0 {
		lctx, cancel := context.WithTimeoutCause(ctx, cfg.latencyDuration+cfg.timeout, errors.New("NATS latency run took longer than -latency-duration + -timeout"))
		defer cancel()
		res.latency, err = natsLatency(lctx, cfg, nc, srv.cmd.Process.Pid, "HUBBENCH_LATENCY", "hubbench.latency", cfg.latencyRateFor(res.produce), cfg.latencyDuration)
		if err != nil {
			return res, nil, nil, fmt.Errorf("NATS latency: %w", err)
		}
		fmt.Printf("  latency: %s\n", res.latency)
	}
	n := 0
	step = func(ctx context.Context, rate float64) (latency, error) {
		n++
		name := fmt.Sprintf("HUBBENCH_KNEE%d", n)
		defer natsDeleteStream(nc, name)
		return natsLatency(ctx, cfg, nc, srv.cmd.Process.Pid, name, fmt.Sprintf("hubbench.knee%d", n), rate, cfg.kneeStep)
	}
	return res, step, func() { nc.Close(); srv.stop() }, nil
}

// natsDeleteStream deletes a knee step's stream, so that the steps that
// follow run on a server holding no more than the ones before.
func natsDeleteStream(nc *nats.Conn, name string) {
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = js.DeleteStream(ctx, name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hubbench: delete NATS stream %s: %v (it stays on the server)\n", name, err)
	}
}

// natsStream creates a file-backed stream on subject, retrying while
// JetStream is still starting.
func natsStream(ctx context.Context, nc *nats.Conn, name, subject string) (jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Replicas: 1,
		})
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("create JetStream stream %s: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// natsJS returns a JetStream context whose async publish errors go to failed.
func natsJS(nc *nats.Conn, failed *firstError) (jetstream.JetStream, error) {
	return jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(natsWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { failed.set(err) }))
}

// natsWait waits for every async publish to be acknowledged.
func natsWait(ctx context.Context, js jetstream.JetStream, failed *firstError) error {
	select {
	case <-js.PublishAsyncComplete():
		return failed.get()
	case <-ctx.Done():
		return fmt.Errorf("%d publishes not acknowledged: %w", js.PublishAsyncPending(), context.Cause(ctx))
	}
}

func natsPublish(ctx context.Context, cfg *config, nc *nats.Conn, stream jetstream.Stream) (rate, error) {
	var failed firstError
	js, err := natsJS(nc, &failed)
	if err != nil {
		return rate{}, err
	}
	subject := stream.CachedInfo().Config.Subjects[0]
	tmpl := payloadTemplate(cfg.recordSize)
	start := time.Now()
	for i := range cfg.records {
		if i%1024 == 0 && (failed.get() != nil || ctx.Err() != nil) {
			break
		}
		if _, err := js.PublishAsync(subject, newValue(tmpl, uint64(i)), jetstream.WithStallWait(30*time.Second)); err != nil {
			return rate{}, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	if err := natsWait(ctx, js, &failed); err != nil {
		return rate{}, err
	}
	d := time.Since(start)
	info, err := stream.Info(ctx)
	if err != nil {
		return rate{}, fmt.Errorf("stream info: %w", err)
	}
	if int64(info.State.Msgs) != cfg.records {
		return rate{}, fmt.Errorf("stream holds %d messages after %d acknowledged publishes", info.State.Msgs, cfg.records)
	}
	return newRate(cfg.records, cfg.records*int64(cfg.recordSize), d), nil
}

// natsConsume reads the whole stream with an ordered consumer.
func natsConsume(ctx context.Context, cfg *config, stream jetstream.Stream) (rate, error) {
	t := newTally(cfg.records)
	done := make(chan struct{})
	start := time.Now()
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return rate{}, fmt.Errorf("ordered consumer: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		t.add(m.Data(), cfg.recordSize)
		if t.records == cfg.records {
			close(done)
		}
	}, jetstream.PullMaxMessages(8192), jetstream.StopAfter(int(cfg.records)))
	if err != nil {
		return rate{}, fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return rate{}, fmt.Errorf("consumer did not receive all %d messages: %w", cfg.records, context.Cause(ctx))
	}
	d := time.Since(start)
	if err := t.check(cfg.records); err != nil {
		return rate{}, err
	}
	return newRate(t.records, t.bytes, d), nil
}

// natsLatency publishes at recsPerSec to a second stream while an ordered
// consumer measures the time from PublishAsync to the consumer callback.
func natsLatency(ctx context.Context, cfg *config, nc *nats.Conn, serverPID int, name, subject string, recsPerSec float64, dur time.Duration) (latency, error) {
	defer clientGC(cfg.clientMemLimit)()
	stream, err := natsStream(ctx, nc, name, subject)
	if err != nil {
		return latency{}, err
	}
	var failed firstError
	js, err := natsJS(nc, &failed)
	if err != nil {
		return latency{}, err
	}
	probe := newLatencyProbe(cfg.recordSize, serverPID)
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return latency{}, fmt.Errorf("ordered consumer: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { probe.observe(m.Data()) }, jetstream.PullMaxMessages(8192))
	if err != nil {
		return latency{}, fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	send := func(v []byte) error {
		_, err := js.PublishAsync(subject, v, jetstream.WithStallWait(30*time.Second))
		return cmp.Or(err, failed.get())
	}
	flush := func(ctx context.Context) error { return natsWait(ctx, js, &failed) }
	return probe.run(ctx, recsPerSec, dur, send, flush)
}
