# The README's two commands, `make demo` and `make test`, work on a fresh machine:
# `bootstrap` installs uv, the project's venv, the az CLI (in its own venv, .azcli) and
# Debian's PostgreSQL and libltdl7 (for mssql-python's ODBC driver) when they are missing.

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
AZCLI := .azcli
PYTEST_ARGS ?=

.PHONY: all bootstrap test unit integration e2e lint demo bench clean

all: test

bootstrap:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet
	@test -x $(AZCLI)/bin/az || { \
	  echo "installing the az CLI into $(AZCLI) (tests run the real az against the sandbox)"; \
	  $(UV) venv --quiet $(AZCLI) && $(UV) pip install --quiet -p $(AZCLI)/bin/python 'azure-cli==2.91.*'; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql (tests start throwaway servers from its binaries)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@ldconfig -p 2>/dev/null | grep -q 'libltdl\.so\.7' || { \
	  echo "installing Debian's libltdl7 (mssql-python's ODBC Driver 18 needs it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libltdl7 >/dev/null; }

# Branch coverage of the product is printed at the end; under the floor in pyproject.toml
# ([tool.coverage.report] fail_under) the run fails.
test: bootstrap lint
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

unit: bootstrap
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: bootstrap
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: bootstrap
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

lint: bootstrap
	$(BIN)/ruff check scripts tests bench examples
	$(BIN)/ruff format --check scripts tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/actionlint .github/workflows/*.yml workflows/*.yml
	$(BIN)/zizmor --offline --quiet --config .github/zizmor.yml action.yml prepare/action.yml cleanup/action.yml .github/workflows/*.yml workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions action.yml prepare/action.yml cleanup/action.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml workflows/*.yml

demo: bootstrap
	$(BIN)/python examples/demo.py

# Every script in bench/, one after another: each prints its figures beside their anchor
# (benchmarks print; they are never tests).
bench: bootstrap
	@set -e; for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
