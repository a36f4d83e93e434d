# AnomalyHub: `make run` (embedded, no services) and `make test` (real PostgreSQL + Redis).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/anomalyhub
REDIS_TEST_URL ?= redis://127.0.0.1:6379/3

ASSETS := frontend/static/dist/.built

.PHONY: run test test-slow bench eval load lint services install assets browser clean

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the declared dependencies change.
$(STAMP): $(PY) pyproject.toml requirements.lock
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Browser dependencies come from npm through the lock file; the build copies them to static/dist/.
$(ASSETS): frontend/package.json frontend/package-lock.json frontend/build.mjs
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20+ (apt-get install nodejs npm)"; exit 1; }
	cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	@touch $(ASSETS)

assets: $(ASSETS)

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; } \
	  || { echo "error: /usr/bin/chromium is missing; install Debian's chromium package"; exit 1; }

# Embedded mode: SQLite, in-memory channel layer, in-process tasks, console email, demo data.
# With DATABASE_URL and REDIS_URL set: production mode, every process of the Procfile (web: gunicorn
# with uvicorn workers; a Celery worker per queue group; beat) under honcho; Ctrl-C stops them all.
# PROCESSES picks some (`make run PROCESSES="web realtime"`); WEB_PROCESSES etc. as in .env.example.
# The processes count their metrics into one fresh directory, which /metrics on web aggregates.
ifneq ($(and $(DATABASE_URL),$(REDIS_URL)),)
run: $(STAMP) $(ASSETS)
	$(PY) manage.py migrate --noinput
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PROMETHEUS_MULTIPROC_DIR="$$(mktemp -d)" \
	  $(VENV)/bin/honcho -f Procfile start $(PROCESSES)
else
run: $(STAMP) $(ASSETS)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@echo ""
	@echo "  AnomalyHub is starting on http://127.0.0.1:8000/"
	@echo "  Demo login: demo@anomalyhub.local / demo-password"
	@echo "  Or sign up at http://127.0.0.1:8000/accounts/signup/ (the confirmation email prints here)"
	@echo "  Quiet by default; every request and task: make run DEMO_ARGS=--verbose"
	@echo ""
	$(PY) manage.py rundemo 127.0.0.1:8000 $(DEMO_ARGS)
endif

# Starts PostgreSQL and Redis when installed but stopped; fails with one line when absent.
services:
	@bash tests/ensure_services.sh

test: $(STAMP) $(ASSETS) browser services
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP) services
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest -m slow $(PYTEST_ARGS)

# Benchmarks use their own database and Redis dbs (10-12), which they may truncate and flush.
bench: $(STAMP) services
	DATABASE_URL=$(PG_URL)_bench REDIS_URL=redis://127.0.0.1:6379/10 DJANGO_ENV=test \
	  SECRET_KEY=bench-secret-key-not-for-production $(PY) -m tests.benchmarks $(BENCH_ARGS)

# Load test: the Procfile's processes under locust (REST, GraphQL, ingest 1,000 ticks/s, WebSocket subscribers,
# 8 organizations) on its own database and Redis dbs 7-9; writes docs/load-report.md. LOAD_SECONDS=60.
load: $(STAMP) services
	DATABASE_URL=$(PG_URL)_load REDIS_URL=redis://127.0.0.1:6379/7 $(PY) -m tests.load

# Detector evaluation on injected anomalies (precision / recall / F1 per detector and kind), then
# NAB per profile and category next to published detectors when ../shared/data/nab or NAB_ROOT
# holds the corpus (about 20 minutes for the ensemble; EVAL_ARGS="--nab-detectors" skips it).
eval: $(STAMP)
	$(PY) -m detection.evaluation $(EVAL_ARGS)

# Style (ruff), then the dependency direction between the apps and anomalyhub.lib (import-linter's
# contracts in pyproject.toml: wiring -> frontend -> alerts -> detection -> watchlists -> accounts -> lib).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo

clean:
	rm -rf $(VENV) db.sqlite3 bench.json
