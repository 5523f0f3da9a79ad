# The commands of the README:
#   make up         install and run Konsil on its embedded default (SQLite, no other server)
#   make test       install, start the services the tests need, lint, type-check and run the tests
#   make test-fast  the tests that need no service and start no process (seconds, not minutes)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The test files run on 3 pytest-xdist workers, each file whole on one worker (its module
# fixtures are made once): most of the time is spent waiting on servers, browsers and relays
# (about 17 minutes instead of about 25 in one process). Tests wait on what they observe with
# generous deadlines, so a loaded 2-core machine slows them but does not fail them.
# PYTEST_WORKERS= runs them in one process.
PYTEST_WORKERS ?= -n 3 --dist loadfile
# axe-core (npm), which the browser tests inject into Chromium (tests/e2e/browser_kit.py).
AXE := tests/e2e/axe
AXE_STAMP := $(AXE)/node_modules/.installed
# oidc-provider (npm), the OpenID Connect provider standing in for Criipto Verify in the
# national eID tests (tests/oidc_provider/provider.mjs).
OIDC := tests/oidc_provider
OIDC_STAMP := $(OIDC)/node_modules/.installed

.PHONY: up test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(AXE_STAMP): $(AXE)/package.json $(AXE)/package-lock.json
	cd $(AXE) && npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE_STAMP)

$(OIDC_STAMP): $(OIDC)/package.json $(OIDC)/package-lock.json
	cd $(OIDC) && npm ci --no-audit --no-fund --loglevel=error
	touch $(OIDC_STAMP)

up: $(STAMP)
	$(VENV)/bin/konsil up --demo

test: $(STAMP)
	scripts/install-system-packages
	$(MAKE) --no-print-directory $(AXE_STAMP) $(OIDC_STAMP)
	scripts/ensure-services
	scripts/lint
	$(VENV)/bin/pytest $(PYTEST_WORKERS) --durations=25

# Markers from tests/conftest.py: e2e = everything under tests/e2e (other processes:
# the stack, OpenBao, coturn, Chromium, `konsil` commands); services = a PostgreSQL,
# RabbitMQ or OpenBao it talks to.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not e2e and not services"

lint: $(STAMP)
	scripts/lint

bench: $(STAMP)
	scripts/ensure-services
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .konsil .mypy-view build *.egg-info $(AXE)/node_modules $(OIDC)/node_modules
