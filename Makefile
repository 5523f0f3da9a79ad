# The commands of the README:
#   make up         install and run Konsil on its embedded default (SQLite, no other server)
#   make test       install, start the services the tests need, lint, type-check and run the tests
#   make test-fast  the tests that need no service and start no process (seconds, not minutes)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The tests run in one process (about 35 minutes on 2 cores). On 3 pytest-xdist workers
# (PYTEST_WORKERS="-n 3 --dist loadfile": each file whole on one worker) they take about 20,
# but two clean-clone runs each had one or two load-bound failures (a browser's connection
# test, a rate-limit window, a relay port): one process until those are robust too.
PYTEST_WORKERS ?=
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
