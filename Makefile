# wsl — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where `make data` / `make demo` put the generated VOC-layout data set (override: make demo DATA_ROOT=...).
DATA_ROOT ?= outputs/datasets/generated
# Where `make visdom` and `make tensorboard` listen (0.0.0.0: every interface, e.g. on a cluster node).
VISDOM_HOST ?= 127.0.0.1
VISDOM_PORT ?= 8097
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006
PYTEST_ARGS ?=
# Options of `python -m wsl.bench` for `make bench` (e.g. BENCH_ARGS="--quick --json bench.json").
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint format data demo inspect bench tensorboard visdom clean

# Variables `make help` shows (with their values) and expands in the targets' descriptions.
HELP_VARS := PYTHON VENV DATA_ROOT TB_HOST TB_PORT VISDOM_HOST VISDOM_PORT PYTEST_ARGS BENCH_ARGS

help: ## list every target and the variables (override any: make demo DATA_ROOT=...)
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
		| sed $(foreach v,$(HELP_VARS),-e 's|$$($(v))|$($(v))|g') \
		| awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "variables:"
	@$(foreach v,$(HELP_VARS),printf "  %-12s = %s\n" "$(v)" "$($(v))";)

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

lint: install ## ruff (lint and format check) and the layers contract (lint-imports, pyproject.toml)
	$(VENV)/bin/ruff check wsl tests tools
	$(VENV)/bin/ruff format --check wsl tests tools
	$(VENV)/bin/lint-imports --no-cache

format: install ## ruff: fix what can be fixed and format
	$(VENV)/bin/ruff check --fix wsl tests tools
	$(VENV)/bin/ruff format wsl tests tools

$(DATA_ROOT)/VOCdevkit/VOC2007/ImageSets/Main/test.txt: | $(STAMP)
	$(PY) -m wsl.data.generate --root $(DATA_ROOT)

data: install $(DATA_ROOT)/VOCdevkit/VOC2007/ImageSets/Main/test.txt ## generate the small VOC2007-layout data set (if missing)

demo: data ## the main job on the generated data set: inspection pictures, Localizer and WSDDN training (see README)
	$(PY) -m wsl.inspect data.root=$(DATA_ROOT) index=0
	$(PY) -m wsl.train experiment=localizer_demo data.root=$(DATA_ROOT)
	$(PY) -m wsl.train experiment=wsddn_demo data.root=$(DATA_ROOT)

bench: install ## WSDDN training step, data loader and VOC07 AP speed vs plain baselines (BENCH_ARGS="--quick --json PATH")
	$(PY) -m wsl.bench $(BENCH_ARGS)

tensorboard: install ## serve TensorBoard over outputs/ at http://$(TB_HOST):$(TB_PORT) (stop: Ctrl-C)
	$(VENV)/bin/tensorboard --logdir outputs --host $(TB_HOST) --port $(TB_PORT)

visdom: install ## run a visdom server at http://$(VISDOM_HOST):$(VISDOM_PORT) in the foreground (stop: Ctrl-C)
	@$(PY) -m tools.visdom_assets || echo "warning: visdom's web-UI files are not installed (needs npm and the npm registry): the server starts, but its page stays blank" >&2
	@echo "visdom at http://$(VISDOM_HOST):$(VISDOM_PORT); stop it with Ctrl-C (runs log to it while it is up)"
	$(PY) -c "from visdom.server.run_server import main; main()" -port $(VISDOM_PORT) --hostname $(VISDOM_HOST)

clean: ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
