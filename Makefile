# graphwire's two entry points: `make demo` (the main job) and `make test` (the tests, once
# per native-kernel variant this CPU runs and once with the kernels off);
# `make gpu-check` runs the prepared GPU checks with the machine's own python3.
# Both create .venv when it is missing, install a CPU torch first when none is importable
# (set TORCH_SPEC / TORCH_INDEX for a GPU build), then the package with its extras.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.graphwire-installed

.PHONY: demo test lint docs install clean gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks demo

# The GPU machines carry their own python3 with torch, torch-geometric, torchdiffeq and
# torchvision and allow no install: this runs the checkout as it is, with $(PYTHON).
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

# The suite runs once per native-kernel variant this CPU executes (scalar, avx2, avx512:
# `python -m graphwire._native --runnable`) and once with the kernels off, then the docs.
test: lint $(STAMP)
	@set -e; variants="$$($(PY) -m graphwire._native --runnable)"; \
	for kernels in $$variants off; do \
		echo "== pytest with GRAPHWIRE_KERNELS=$$kernels"; \
		GRAPHWIRE_KERNELS=$$kernels $(PY) -m pytest; \
	done
	$(MAKE) docs

clean:
	rm -rf docs/_build docs/api docs/results .pytest_cache .ruff_cache
