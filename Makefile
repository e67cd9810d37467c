# Two commands do all the set-up on a fresh machine:
#   make demo   the main job, end to end
#   make test   install what the tests need, then run them (all of them; CI runs this)
# Quicker while working: make test-fast (skips the tests marked slow; under 3 minutes on 2 cores).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DEMO_OUT ?= out/demo

.PHONY: install demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned torch first: a bare requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	# Every extra the tests exercise (rllib pins gymnasium 1.2.x; the suite passes on it and on 1.4).
	$(PY) -m pip install -q -e ".[dev,viz,minari,rllib,torchrl]"
	touch $@

install: $(VENV)/.installed

# The whole pipeline on the synthetic world (about 10 minutes on 2 idle cores); report in $(DEMO_OUT)/report.md.
# Quicker: make demo DEMO_ARGS=--quick. MovieLens: DEMO_ARGS="--dataset ml-100k --data-dir PATH".
demo: install
	$(VENV)/bin/recsim demo --out $(DEMO_OUT) --overwrite $(DEMO_ARGS)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
