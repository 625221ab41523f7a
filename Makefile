# citybrain — every target bootstraps what it needs; nothing is assumed installed but
# Python 3.11, Node.js/npm and (for browser tests) Debian's chromium, which
# scripts/system-deps.sh installs when run as root.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
VENDOR := build/web-vendor
HTMX := $(VENDOR)/htmx.min.js

.PHONY: setup demo serve test lint system-deps clean bench

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "需要 Python 3.11 / Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Front-end packages (htmx, Swagger UI, ECharts for the cockpit, jsQR for the gate camera,
# qrcode-generator for the residents' code page)
# are served from our own static folder: nothing from a CDN at run time.
$(HTMX): node_modules/.installed
	@mkdir -p $(VENDOR)/swagger-ui
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/swagger-ui/
	cp node_modules/echarts/dist/echarts.min.js $(VENDOR)/
	cp node_modules/jsqr/dist/jsQR.js $(VENDOR)/
	cp node_modules/qrcode-generator/dist/qrcode.js $(VENDOR)/qrcode-generator.js
	cp node_modules/htmx.org/dist/htmx.min.js $@

setup: $(BIN)/.installed $(HTMX)

## make demo: set up, prepare ./var, migrate, load the hierarchy, create and print the
## demo accounts, then serve on http://127.0.0.1:8000
demo: setup
	$(BIN)/citybrain demo

serve: setup
	$(BIN)/citybrain serve

system-deps:
	@bash scripts/system-deps.sh

## make test: set up, lint, check layers and types, run the suite on SQLite and on
## PostgreSQL (skipped with a plain message when no server answers, never in CI)
test: setup system-deps
	@bash scripts/run-tests.sh

lint: setup
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: setup
	@for b in bench/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) node_modules build .pytest_cache .mypy_cache .ruff_cache
