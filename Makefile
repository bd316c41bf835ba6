# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AWSCLI_VENV := .venv-awscli
ARGS ?=
PYTEST_ARGS ?=
# Where CI is set (any value), a test tool that cannot be installed (npm, docker-compose)
# fails `make test` instead of letting its tests skip: CI must not turn green by skipping.
CI ?=

.PHONY: install run test lint format bench clean

# Every version pinned by constraints.txt (moto, the SDKs, the tools): `make pins` refreshes it.
$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "daxproxy needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# awscli pins its own botocore, which clashes with aiobotocore's: it gets a venv of its own.
$(AWSCLI_VENV)/.installed: constraints-awscli.txt
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AWSCLI_VENV)/bin/python -m pip install --quiet -c constraints-awscli.txt awscli
	touch $@

# The JavaScript SDK v3 for the integration suite; skipped (and the tests say why) without node.
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	elif [ -n "$(CI)" ]; then echo "npm not found, and CI is set: install Node.js 20+ and npm" >&2; exit 1; \
	else echo "npm not found: the JavaScript SDK tests will be skipped"; fi

# The dev venv has every extra, "fast" (uvloop, the proxy's event loop where installed) too.
run: install
	$(BIN)/daxproxy $(ARGS)

# Test tools that are Debian packages (tests/tools.sh): docker-compose validates
# docker-compose.yml without a Docker engine (tests/unit/test_containers.py); wrk drives the
# bench's smoke test. Installed where we are root with apt; elsewhere their tests skip and
# say why, unless CI is set.
.PHONY: test-tools
test-tools:
	@sh tests/tools.sh docker-compose docker-compose "the compose file's test"
	@sh tests/tools.sh wrk wrk "the bench's wrk smoke test"

test: install $(AWSCLI_VENV)/.installed tests/js/node_modules/.installed test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check daxproxy tests bench
	$(BIN)/ruff format --check daxproxy tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format daxproxy tests bench
	$(BIN)/ruff check --fix daxproxy tests bench

# The quick set (about two minutes) and everything; bench/README.md explains both.
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

# Mutation testing of the caches' guards (tests/MUTANTS.md): mutmut mutates the four modules
# in pyproject's [tool.mutmut] and runs the fast unit tests against each mutant, one worker
# at a time (MUTANTS_JOBS); then lists the survivors. Not part of `make test`.
MUTANTS_JOBS ?= 1
.PHONY: mutants
mutants: install
	@$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/python -m pip install --quiet 'mutmut>=3.8,<3.9'
	rm -rf mutants  # mutmut reuses a stale copy of the unmutated modules otherwise
	$(BIN)/mutmut run --max-children $(MUTANTS_JOBS)
	@echo "Survivors and timeouts (\`$(BIN)/mutmut show NAME\` prints one's diff; tests/MUTANTS.md says why each is left):"
	@$(BIN)/mutmut results

# Refresh the pins: the newest versions pyproject.toml (and awscli) allow, resolved in fresh
# throwaway venvs and frozen into constraints.txt and constraints-awscli.txt. Review the diff
# (a new moto can flip a strict xfail) and commit it with whatever it makes the tests need.
.PHONY: pins
pins:
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/python -m pip install --quiet --upgrade pip
	.venv-pins/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; .venv-pins/bin/pip freeze --exclude-editable | grep -v '^#'; } > constraints.txt.new
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/python -m pip install --quiet awscli
	{ sed -n '/^#/p' constraints-awscli.txt; .venv-pins/bin/pip freeze | grep -v '^#'; } > constraints-awscli.txt.new
	rm -rf .venv-pins
	mv constraints.txt.new constraints.txt
	mv constraints-awscli.txt.new constraints-awscli.txt

clean:
	rm -rf $(VENV) $(AWSCLI_VENV) tests/js/node_modules bench/node_modules bench/results \
		.pytest_cache .mypy_cache .ruff_cache mutants
