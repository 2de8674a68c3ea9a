# Two commands do all set-up on a fresh machine:  `make demo` (the main job)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export MUJOCO_GL ?= egl

.PHONY: setup test test-all demo bench clean

setup: $(STAMP)

# torch first, pinned: the CPU wheel. Anything that pulls an unpinned torch first drags in GBs of CUDA packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

# two pytest workers (pytest-xdist): 10 min instead of 16.5 on 2 cores; a single test file runs fine without -n
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "slow or not slow"

# The main job: frozen μ0 + per-robot action experts on Lift, collect -> train -> closed-loop eval -> report.
demo: $(STAMP)
	$(BIN)/mu0sim demo

bench: $(STAMP)
	$(BIN)/python bench/env_throughput.py

clean:
	rm -rf $(VENV) *.egg-info bench/out
