# shardline: every command sets up what it needs (.venv, the package installed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ./data

.PHONY: run test check lint typecheck bench bench-peers bench-emulators clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ray,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/shardline serve --data $(DATA)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check broker consumers bench tests
	$(BIN)/ruff format --check broker consumers bench tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The whole benchmark suite, then docs/benchmarks.md and its plots. Peers (Redis,
# NATS, the Kinesis emulators) are installed first where this machine allows; the
# suite reports any it lacks.
# BENCH_ARGS passes options to every scenario, e.g. make bench BENCH_ARGS=--quick.
bench: $(STAMP)
	-@$(MAKE) --no-print-directory bench-peers
	-@$(MAKE) --no-print-directory bench-emulators
	$(BIN)/shardline bench all $(BENCH_ARGS); status=$$?; $(BIN)/shardline bench report; exit $$status

# Debian's Redis and NATS servers for the suite's peers (needs root and apt-get).
bench-peers:
	@if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null \
		&& { command -v nats-server >/dev/null || test -x /usr/sbin/nats-server; }; then \
		echo "peers: redis-server and nats-server are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			redis-server redis-tools nats-server >/dev/null && echo "peers: installed"; \
	else \
		echo "peers: run 'sudo apt-get install -y redis-server redis-tools nats-server'"; \
		exit 1; \
	fi

# kinesalite and kinesis-mock (npm kinesis-local) for the kinesis-api scenario, pinned,
# into ~/.cache/shardline-bench (SHARDLINE_BENCH_CACHE overrides); needs node and npm.
bench-emulators: $(STAMP)
	$(BIN)/python -m bench.peers.emulators install

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
