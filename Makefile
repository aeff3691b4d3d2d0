# Weir build. `make run` and `make test` are the two commands a new machine
# needs; both set up what they use by themselves.

GO      ?= go
BIN     := bin/weir
GOFLAGS ?=
export GOFLAGS

.PHONY: build run test test-deps bench bench-hub bench-hub-floor bench-metrics bench-partitions bench-broadcast bench-pipeline bench-ship bench-analytics fuzz lint clean

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/weir

# The main job on the embedded default: examples/quickstart.yaml generates
# 2M web-log records into a dataset of the hub in ./data; a pipeline parses,
# filters, enriches and routes them into zstd archives in ./data/archive,
# with a live throughput line, and exits once everything is archived.
run: build
	./$(BIN) run examples/quickstart.yaml --until-drained

# Installs what the tests need (Debian packages, Go modules), then runs
# every test: unit, integration, crash (kill -9) and fuzz seeds.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -timeout 10m ./codecs ./log ./hub ./pipelines ./sources ./sinks

test-deps:
	./scripts/test-deps.sh

# Go benchmarks, then the log against dd conv=fdatasync in the same run,
# then durable acknowledgement (fsync always, group commit) against dd and
# against its floor (write-then-fdatasync of a round, nothing written
# during a sync), in the steady state of a log under retention (recycled
# segment files) and of a growing log.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s ./codecs ./log
	cd benchmarks && $(GO) run ./logbench -size 1GiB -dir ../data/logbench
	cd benchmarks && $(GO) run ./logbench -always -appenders 8,64 -size 256MiB -runs 4 -segment 16MiB -retention 32MiB -warmup 64MiB -recycle on,off -floor -dir ../data/logbench

# The hub over loopback (franz-go) against NATS JetStream and Redis Streams
# on this machine, in one run, with ratios. Installs the peers if missing.
BENCH_HUB_ADDR ?= 127.0.0.1:19092
# A second weir serve with --fsync always: acks=all produce with durable acknowledgement.
BENCH_HUB_DURABLE_ADDR ?= 127.0.0.1:19093
# HUB_FLAGS="-latency-rate 65000" measures latency at a fixed rate instead of half the maximum.
HUB_FLAGS ?=
bench-hub: build
	./scripts/bench-peers.sh
	rm -rf data/bench-hub data/bench-hub-durable && mkdir -p data
	./$(BIN) serve --data-dir data/bench-hub --listen $(BENCH_HUB_ADDR) --log-level warn & pid=$$!; \
	./$(BIN) serve --data-dir data/bench-hub-durable --listen $(BENCH_HUB_DURABLE_ADDR) --fsync always --log-level warn & dpid=$$!; \
	trap 'kill $$pid $$dpid 2>/dev/null; wait $$pid $$dpid 2>/dev/null; rm -rf data/bench-hub data/bench-hub-durable' EXIT INT TERM; \
	cd benchmarks && $(GO) run ./hubbench -brokers $(BENCH_HUB_ADDR) -broker-pid $$pid -durable-brokers $(BENCH_HUB_DURABLE_ADDR) -workdir ../data -out ../data/bench-hub.md $(HUB_FLAGS)

# The latency knee's floor: weir serve and benchmarks/floorbroker (the least a
# Kafka-protocol broker does for these clients: records in memory) in one
# hubbench run, taking turns at each rate; the floor's knee is reported against
# weir's maximum produce rate too: what any broker could reach on this machine.
BENCH_HUB_FLOOR_ADDR ?= 127.0.0.1:19094
bench-hub-floor: build
	rm -rf data/bench-hub data/floorbroker && mkdir -p data
	cd benchmarks && $(GO) build -o ../data/floorbroker ./floorbroker
	./$(BIN) serve --data-dir data/bench-hub --listen $(BENCH_HUB_ADDR) --log-level warn & pid=$$!; \
	./data/floorbroker -listen $(BENCH_HUB_FLOOR_ADDR) & fpid=$$!; \
	trap 'kill $$pid $$fpid 2>/dev/null; wait $$pid $$fpid 2>/dev/null; rm -rf data/bench-hub data/floorbroker' EXIT INT TERM; \
	cd benchmarks && $(GO) run ./hubbench -brokers $(BENCH_HUB_ADDR) -broker-pid $$pid -floor-brokers $(BENCH_HUB_FLOOR_ADDR) -floor-pid $$fpid \
		-skip-nats -skip-redis -workdir ../data -out ../data/bench-hub-floor.md $(HUB_FLAGS)

