# gpt.py: every command the project has. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL ?= gpt2_124M.bin
# where `make model` downloads from: empty means gpt_checkpoint.py's default, llm.c's starter pack
MODEL_URL ?=
# the stand-in for MODEL where GPT-2's weights cannot be downloaded: random, same shape
RANDOM_MODEL ?= random_124M.bin
# torch's CPU build, for the oracle tests against Hugging Face transformers
TORCH_CPU := 2.13.0+cpu

.PHONY: install run test bench scaling perplexity model random-model clean

install: $(VENV)/.installed  ## .venv with the project (editable) and its test dependencies

$(VENV)/.installed: pyproject.toml
	@echo "make: installing gpt.py and its dependencies into $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >&2
	@$(BIN)/python -m pip install -q -e '.[test]' >&2
	@# the oracle tests' torch: its CPU build only, pinned to the local version label so
	@# that pip can never fall back on PyPI's CUDA build (several GB)
	@$(BIN)/python -m pip install -q 'torch==$(TORCH_CPU)' transformers >&2 \
	  || echo "make: torch $(TORCH_CPU) cannot be installed here: the oracle tests will skip" >&2
	@echo "make: compiling gpt's kernels once, into numba's cache (2-3 minutes on 2 cores; no later run compiles)" >&2
	@$(BIN)/python -m gptpy.warmup
	@touch $@

run: install  ## the main job: "hello there" (31373 612) -> 8 more token ids, timed
	@if [ -f $(MODEL) ] || $(BIN)/gpt-checkpoint download $(MODEL) $(if $(MODEL_URL),--url $(MODEL_URL)); then \
	  echo "gpt --model $(MODEL) 31373 612" >&2; \
	  time $(BIN)/gpt --model $(MODEL) 31373 612; \
	else \
	  echo "make run: no GPT-2 weights, so running on RANDOM weights of GPT-2 124M's shape: the tokens mean nothing, the timing is real" >&2; \
	  $(MAKE) --no-print-directory random-model >&2; \
	  time $(BIN)/gpt --model $(RANDOM_MODEL) 31373 612; \
	fi

test: install  ## the test suite: small generated models, a few minutes on 2 cores
	$(BIN)/python -m pytest

bench: install random-model  ## benchmarks on a generated 124M-shape model (pytest-benchmark medians)
	$(BIN)/python -m pytest benchmarks --benchmark-columns=median,min,max,rounds --benchmark-sort=name

scaling: install random-model  ## speed-up vs workers K = 1 .. cores and 2x cores: a table and scaling.png (DTYPE=bf16, int8 or int4: those weights)
	$(BIN)/python benchmarks/scaling.py --model $(RANDOM_MODEL) --plot scaling.png $(if $(DTYPE),--dtype $(DTYPE))

perplexity: install  ## gpt-perplexity on README.md: GPT-2 124M's, or the random model's (DTYPE=bf16, int8 or int4: against fp32)
	@if [ -f $(MODEL) ]; then m=$(MODEL); else $(MAKE) --no-print-directory random-model >&2; m=$(RANDOM_MODEL); \
	  echo "make perplexity: no $(MODEL) (make model), so on RANDOM weights: the figures mean nothing" >&2; fi; \
	$(BIN)/gpt-perplexity --model $$m README.md $(if $(DTYPE),--dtype $(DTYPE) --against fp32)

model: install  ## download llm.c's gpt2_124M.bin (GPT-2 124M, version 3) into this folder
	$(BIN)/gpt-checkpoint download $(MODEL) $(if $(MODEL_URL),--url $(MODEL_URL))

random-model: install  ## a seeded random checkpoint of the 124M shape, for benchmarks
	@[ -f $(RANDOM_MODEL) ] || $(BIN)/gpt-checkpoint random $(RANDOM_MODEL) --shape 124M --confident

clean:  ## remove the venv, caches and generated models (not a downloaded gpt2_124M.bin)
	rm -rf $(VENV) *.egg-info .pytest_cache .benchmarks .hypothesis $(RANDOM_MODEL) scaling.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
