# Entry points of the README.  `make demo` and `make test` set up .venv first.
# The interpreter of .python-version: on PATH, or one pyenv installed but has not selected.
PYTHON_VERSION := $(shell cat .python-version)
PYTHON ?= $(firstword $(foreach candidate,python$(PYTHON_VERSION) $(wildcard $(HOME)/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)),$(shell $(candidate) -c 'import sys; print("$(candidate)" if sys.version_info[:2] == tuple(map(int, "$(PYTHON_VERSION)".split("."))) else "")' 2>/dev/null)))
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc)
DEMO_ARCHIVES := resources/demo/VOCtrainval_mini.tar resources/demo/benchmark_mini.tgz
COCO_ARCHIVES := resources/demo/val2017_mini.zip resources/demo/annotations_trainval2017_mini.zip
CUSTOM_ARCHIVES := resources/demo/shapes_mini.tar.gz
# The demo's GPU-job rules on one CPU thread each: two jobs then share the 2 cores
# (measured: 1 thread trains these tiny models as fast as 2); the mini SBD converts
# in under a second on one, where asking for every core made it wait, and vocaug
# and the run fine-tuned from it behind it, until no training ran (about 2 minutes)
DEMO_THREADS := --set-threads train_upernet=1 evaluate_upernet=1 evaluate_upernet_dataset=1 \
	evaluate_upernet_tta=1 convert_sbd=1

.PHONY: venv lock demo demo-data gpu-check test lint envs clean

venv: $(VENV)/.installed

# The whole environment from requirements.lock, every file hash-checked, in two
# steps: onedl-mmcv's PyPI release is a source archive, built against the torch
# installed before it (CPU ops where there is no CUDA; a GPU cluster's env takes
# OneDL's prebuilt CUDA wheel, see envs/train.yaml); pip caches the built
# wheel for next time.  A lock compiled from another requirements.txt stops here.
# --clear: a .venv of an earlier lock or Python keeps nothing (an old mmcv beside
# onedl-mmcv, or gigabytes of another Python's site-packages).
$(VENV)/.installed: requirements.lock requirements.txt .python-version
	@test -n "$(PYTHON)" || { echo "no Python $(PYTHON_VERSION) found (.python-version): install it, or run make PYTHON=/path/to/python$(PYTHON_VERSION)"; exit 1; }
	$(PYTHON) tools/lock.py check
	$(PYTHON) -m venv --clear $(VENV)
	$(PYTHON) tools/lock.py stage requirements.lock --except onedl-mmcv > $(VENV)/lock-1.txt
	$(PYTHON) tools/lock.py stage requirements.lock --only onedl-mmcv > $(VENV)/lock-2.txt
	$(BIN)/python -m pip install --require-hashes --no-deps -r $(VENV)/lock-1.txt
	MAX_JOBS=$(CORES) $(BIN)/python -m pip install --require-hashes --no-deps --no-build-isolation -r $(VENV)/lock-2.txt
	$(BIN)/python -m pip check
	touch $@

# Recompile requirements.lock after editing requirements.txt (then `make venv`).
# pip-compile runs in .venv: onedl-mmcv's metadata can only be read where torch is installed.
lock:
	test -x $(BIN)/pip-compile || $(BIN)/python -m pip install -c requirements.txt pip-tools
	$(BIN)/python tools/lock.py compile

# The bundled default data: small VOC/SBD/COCO archives in the real formats and a
# dataset of your own in VOC layout (shapes, for fine-tuning),
# rewritten only when a generator changes (their md5s are in config/demo.yaml).
demo-data: $(DEMO_ARCHIVES) $(COCO_ARCHIVES) $(CUSTOM_ARCHIVES)

$(DEMO_ARCHIVES) &: tools/make_mini_voc.py scripts/common/voc.py | $(VENV)/.installed
	$(BIN)/python tools/make_mini_voc.py --out resources/demo

$(CUSTOM_ARCHIVES) &: tools/make_mini_custom.py tools/make_mini_voc.py scripts/common/voc.py | $(VENV)/.installed
	$(BIN)/python tools/make_mini_custom.py --out resources/demo

$(COCO_ARCHIVES) &: tools/make_mini_coco.py tools/make_mini_voc.py scripts/common/coco.py scripts/common/voc.py | $(VENV)/.installed
	$(BIN)/python tools/make_mini_coco.py --out resources/demo

demo: demo-data
	$(BIN)/snakemake --cores $(CORES) $(DEMO_THREADS) --configfile config/demo.yaml
	$(BIN)/snakemake --configfile config/demo.yaml --report results/demo/report.html

# The GPU check on this machine (its GPUs, else tiny on the CPU), for the study's
# config or another: make gpu-check CONFIG=config/demo.yaml.  On a cluster, run it
# as GPU jobs instead: snakemake gpu_check --profile profiles/slurm.
CONFIG ?= config/config.yaml
gpu-check: venv
	$(BIN)/snakemake gpu_check --cores $(CORES) --configfile $(CONFIG)

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/python tools/render_envs.py --check

# Rewrite envs/*.yaml after a change to requirements.txt.
envs:
	$(PYTHON) tools/render_envs.py

clean:
	rm -rf resources results logs .snakemake
