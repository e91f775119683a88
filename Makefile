# make demo: set up .venv when missing, run the study offline on the embedded default (CPU).
# make test: the test suite.   make lab: JupyterLab on the notebooks.   make paper: the paper's setup (GPU + network).
# The study runs on Snakemake (workflow/Snakefile); SNAKEMAKE_ARGS go to it: make smoke SNAKEMAKE_ARGS=-n
# lists what would run and why, SNAKEMAKE_ARGS="--workflow-profile workflow/profiles/slurm" runs it on SLURM.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installed only when the venv has no torch yet; GPU users: install your CUDA torch into .venv first.
TORCH_SPEC ?= torch==2.13.0
CORES ?= $(shell nproc)
SNAKEMAKE_ARGS ?=
# Snakemake hands out no GPUs: on a machine with some, the trainings share them out (each takes
# `processes` GPUs of its own, the Snakefile's local_gpus; workflow/scripts/gpus.py), so at most GPUS
# train at once; scoring runs beside them. A cluster (a profile or an executor in SNAKEMAKE_ARGS)
# gives every job its own. GPUS=0 lifts the limit.
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
# A Snakemake profile or executor flag; `--config profile=...` names the study's profile, not a cluster.
ON_CLUSTER = $(strip $(foreach flag,--workflow-profile --profile --executor,$(findstring $(flag),$(SNAKEMAKE_ARGS))))
GPU_SHARE = $(if $(ON_CLUSTER),,$(if $(filter-out 0,$(GPUS)),--resources local_gpus=$(GPUS)))
SNAKEMAKE = $(BIN)/snakemake --snakefile workflow/Snakefile --cores $(CORES) --rerun-incomplete $(GPU_SHARE)

KERNEL := ct2-detector

.PHONY: setup demo smoke paper gpu test lint lab clean gpu-rehearsal

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[study,dev,offline,lab]"
# jsonschema imports rfc3987-syntax when it is installed (jupyter-events asks for it), which compiles
# three Earley grammars on import: 2 s in every process that imports nbformat (each snakemake call
# and notebook job). It checks the iri formats alone, which no schema of Jupyter, nbformat or this
# project uses (python-jsonschema/jsonschema#1428); without it jsonschema leaves them unchecked.
	$(BIN)/python -m pip uninstall -y -q rfc3987-syntax
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "CT2 detector" >/dev/null
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) --config profile=params/demo.yaml $(SNAKEMAKE_ARGS)
ifeq ($(filter -n --dry-run --dryrun,$(SNAKEMAKE_ARGS)),)
	@echo "--- example: scoring a folder of images with the trained model"
	HF_HUB_OFFLINE=1 $(BIN)/python -m helpers.predict --model runs/demo/model_after \
		--images runs/demo/sample_images.csv --out reports/demo/predictions/sample_images.csv
	@echo "report: $(CURDIR)/reports/demo/index.html"
endif

smoke: setup
	HF_HUB_OFFLINE=1 $(SNAKEMAKE) --config profile=params/smoke.yaml $(SNAKEMAKE_ARGS)

paper: setup
	$(SNAKEMAKE) --config profile=params/paper.yaml $(SNAKEMAKE_ARGS)

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Two test processes: the slow tests wait on kernels and subprocesses, so two share the 2-core machine well.
# loadfile: a test module goes whole to one of them, so the shared smoke study (tests/test_smoke_study.py) runs once.
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=10

lint: setup
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts

# The GPU kit for the lent machine's image, rehearsed on this CPU in a venv of that image's packages
# (needs PyPI and a python3.12; docs/measurements.md).
gpu-rehearsal: setup
	$(BIN)/python benchmarks/gpu_kit.py wheels
	$(BIN)/python benchmarks/gpu_kit.py rehearse runs/gpu-rehearsal

clean:
	rm -rf runs reports/*/
