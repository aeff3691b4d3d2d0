# Weir build. `make run` and `make test` are the two commands a new machine
# needs; both set up what they use by themselves.

GO      ?= go
BIN     := bin/weir
GOFLAGS ?=
export GOFLAGS

.PHONY: build run test test-deps bench fuzz lint clean

build:
	$(GO) build -o $(BIN) ./cmd/weir

# The main job on the embedded default: records through a commit log in
# ./data, read back and checked, with throughput.
run: build
	./$(BIN) bench log --dir ./data/bench-log --size 512MiB

# Installs what the tests need (Debian packages, Go modules), then runs
# every test: unit, integration, crash (kill -9) and fuzz seeds.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -race -timeout 10m ./codecs ./log

test-deps:
	./scripts/test-deps.sh

# Go benchmarks, then the log against dd conv=fdatasync in the same run.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s ./codecs ./log
	cd benchmarks && $(GO) run ./logbench -size 1GiB -dir ../data/logbench

# Short, bounded fuzzing of every decoder of untrusted bytes.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRecordIter$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzRecordBodies$$' -fuzztime $(FUZZTIME) ./codecs
	$(GO) test -run '^$$' -fuzz '^FuzzVarint$$' -fuzztime $(FUZZTIME) ./codecs

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd benchmarks && $(GO) vet ./...

clean:
	rm -rf bin data/bench-log data/logbench
