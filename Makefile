# sluice: `make run` shows the extension at work locally, `make test` runs
# every test (installing and starting what they need).

GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
VERSITYGW := $(GOBIN)/versitygw
VERSITYGW_VERSION := v1.8.0
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"
HOSTARCH  := $(shell $(GO) env GOARCH)

export PATH := $(GOBIN):$(PATH)

.PHONY: all build layer run test athena faults check lint bench tools clean

all: check

## build: the extension binary for this machine (layer/build/<goarch>/sluice)
build:
	GOOS=linux GOARCH=$(HOSTARCH) $(BUILD) -o layer/build/$(HOSTARCH)/sluice ./extension/cmd/sluice

## layer: layer/dist/sluice-{x86_64,arm64}.zip, and sluice-parquet-{x86_64,arm64}.zip
## with SLUICE_FORMAT=parquet support (parquet-go: +13 MB, +5 ms per cold start)
layer:
	GOOS=linux GOARCH=amd64 $(BUILD) -o layer/build/amd64/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=arm64 $(BUILD) -o layer/build/arm64/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=amd64 $(BUILD) -tags parquet -o layer/build/amd64-parquet/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=arm64 $(BUILD) -tags parquet -o layer/build/arm64-parquet/sluice ./extension/cmd/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-x86_64.zip -name sluice layer/build/amd64/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-arm64.zip -name sluice layer/build/arm64/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-parquet-x86_64.zip -name sluice layer/build/amd64-parquet/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-parquet-arm64.zip -name sluice layer/build/arm64-parquet/sluice
	@ls -l layer/dist/

## tools: what the tests need (a real S3 server: versitygw)
tools: $(VERSITYGW)

$(VERSITYGW):
	GOBIN=$(GOBIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

## run: the sample function in the local Lambda with the real extension, archiving to versitygw
run: tools build
	CGO_ENABLED=0 $(GO) build -o layer/build/sample ./extension/lambdatest/sample
	$(GO) run ./extension/lambdatest/cmd/demo -extension layer/build/$(HOSTARCH)/sluice -function layer/build/sample

## faults: the extension under injected S3 faults (sink down, 503 storms,
## 403, latency, resets, freezes, SIGKILL, split and duplicate telemetry,
## a log storm); one accounting row per scenario, fails if a line is lost
faults: tools build
	CGO_ENABLED=0 $(GO) build -o layer/build/sample ./extension/lambdatest/sample
	$(GO) run ./extension/lambdatest/cmd/faults -extension layer/build/$(HOSTARCH)/sluice -function layer/build/sample $(FAULTS_FLAGS)

## test: the whole suite (starts versitygw itself), then the Athena proof
test: tools
	$(GO) test -race -count=1 -timeout 15m -tags parquet ./...
	$(GO) test -count=1 ./buffer/ ./sinks/ ./extension/
	$(MAKE) athena

## athena: prove layer/athena's DDL and queries against files the extension
## writes (DuckDB, cgo, in a nested module; the first run fetches ~573 MB)
athena:
	cd layer/athena && CGO_ENABLED=1 $(GO) test -tags parquet -count=1 ./...

## lint: formatting, vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) vet -tags parquet ./...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags parquet ./...
	cd layer/athena && $(GO) vet -tags parquet ./...

## check: everything a change must pass
check: lint test

## bench: one table of what sluice costs, each figure beside a reference
## measured in the same run (zstd alone; a do-nothing extension), see
## README "Performance". BENCH_FLAGS=-short is CI's quick run (< 60 s),
## -quota the Lambda-sized CPU mode (root, cgroups), -profile DIR writes
## CPU and allocation profiles; the Go micro-benchmarks are
## go test -run '^$$' -bench . -benchmem ./buffer/ ./extension/... ./sinks/
bench: tools
	$(GO) run ./extension/lambdatest/cmd/bench $(BENCH_FLAGS)

clean:
	rm -rf layer/build layer/dist
