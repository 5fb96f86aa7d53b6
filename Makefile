# Entry points of the README.  `make demo` and `make test` set up .venv first.
PYTHON ?= python$(shell cat .python-version)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc)
DEMO_ARCHIVES := resources/demo/VOCtrainval_mini.tar resources/demo/benchmark_mini.tgz

.PHONY: venv demo demo-data test lint envs clean

venv: $(VENV)/.installed

# One idempotent command for the pinned stack (requirements.txt).  mmcv 2.1.0
# has no wheel on PyPI: it is built against the torch installed just before it
# (CPU ops where there is no CUDA); pip caches the built wheel for next time.
$(VENV)/.installed: requirements.txt .python-version
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c requirements.txt pip setuptools wheel ninja
	$(BIN)/python -m pip install -c requirements.txt torch torchvision numpy
	MAX_JOBS=$(CORES) $(BIN)/python -m pip install -c requirements.txt --no-build-isolation mmcv
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip check
	touch $@

# The bundled default data: small VOC/SBD archives in the real formats,
# rewritten only when the generator changes (their md5s are in config/demo.yaml).
demo-data: $(DEMO_ARCHIVES)

$(DEMO_ARCHIVES) &: scripts/make_mini_voc.py | $(VENV)/.installed
	$(BIN)/python scripts/make_mini_voc.py --out resources/demo

demo: demo-data
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

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
