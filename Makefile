# The same commands for everyone and for CI. Each target sets up what it needs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.protoexplain-installed

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

# A virtual environment with the pinned PyTorch (the CUDA build; it runs on the CPU) and the
# project in editable mode, plus the Debian Fashion-MNIST data used by the real-image benchmark
# and Debian's chromium for the report's browser tests.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	@bash scripts/install_data.sh
	@bash scripts/install_browser.sh
	touch $@

# Writes runs/demo (runs/demo-2, -3, ... when taken: no earlier run is overwritten).
demo: $(STAMP)
	$(VENV)/bin/protoexplain demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check protoexplain prototypes hdm tests benchmarks research configs

bench: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/hdm_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
