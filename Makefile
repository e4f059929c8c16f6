# sluice: `make run` shows the extension at work locally, `make test` runs
# every test (installing and starting what they need).

GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
VERSITYGW := $(GOBIN)/versitygw
VERSITYGW_VERSION := v1.8.0
# AWS's runtime interface emulator, for the Managed Instances tests
# (extension/lambdatest/rie; keep rie.Version in step)
RIE       := $(GOBIN)/aws-lambda-rie
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"
HOSTARCH  := $(shell $(GO) env GOARCH)

export PATH := $(GOBIN):$(PATH)

.PHONY: all build layer publish cost run run-opensearch test athena faults check lint bench tools clean opensearch

all: check

## build: the extension binary for this machine (layer/build/<goarch>/sluice).
## Every build that runs as an extension uses -tags lambda: it leaves out
## `sluice logs` and with it the SDK's configuration loader (~1 ms and ~2 MB
## per cold start); go install without tags gives the full command.
build:
	GOOS=linux GOARCH=$(HOSTARCH) $(BUILD) -tags lambda -o layer/build/$(HOSTARCH)/sluice ./extension/cmd/sluice

## layer: layer/dist/sluice-{x86_64,arm64}.zip, and sluice-parquet-{x86_64,arm64}.zip
## with SLUICE_FORMAT=parquet support (parquet-go: +13 MB, +5 ms per cold start).
## Reproducible: the same commit gives byte-identical zips in any clone (no
## paths, build ids, VCS stamps or times in them); prints their sha256.
VERSION   ?= $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo dev)
RELEASE   := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "-s -w -buildid= -X main.version=$(VERSION)"

layer:
	GOOS=linux GOARCH=amd64 $(RELEASE) -tags lambda -o layer/build/amd64/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=arm64 $(RELEASE) -tags lambda -o layer/build/arm64/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=amd64 $(RELEASE) -tags lambda,parquet -o layer/build/amd64-parquet/sluice ./extension/cmd/sluice
	GOOS=linux GOARCH=arm64 $(RELEASE) -tags lambda,parquet -o layer/build/arm64-parquet/sluice ./extension/cmd/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-x86_64.zip -name sluice layer/build/amd64/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-arm64.zip -name sluice layer/build/arm64/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-parquet-x86_64.zip -name sluice layer/build/amd64-parquet/sluice
	$(GO) run ./layer/mkzip -o layer/dist/sluice-parquet-arm64.zip -name sluice layer/build/arm64-parquet/sluice
	@echo "sluice $(VERSION)"; echo "$(VERSION)" > layer/dist/VERSION
	@cd layer/dist && sha256sum sluice-x86_64.zip sluice-arm64.zip sluice-parquet-x86_64.zip sluice-parquet-arm64.zip | tee SHA256SUMS

## publish: publish layer/dist's zips as layer versions (PUBLISH_FLAGS: see
## layer/publish.sh, e.g. PUBLISH_FLAGS="-r eu-west-1 -r us-east-1 -o o-abc123")
publish:
	sh layer/publish.sh $(PUBLISH_FLAGS)

## cost: the cost model (COST_FLAGS, e.g. "-lines 5 -envs 200 -memory 1024";
## "-grid" prints README's table)
cost:
	$(GO) run ./layer/cost $(COST_FLAGS)

## tools: what the tests need (a real S3 server: versitygw; AWS's Lambda
## runtime interface emulator: aws-lambda-rie)
tools: $(VERSITYGW) $(RIE)

$(VERSITYGW):
	GOBIN=$(GOBIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(RIE):
	GOBIN=$(GOBIN) $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

## run: the sample function in the local Lambda with the real extension, archiving to versitygw
run: tools build
	CGO_ENABLED=0 $(GO) build -o layer/build/sample ./extension/lambdatest/sample
	$(GO) run ./extension/lambdatest/cmd/demo -extension layer/build/$(HOSTARCH)/sluice -function layer/build/sample

## run-opensearch: `make run` with OpenSearch alongside S3: a real OpenSearch
## 2.19 node (Java 17 and Maven; the jars are fetched once, see opensearch)
## behind the SigV4-checking proxy, the index template installed; ends with a
## search over what was indexed
run-opensearch: tools build opensearch
	CGO_ENABLED=0 $(GO) build -o layer/build/sample ./extension/lambdatest/sample
	$(GO) run ./extension/lambdatest/cmd/demo -extension layer/build/$(HOSTARCH)/sluice -function layer/build/sample -opensearch

## faults: the extension under injected S3 faults (sink down, 503 storms,
## 403, latency, resets, freezes, SIGKILL, split and duplicate telemetry,
## a log storm) and OpenSearch faults with S3 alongside (item 429s, a 503
## storm, the cluster down then up); one accounting row per scenario, fails
## if a line is lost
faults: tools build opensearch
	CGO_ENABLED=0 $(GO) build -o layer/build/sample ./extension/lambdatest/sample
	$(GO) run ./extension/lambdatest/cmd/faults -extension layer/build/$(HOSTARCH)/sluice -function layer/build/sample $(FAULTS_FLAGS)

## test: the whole suite (starts versitygw and an OpenSearch node itself), then the Athena proof
test: tools opensearch
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
	$(GO) vet -tags lambda ./...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags parquet ./...
	cd layer/athena && $(GO) mod tidy -diff && $(GO) vet -tags parquet ./...

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

## opensearch: fetch the jars of the test OpenSearch node (2.19, ~44 MB from
## Maven Central, cached in ~/.cache/sluice-opensearch) and compile its launcher
opensearch:
	$(GO) run ./sinks/ostest/cmd/osfetch
