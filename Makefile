# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.installed

.PHONY: install gen lint test run run-cluster bench bench-cluster bench-profile clean

# run-cluster's database; the tests make their own throw-away databases in the same server.
CLUSTER_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/agentok

# The server (with the generated stubs), then the Python client (agentok_client), its own package that the tests
# drive the stack with too.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e clients/python
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The TypeScript client (clients/typescript: its runtime, protoc-gen-es for `make gen`, tsc) and the web console
# (console: Vite), each with its own exactly pinned package.json and package-lock.json.
clients/typescript/node_modules/.installed: clients/typescript/package.json clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error
	touch $@

console/node_modules/.installed: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) node_modules/.installed clients/typescript/node_modules/.installed console/node_modules/.installed

## console: build the web console into console/dist (Envoy serves it at /console/; `make run` builds it)
console: install
	cd console && npm run --silent build

## gen: regenerate gen/ (Python stubs + Envoy descriptor) and clients/typescript/src/gen from proto/
gen: $(STAMP) node_modules/.installed clients/typescript/node_modules/.installed
	$(PY) tools/gen.py

## lint: buf lint on the proto, ruff and mypy on the Python
lint: install
	$(BUF) lint
	$(PY) -m ruff check server tests tools bench clients/python
	$(PY) -m mypy

## test: install everything and run the whole suite (what CI runs); PostgreSQL is started if it is not running,
## jq is installed if missing (the seed's curl steps pipe into it), and Debian's chromium (the console's browser
## test; its fixture builds the console, the TypeScript client's test builds the client)
test: lint
	tools/postgres.sh
	tools/jq.sh
	tools/chromium.sh
	$(PY) -m pytest

## run: the gRPC server and Envoy on the embedded SQLite default
run: install gen console
	$(VENV)/bin/agentok run

## run-cluster: PostgreSQL, migrations, 2 server replicas and one Envoy in front of them
run-cluster: install gen
	tools/postgres.sh agentok
	AGENTOK_DATABASE_URL=$(CLUSTER_DATABASE_URL) $(VENV)/bin/agentok db upgrade
	AGENTOK_DATABASE_URL=$(CLUSTER_DATABASE_URL) $(VENV)/bin/agentok run --replicas 2

## bench: the speed figures reported in the README, one table, each beside its ceiling or baseline;
## MODE=cluster: reads and sessions on SQLite, then PostgreSQL with 1 and 2 replicas (`make bench-cluster`);
## BENCH_ARGS="--quick" smoke-tests the bench (small N), "--only reads" runs one section (bench/run.py --help)
MODE ?= sqlite
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client)
ifeq ($(MODE),cluster)
	tools/postgres.sh
	$(PY) bench/run.py --cluster $(BENCH_ARGS)
else ifeq ($(MODE),sqlite)
	$(PY) bench/run.py $(BENCH_ARGS)
	@echo "(make bench MODE=cluster: the same workloads on PostgreSQL with 1 and 2 replicas)"
else
	$(error MODE is sqlite (the default) or cluster, not $(MODE))
endif

bench-cluster:
	$(MAKE) bench MODE=cluster

## bench-profile: py-spy samples the server under wrk (GetChat through Envoy, auth on); where the time goes
bench-profile: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/profile.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules data .bench
