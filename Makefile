# resnode_lightning: `make quickstart` installs what is missing and runs the paper's chain on the digits (offline),
# `make test` installs what is missing and runs the suite, `make bench` the benchmarks (run it alone on the
# machine: it measures time and memory).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart test bench device-check lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

# The paper's workflow on scikit-learn's digits: pretrain tied (1 epoch), validate right after untying and deepening
# (the accuracy the transfer keeps), fine-tune stage 3 with the adjoint (3 epochs), then the three accuracies.
quickstart: install
	$(VENV)/bin/resnode fit --config quickstart.yaml
	$(VENV)/bin/resnode validate --config quickstart_finetune.yaml
	$(VENV)/bin/resnode fit --config quickstart_finetune.yaml
	$(PY) experiments/quickstart_summary.py

test: install
	$(PY) -m pytest -q

# Benchmarks on real CIFAR-10 read the shared copy beside the repository, unpacked into .cache/ (ignored).
CIFAR := .cache/cifar10-jpg
$(CIFAR): ../shared/data/cifar10-jpg.tar.gz
	mkdir -p .cache && tar -xzf $< -C .cache && touch $@

bench: install $(CIFAR)
	$(PY) benchmarks/step_cost.py
	$(PY) benchmarks/input_pipeline.py --root $(CIFAR)
	$(PY) benchmarks/imagenet_pipeline.py
	$(PY) benchmarks/fit_overhead.py --root $(CIFAR)
	$(PY) benchmarks/ddp_throughput.py --root $(CIFAR)
	$(PY) benchmarks/gradient_monitor_cost.py

# Everything that matters on a CUDA GPU in one call of at most 8 minutes (benchmarks/device_check.py): writes
# docs/results/device_check.json and prints its table. DEVICE_CHECK="--device cpu --quick" runs it on the CPU.
DEVICE_CHECK ?=
device-check: install $(CIFAR)
	$(PY) benchmarks/device_check.py $(DEVICE_CHECK)

lint: install
	$(PY) -m ruff check resnode_lightning tests benchmarks experiments
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache benchmarks/results runs
