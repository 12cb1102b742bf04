# couponmesh — see README.md.
GO      ?= go
BIN     := bin/couponmesh
CONFIG  ?= configs/node.yaml
TESTFLAGS ?= -race -timeout 15m

.PHONY: chaos soak run cluster cluster-lb build test test-go test-js test-browser web lint tidy clean fuzz bench bench-micro bench-persistence bench-presence

## run: one node with the embedded database, web client at http://localhost:8080
run:
	$(GO) run ./cmd/couponmesh node --config $(CONFIG)

## cluster: the embedded database and three nodes on loopback (configs/local-cluster; docs/OPERATIONS.md)
cluster: build
	configs/local-cluster/run.sh

## cluster-lb: the same three nodes behind HAProxy with TLS on https://localhost:8443 (configs/haproxy; needs haproxy, openssl)
cluster-lb: build
	configs/haproxy/run.sh

build:
	$(GO) build -o $(BIN) ./cmd/couponmesh

## test: everything CI runs (the JS tests first: their `npm ci` installs
## axe-core, which the browser tests among the Go tests run in Chromium)
test: test-js test-go

## web: rebuild webclient/dist (committed, embedded into the binary)
web:
	cd webclient && npm ci && npm run build

test-js:
	cd webclient && npm ci --no-audit --no-fund && npm test

test-go:
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

## test-browser: only the browser tests (part of test-go; need /usr/bin/chromium), screenshots in artifacts/
test-browser:
	cd webclient && npm ci --no-audit --no-fund
	$(GO) test $(TESTFLAGS) -run Browser -v ./cmd/couponmesh

## chaos: the fault-injection suite (internal/chaos; root, iproute2, iptables):
## three nodes and the database in network namespaces under a claim load,
## one real fault per scenario, every invariant checked against the journal;
## the table goes to docs/RELIABILITY.md's latest run (about 8 minutes)
chaos:
	@mkdir -p bench-results
	CHAOS_REPORT=$(CURDIR)/bench-results/chaos.md $(GO) test -tags chaos -race -count=1 -timeout 30m -v -run TestChaos ./internal/chaos > bench-results/chaos.log 2>&1; \
		status=$$?; grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok)|chaos_test.go:[0-9]+: [^n]' bench-results/chaos.log | cut -c1-400; \
		cat bench-results/chaos.md 2>/dev/null; exit $$status

## soak: outside CI, the chaos suite's load on three nodes in network
## namespaces for $(SOAK_DURATION) (root, iproute2, iptables), each node's
## RSS and Go heap sampled every $(SOAK_SAMPLE); the table and the verdict
## (memory levels off) go to bench-results/soak.md, heap profiles beside it.
## Try it short: make soak SOAK_DURATION=2m. Without -race: the nodes, which
## are measured, never run with it, and the load needs the CPU.
SOAK_DURATION ?= 30m
SOAK_SAMPLE   ?= 5s
SOAK_TIMEOUT  ?= 60m
soak:
	@mkdir -p bench-results
	SOAK_DURATION=$(SOAK_DURATION) SOAK_SAMPLE=$(SOAK_SAMPLE) SOAK_REPORT=$(CURDIR)/bench-results/soak.md \
		$(GO) test -tags chaos,soak -count=1 -timeout $(SOAK_TIMEOUT) -v -run '^TestSoak$$' ./internal/chaos > bench-results/soak.log 2>&1; \
		status=$$?; grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok)|_test.go:[0-9]+: [^n]' bench-results/soak.log | cut -c1-400; \
		cat bench-results/soak.md 2>/dev/null; exit $$status

## fuzz: a short run of every fuzz target (corpus seeds also run in `make test`)
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 30s
	$(GO) test ./transport/auth -run '^$$' -fuzz FuzzVerify -fuzztime 30s

