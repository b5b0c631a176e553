# Two commands do all set-up on a fresh machine (offline but for PyPI):
#   make demo   fine-tune the bundled MiniLM on SST-2, evaluate it, predict a few sentences
#   make test   the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= $(abspath ../shared)
export SENTITUNE_DATA_DIR ?= $(SHARED)/data
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint install bench clean wheel-check

# pip says only what went wrong: no progress bars, no version nag, no script-path notes.
PIP := $(BIN)/python -m pip install -q --progress-bar off --disable-pip-version-check \
       --no-warn-script-location

$(BIN)/sentitune: pyproject.toml setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing sentitune and its dependencies into $(VENV) (a few minutes the first time)"
	@$(PIP) --upgrade pip
	@# The CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
	@$(PIP) "torch==2.13.0"
	@$(PIP) -e ".[dev,all]"
	@touch $(BIN)/sentitune

install: $(BIN)/sentitune

# What a person reads: the commands, one line per epoch, the metrics and three predictions.
demo: install
	@echo "+ sentitune train --config sst2-minilm --output runs/demo --overwrite"
	@$(BIN)/sentitune train --config sst2-minilm --output runs/demo --overwrite
	@echo "+ sentitune evaluate runs/demo --split validation"
	@$(BIN)/sentitune evaluate runs/demo --split validation
	@echo "+ sentitune predict runs/demo TEXT TEXT TEXT"
	@$(BIN)/sentitune predict runs/demo \
	  "A gorgeous, deeply moving film." \
	  "The plot is a mess and the jokes fall flat." \
	  "Not bad at all, though it drags in the middle."

test: install
	$(BIN)/python -m pytest -q

# The package as users install it: wheel, fresh venv, presets and a tiny training elsewhere.
wheel-check:
	bash ci/wheel_check.sh

lint: install
	$(BIN)/ruff check src tests benchmarks

# Re-measures benchmarks/results/ on this machine (about 50 minutes on 2 cores; run it on an
# otherwise idle machine). The inference and server benchmarks score the `make demo` run.
RESULTS := benchmarks/results
bench: install runs/demo/metrics.json
	$(BIN)/python benchmarks/train_speed.py --seeds 42 43 44 --output $(RESULTS)/train_speed-minilm-cpu.json
	$(BIN)/sentitune export runs/demo --quantize int8 > /dev/null
	$(BIN)/python benchmarks/infer_speed.py runs/demo --imdb-texts 500 --output $(RESULTS)/infer_speed-minilm-cpu.json
	$(BIN)/python benchmarks/int8_variants.py runs/demo --output $(RESULTS)/int8_variants-minilm-cpu.json
	$(BIN)/python benchmarks/serve_load.py runs/demo --output $(RESULTS)/serve_load-minilm-cpu.json
	$(BIN)/python benchmarks/serve_load.py runs/demo --backend onnx-int8 --output $(RESULTS)/serve_load-minilm-int8-cpu.json
	$(BIN)/python benchmarks/serve_load.py runs/demo --fairness --output $(RESULTS)/serve_fairness-minilm-cpu.json
	$(BIN)/python benchmarks/soak.py runs/demo --output $(RESULTS)/soak-minilm-cpu.json

runs/demo/metrics.json:
	$(MAKE) demo

clean:
	rm -rf runs .pytest_cache
