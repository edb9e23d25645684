# The README's two commands: `make demo` and `make test`. On a fresh Debian machine
# each installs what it needs (Debian packages with apt-get, a virtualenv with pip)
# and then runs.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ruche-installed
# Binary -> Debian package. Tests and the demo start these themselves; the live-page
# tests drive Debian's Chromium through Playwright (no browser download); the unit tests
# check the systemd units Ruche writes with systemd-analyze (no systemd need be running).
SYSTEM_DEPS := mosquitto:mosquitto influxd:influxdb openssl:openssl chromium:chromium \
	pdftoppm:poppler-utils systemd-analyze:systemd
PYTEST_ARGS ?=
DEMO_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test check lint typecheck view unit system-deps install clean messages

demo: install
	$(BIN)/ruche demo $(DEMO_ARGS)

# Four processes, a test file each at a time, the longest files first (tests/conftest.py
# orders them; xdist keeps that order): most tests wait on brokers, databases, browsers
# and outages rather than compute, so four share two cores with room to spare.
test: install lint typecheck
	$(BIN)/pytest -n 4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Lint, types and the tests that need no service: quick feedback while editing.
check: install lint typecheck
	$(BIN)/pytest tests/unit -q

# Ruff, then the import layers ([tool.importlinter] in pyproject.toml).
lint: install view
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd .typecheck && PYTHONPATH=. ../$(BIN)/lint-imports --config ../pyproject.toml --no-cache

typecheck: install view
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p ruche

# mypy and import-linter cannot follow setuptools' editable import hook, so they read a
# view of the package built from symlinks: .typecheck/ruche/{edge,server,...} -> the
# real folders.
view:
	@rm -rf .typecheck && mkdir -p .typecheck/ruche
	@for f in ruche/*.py ruche/py.typed; do ln -s "../../$$f" .typecheck/ruche/; done
	@ln -s ../../broker .typecheck/ruche/broker
	@ln -s ../../edge .typecheck/ruche/edge
	@ln -s ../../server .typecheck/ruche/server
	@ln -s ../../dashboards .typecheck/ruche/dashboards
	@ln -s ../../firmware-sim .typecheck/ruche/sim

# The French and English catalogues (docs/server.md, "Pages, languages"): extract every
# _(), gettext, ngettext, pgettext and N_ string of the server's Python and templates
# (server/i18n/babel.cfg), then merge them into each locale's ruche.po, which the server
# reads as it is (no compile step). Translate the new French msgstrs: tests/unit/test_i18n.py
# fails while one is empty or fuzzy, or while the code holds a string the catalogues lack.
LOCALES_DIR := server/i18n/locales
messages: install
	@mkdir -p build
	$(BIN)/pybabel -q extract -F server/i18n/babel.cfg --sort-by-file --project=Ruche \
	  --msgid-bugs-address= --copyright-holder= -o build/ruche.pot server
	@for lang in fr en; do \
	  if [ -f $(LOCALES_DIR)/$$lang/LC_MESSAGES/ruche.po ]; then \
	    $(BIN)/pybabel -q update -D ruche -l $$lang -i build/ruche.pot -d $(LOCALES_DIR) \
	      --ignore-obsolete --no-fuzzy-matching; \
	  else \
	    $(BIN)/pybabel -q init -D ruche -l $$lang -i build/ruche.pot -d $(LOCALES_DIR); \
	  fi; \
	done

install: system-deps $(STAMP)

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# A virtualenv made when the distribution was still called `ruche` holds it too.
	@$(BIN)/python -m pip uninstall -q -y ruche 2>/dev/null || true
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf .typecheck .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info test-artifacts
