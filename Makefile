# Two commands after cloning: `make demo` and `make test`. Both create ./.venv on first use.
# `make check` is the quick loop for development: lint + the tests not marked slow, on CHECK_JOBS pytest-xdist
# processes (0: one process). At f887107: 376 tests; 3.5 min with other jobs at load 6-7 (one process; two were
# slower there); about 55 s estimated on 2 idle cores with two (72 s with one), not yet measured idle.
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

check: lint
	$(PY) -m pytest -q -m "not slow" -n $(CHECK_JOBS)

demo: install
	$(VENV)/bin/magec demo

bench: install
	$(VENV)/bin/magec bench --json

clean:
	rm -rf $(VENV) magec-demo .magec-cache "$${MAGEC_CACHE:-$$HOME/.cache/magec}/embedded-pack"
