# Self-explanatory targets; see README.md.
GO ?= go
GOLANGCI_LINT_VERSION ?= v2.6.2
BIN := $(CURDIR)/bin

.PHONY: build test test-race lint fuzz bench bench-compare ci clean

build: ## build ./bin/contactstop
	$(GO) build -o $(BIN)/contactstop ./cmd/contactstop

test: ## the test suite, as CI runs it (race detector on)
	$(GO) test -race ./...

test-race: test

lint: ## gofmt, go vet and golangci-lint (installed into ./bin on first use)
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "run gofmt -w"; exit 1; }
	$(GO) vet ./...
	@test -x $(BIN)/golangci-lint || GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(BIN)/golangci-lint run ./...

fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	$(GO) test -run=NONE -fuzz=FuzzDecodeStopRequest -fuzztime=$(or $(FUZZTIME),20s) -fuzzminimizetime=2s ./events/
	$(GO) test -run=NONE -fuzz=FuzzContactKey -fuzztime=$(or $(FUZZTIME),20s) -fuzzminimizetime=2s ./store/
	$(GO) test -run=NONE -fuzz=FuzzUnmarshalContact -fuzztime=$(or $(FUZZTIME),20s) -fuzzminimizetime=2s ./store/
	$(GO) test -run=NONE -fuzz=FuzzAuthorize -fuzztime=$(or $(FUZZTIME),20s) -fuzzminimizetime=2s ./auth/

bench: ## micro-benchmarks and a 10k-request drain on an in-process server
	$(GO) test -run=NONE -bench=. -benchmem ./events/ ./store/
	$(GO) test -run=NONE -bench='DrainBacklog|BulkClear' -benchtime=1x ./worker/

bench-compare: ## raw JetStream, the design's ceiling, a plain peer and contactstop side by side (N=100000)
	../shared/bench/compare.sh $(or $(N),100000)

ci: ## what CI runs
	bash .ci/run

clean:
	rm -rf $(BIN) ./data
