# Relay — developer entry points. The scripts under scripts/ do the work;
# CI runs `bash .ci/run`, which is `make test` without make.

GO     ?= go
BIN    ?= bin/relay
IMAGE  ?= relay:dev
# Extra flags for `make run`, e.g. make run ARGS='--log-level debug'.
ARGS   ?=

.PHONY: all build run test deps fuzz lint docker clean bench-compare

all: build

## build: compile the relay binary into bin/relay
build:
	$(GO) build -o $(BIN) ./cmd/relay

## run: build, then run everything in one process with anonymous clients allowed
run: build
	./$(BIN) serve --allow-anonymous $(ARGS)

## test: the full test run (deps, vet, tests, race, fuzz) — what CI runs
test:
	./scripts/test.sh

## deps: install/check what the tests need
deps:
	./scripts/deps.sh

## fuzz: every Fuzz* target for FUZZTIME each (default 20s): make fuzz FUZZTIME=2m
fuzz:
	./scripts/fuzz.sh

## lint: gofmt (fails on unformatted files) and go vet
lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## docker: build the container image (needs a Docker engine)
docker:
	docker build -f deploy/Dockerfile -t $(IMAGE) .

bench-compare: ## Relay vs Mosquitto vs nats-server MQTT on this machine (RUNS=1 DURATION=3s for a quick run)
	bench/compare/compare.sh

clean:
	rm -rf bin
