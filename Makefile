# Two commands after cloning: `make demo` and `make test`. Both create ./.venv on first use.
# `make check` is the quick loop for development: lint + the tests not marked slow, on CHECK_JOBS pytest-xdist
# processes (0: one process): 390 tests, 54-55 s on 2 idle cores (measured; README, Development).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.magec-installed

.PHONY: install lint test check demo bench clean face-api chromium

# The face-api expression and age/gender weights (npm, pinned integrity) are fetched when npm is present.
NPM := $(shell command -v npm 2>/dev/null)

$(STAMP): requirements.txt requirements-nodeps.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) $(if $(NPM),face-api)

face-api:
	bash scripts/fetch_face_api.sh

lint: install
	$(VENV)/bin/ruff check src tests docs scripts
	$(VENV)/bin/ruff format --check src tests docs

# The studio's browser test drives Debian's chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the studio's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the studio's browser test needs Debian's chromium: run 'sudo apt-get install -y chromium' (skipped without it)"; \
	fi

test: lint chromium
	$(PY) -m pytest -q

CHECK_JOBS ?= 2
# Bytecode caches on for the test runs (an environment with PYTHONDONTWRITEBYTECODE=1 otherwise compiles every module,
# and pytest rewrites every test file, in each test process and each CLI subprocess: collection 12 s -> 8 s here).
test check: export PYTHONDONTWRITEBYTECODE :=

check: lint
	$(PY) -m pytest -q -m "not slow" -n $(CHECK_JOBS)

demo: install
	$(VENV)/bin/magec demo

bench: install
	$(VENV)/bin/magec bench --json

clean:
	rm -rf $(VENV) magec-demo .magec-cache "$${MAGEC_CACHE:-$$HOME/.cache/magec}/embedded-pack"