# What metrics cost the hub: two weir serve, one scraped every second, fed
# the same records in alternating rounds; fails below 0.97x.
METRICS_FLAGS ?=
bench-metrics: build
	cd benchmarks && $(GO) run ./metricsbench -weir ../$(BIN) $(METRICS_FLAGS)

# Pipelines against a plain Go encoding/json program doing the same job
# (parse, drop debug, add a field, write NDJSON), in one run; with
# BACKLOG=10GiB also the pipeline's peak RSS over a backlog that size.
BACKLOG ?=
# What partitions cost in `weir serve`: create time, idle RSS, open files and disk
# for 1,000 and 10,000 partitions, restart time, and produce throughput over 1,000
# partitions against one.
bench-partitions: build
	mkdir -p data
	cd benchmarks && $(GO) run ./partbench -weir ../$(BIN) -workdir ../data -counts 1000,10000

# Subscriptions: SSE subscribers on one dataset (and Redis pub/sub with as
# many subscribers, the peer, in the same run) against the producer alone
# (produced/s, delivered/s in total, p99 produce-to-read delay).
bench-broadcast:
	$(GO) test -run '^$$' -bench BenchmarkBroadcast -benchtime 100000x -timeout 30m ./hub/http

bench-pipeline:
	cd benchmarks && $(GO) run ./pipelinebench -size 512MiB -workdir ../data/bench-pipeline $(if $(BACKLOG),-backlog $(BACKLOG)) $(if $(COMPRESSION),-compression $(COMPRESSION))

# The log-shipping agent, in one run: tail -> elasticsearch sink against a
# bare esutil.BulkIndexer loop sending the same JSON lines to the same
# server (a stub that answers without storing, then a real ZincSearch,
# built and cached on first use), and tail -> zstd file sink
# against a plain Go line copy and cat | zstd. Sizes: SHIP_DOCS documents
# to ZincSearch (it indexes about 1,000 a second), SHIP_STUB_DOCS to the
# stub, SHIP_FILE_SIZE of lines for the file sink, SHIP_ROUNDS rounds.
SHIP_DOCS      ?= 50000
SHIP_STUB_DOCS ?= 500000
SHIP_FILE_SIZE ?= 256MiB
SHIP_ROUNDS    ?= 2
bench-ship:
	cd benchmarks && $(GO) run ./shipbench -docs $(SHIP_DOCS) -stub-docs $(SHIP_STUB_DOCS) -file-size $(SHIP_FILE_SIZE) \
		-rounds $(SHIP_ROUNDS) -workdir ../data/bench-ship

# NDJSON events -> Parquet through `weir run` against DuckDB's COPY of the
# same file to Parquet, ANALYTICS_RUNS times alternating, medians: MB per
# CPU-second, peak RSS, output size. ANALYTICS_BASELINE=/path/to/weir runs
# another build in the same alternation (A/B).
ANALYTICS_MIB ?= 1024
ANALYTICS_RUNS ?= 3
ANALYTICS_BASELINE ?=
bench-analytics: build
	$(GO) test -count=1 -run '^TestQuery$$' ./internal/ducktest >/dev/null
	cd benchmarks && $(GO) run ./analyticsbench -weir ../$(BIN) -mib $(ANALYTICS_MIB) -runs $(ANALYTICS_RUNS) -workdir ../data/bench-analytics -out ../data/bench-analytics.md \
		$(if $(ANALYTICS_BASELINE),-baseline $(abspath $(ANALYTICS_BASELINE)))

# Short, bounded fuzzing of every decoder of untrusted bytes.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRecordIter$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzRecordBodies$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzArrowAppend$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzVarint$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzLogfmt$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzSyslog$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzSyslogFrames$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./hub/kafka
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./pipelines

# staticcheck at a pinned version, run through go run (nothing to install).
STATICCHECK ?= v0.8.2

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd benchmarks && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...
	cd benchmarks && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

clean:
	rm -rf bin data/bench-log data/logbench data/bench-hub data/bench-hub-durable data/bench-hub.md data/bench-pipeline data/bench-ship