## bench: every DESIGN.md target measured on this machine in ~14 minutes:
## the micro-benchmarks, then each `couponmesh bench` scenario against
## processes it starts and stops (nodes pinned to CPU $(BENCH_NODE_CPUS), the
## load on CPU $(BENCH_LOAD_CPUS)); JSON results in bench-results/, plots in
## docs/bench/, and the table of figures against targets written into
## docs/BENCHMARKS.md (`couponmesh bench report`). `bench timers` is ~7 of
## them (two phases, each creating 10,000 coupons and waiting out a lead
## picked from the pace of creating 300 coupons). `bench coupons` runs twice:
## with the devdb as its own process (pinned to the load's CPU) and with the
## database embedded in the node (one rate, ~30 s more); the node's CPU
## profiles at 2,000 updates/s and their breakdown (PROFILE.md) stay in
## bench-results/. `bench cluster-claims` (~4 minutes) runs the same steady
## claims on 1, 3 and 10 nodes (all on the nodes' CPU) and keeps each size's
## merged CPU profile (bench-results/cluster-claims-Nnodes.pprof); claims and
## reads keep the node's profile too (claims-node.pprof, reads-node.pprof).
BENCH_NODE_CPUS ?= 0
BENCH_LOAD_CPUS ?= 1
BENCH_SESSIONS  ?= 10000
BENCH_FOLLOWERS ?= 10000
BENCH_RATES     ?= 1,5,20,100
LOAD            := taskset -c $(BENCH_LOAD_CPUS) $(BIN) bench
bench: build
	@mkdir -p bench-results docs/bench
	$(MAKE) --no-print-directory bench-micro > bench-results/micro.txt; status=$$?; cat bench-results/micro.txt; exit $$status
	$(LOAD) capacity --sessions $(BENCH_SESSIONS) --workers 256 --node-cpus $(BENCH_NODE_CPUS) --svg docs/bench/capacity-memory.svg
	$(LOAD) fanout --followers $(BENCH_FOLLOWERS) --rates $(BENCH_RATES) --duration 5s --node-cpus $(BENCH_NODE_CPUS) --svg docs/bench/fanout-latency.svg
	$(LOAD) coupons --node-cpus $(BENCH_NODE_CPUS) --db-cpus $(BENCH_LOAD_CPUS) --profile-rate 2000 \
		--profile bench-results/coupons-node.pprof --db-profile bench-results/coupons-devdb.pprof
	$(LOAD) coupons --db embedded --rates 2000 --node-cpus $(BENCH_NODE_CPUS) --profile bench-results/coupons-embedded-node.pprof
	$(LOAD) claims --node-cpus $(BENCH_NODE_CPUS) --profile bench-results/claims-node.pprof
	$(LOAD) cluster-claims --node-cpus $(BENCH_NODE_CPUS)
	$(LOAD) flashsale --node-cpus $(BENCH_NODE_CPUS)
	$(LOAD) reads --node-cpus $(BENCH_NODE_CPUS) --profile bench-results/reads-node.pprof
	$(BIN) bench failover
	$(BIN) bench drain
	$(LOAD) timers --node-cpus $(BENCH_NODE_CPUS)
	$(BIN) bench report --micro bench-results/micro.txt > /dev/null
	@echo "report written into docs/BENCHMARKS.md"

## bench-presence: presence (issue 19) on one node, on against off: 10,000
## watchers of one coupon, 50,000 coupons with one watcher each (about 8
## minutes, so not part of `make bench`; its JSON result joins the report).
bench-presence: build
	@mkdir -p bench-results
	$(LOAD) presence --node-cpus $(BENCH_NODE_CPUS)

## bench-persistence: Go benchmarks of the persistence layer (group commit vs
## raw BulkWrite, cache vs database, reactivation, durable claims and reads
## in-process); figures in docs/BENCHMARKS.md
bench-persistence:
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -count 1 ./persistence/mongodb ./persistence/cache ./cmd/couponmesh ./bench

## bench-micro: Go micro-benchmarks of the delivery and write hot paths (push
## encoding, frame decode and encode, session Send, the hub's fan-out to 10k
## sinks, fan-out to 1,000 and 9,000 loopback WebSocket sessions, group commit
## batch assembly), $(BENCH_MICRO_TIME) each; under a minute here. No database
## work is timed (persistence/mongodb's TestMain starts its embedded FerretDB).
BENCH_MICRO_TIME ?= 200ms
bench-micro:
	$(GO) test -p 1 -run '^$$' -benchtime $(BENCH_MICRO_TIME) -count 1 \
		-bench '^Benchmark(Push|DecodeRequest|EncodeReply|SessionSend|FanOut|FanOutLoopback|BatchAssembly)$$' \
		./protocol ./transport/ws ./actors/hub ./persistence/mongodb

## lint: go vet, staticcheck (pinned as a tool in go.mod) and gofmt, all clean
lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"

## tidy: fails when go.mod or go.sum drift from the code
tidy:
	$(GO) mod tidy -diff

clean:
	rm -rf bin data
