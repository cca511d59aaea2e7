# Understudy. `make test` is what CI runs (.ci/run); it needs only Go.
GO        ?= go
BIN       := bin/understudy
PKGS      := ./...
FUZZTIME  ?= 10s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test unit fuzz lint bench loadbench clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/understudy

## test: vet, unit and integration tests (race detector on), a short fuzz run.
test: lint unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseChatRequest$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzParseCompletionRequest$$' -fuzztime=$(FUZZTIME) ./gateway

## lint: gofmt, go vet, staticcheck (pinned in go.mod as a tool).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## bench: micro-benchmarks, then the load benchmark (gateway vs teacher-sim at fixed rates).
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./gateway | tee bench-gateway.txt
	$(MAKE) loadbench

loadbench: build
	$(GO) run ./scripts/loadbench -bin $(BIN)

clean:
	rm -rf bin bench-gateway.txt
