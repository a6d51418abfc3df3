# The two commands of the README, and their set-up. Each target installs what it needs by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBIAN_PACKAGES := prometheus prometheus-pushgateway prometheus-node-exporter wrk iproute2
# Extra arguments for `make run`, e.g. make run ARGS="--day-in 10m --scale 0.05"
ARGS ?=

.PHONY: run test lint bench venv debian-deps clean

## run: the main job: a compressed school day against the embedded staging ENT (results + plots)
run: $(STAMP)
	$(BIN)/entload run $(ARGS)

## test: the whole test suite (lint + pytest), real servers on loopback
test: $(STAMP) debian-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) debian-deps
	$(BIN)/python -m benchmarks $(ARGS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "entload needs Python 3.11 or newer"' \
		|| { echo "error: $(PYTHON) is older than 3.11; run make PYTHON=python3.11 ..." >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## debian-deps: Prometheus, Pushgateway, node_exporter, promtool, wrk (installed when root and missing)
debian-deps:
	@missing=""; \
	for b in prometheus:prometheus promtool:prometheus prometheus-pushgateway:prometheus-pushgateway \
	         prometheus-node-exporter:prometheus-node-exporter wrk:wrk tc:iproute2; do \
	  bin=$${b%%:*}; pkg=$${b#*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: missing$$missing (not root: the tests that need them will skip, or fail under CI)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
