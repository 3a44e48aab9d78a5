# resnode_lightning: `make install` sets up .venv, `make test` runs the suite, `make bench` the
# step-cost benchmark (run it alone on the machine: it measures time and memory).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/step_cost.py

lint: install
	$(PY) -m ruff check resnode_lightning tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache benchmarks/results
