# wsl — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where `make data` / `make demo` put the generated VOC-layout data set (override: make demo DATA_ROOT=...).
DATA_ROOT ?= outputs/datasets/generated
VISDOM_PORT ?= 8097
TB_PORT ?= 6006
PYTEST_ARGS ?=
# Options of `python -m wsl.bench` for `make bench` (e.g. BENCH_ARGS="--quick --json bench.json").
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint format data demo inspect bench tensorboard visdom clean

help: ## list every target
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt build-constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt PIP_BUILD_CONSTRAINT=$(CURDIR)/build-constraints.txt \
		$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv (if missing) and install wsl with the pinned versions; quick when nothing changed

test: install ## run the test suite on CPU with generated data (slow tests excluded)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install ## run every test, slow ones included
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff: lint and format check
	$(VENV)/bin/ruff check wsl tests
	$(VENV)/bin/ruff format --check wsl tests

format: install ## ruff: fix what can be fixed and format
	$(VENV)/bin/ruff check --fix wsl tests
	$(VENV)/bin/ruff format wsl tests

$(DATA_ROOT)/VOCdevkit/VOC2007/ImageSets/Main/test.txt: | $(STAMP)
	$(PY) -m wsl.data.generate --root $(DATA_ROOT)

data: install $(DATA_ROOT)/VOCdevkit/VOC2007/ImageSets/Main/test.txt ## generate the small VOC2007-layout data set (if missing)

demo: data ## the main job on the generated data set: inspection pictures, Localizer and WSDDN training (see README)
	$(PY) -m wsl.inspect data.root=$(DATA_ROOT) index=0
	$(PY) -m wsl.train experiment=localizer_demo data.root=$(DATA_ROOT)
	$(PY) -m wsl.train experiment=wsddn_demo data.root=$(DATA_ROOT)

bench: install ## WSDDN training step, data loader and VOC07 AP speed vs plain baselines (BENCH_ARGS="--quick --json PATH")
	$(PY) -m wsl.bench $(BENCH_ARGS)

tensorboard: install ## serve TensorBoard over outputs/ on port $(TB_PORT)
	$(VENV)/bin/tensorboard --logdir outputs --port $(TB_PORT) --bind_all

visdom: install ## start a local visdom server on port $(VISDOM_PORT) (its web-UI files come once from npm)
	@$(PY) -m wsl.visdom_assets || echo "warning: visdom's web-UI files are not installed (needs npm and the npm registry): the server starts, but its page stays blank" >&2
	$(PY) -c "from visdom.server.run_server import main; main()" -port $(VISDOM_PORT) --hostname 127.0.0.1

clean: ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
