# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AWSCLI_VENV := .venv-awscli
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "daxproxy needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# awscli pins its own botocore, which clashes with aiobotocore's: it gets a venv of its own.
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AWSCLI_VENV)/bin/python -m pip install --quiet awscli
	touch $@

# The JavaScript SDK v3 for the integration suite; skipped (and the tests say why) without node.
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the JavaScript SDK tests will be skipped"; fi

run: install
	$(BIN)/daxproxy $(ARGS)

# docker-compose validates docker-compose.yml without a Docker engine (tests/unit/
# test_containers.py). Debian's package installs in seconds where we are root with apt;
# elsewhere that one test skips and says why.
.PHONY: compose-tool
compose-tool:
	@command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing docker-compose (apt) to validate docker-compose.yml"; \
			apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 || \
			{ apt-get update -qq >/dev/null 2>&1 && \
			  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; } || \
			echo "could not install docker-compose: its test will skip"; \
		else echo "docker-compose not found: the compose file's test will skip"; fi; }

test: install $(AWSCLI_VENV)/.installed tests/js/node_modules/.installed compose-tool
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check daxproxy tests bench
	$(BIN)/ruff format --check daxproxy tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format daxproxy tests bench
	$(BIN)/ruff check --fix daxproxy tests bench

# The quick set (under two minutes) and everything; bench/README.md explains both.
bench: install
	@sh bench/setup.sh
	$(BIN)/python -m bench.run --set quick $(ARGS)

.PHONY: bench-full
bench-full: install
	@sh bench/setup.sh
	$(BIN)/python -m bench.run --set full $(ARGS)

# Memory under churn: 10 minutes of mixed load with small caches (bench/README.md, "Soak").
.PHONY: soak
soak: install
	@sh bench/setup.sh
	$(BIN)/python -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) $(AWSCLI_VENV) tests/js/node_modules bench/node_modules bench/results \
		.pytest_cache .mypy_cache .ruff_cache
