# Two commands a newcomer needs (README): `make demo` and `make test`.
# Everything installs into .venv/ at the repository root (other tools rely on that path).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision are pinned together, in the same pip command as what depends on them.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
export LUS_REAL_CLIPS ?= $(abspath ../shared/data/real-clips)
# One thread per library: on 2 cores oversubscribed pools run 10-30x slower.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: setup demo test lint check-runtime models clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS) -e '.[train,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m stream.demo

test: setup lint check-runtime
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# The runtime must install and import without torch: a clean venv, no extras.
check-runtime:
	rm -rf /tmp/lus-runtime-venv
	$(PYTHON) -m venv /tmp/lus-runtime-venv
	/tmp/lus-runtime-venv/bin/pip install -q .
	cd /tmp && /tmp/lus-runtime-venv/bin/python -c "import importlib.util, stream, engines, synth; \
	assert importlib.util.find_spec('torch') is None, 'torch leaked into the runtime install'; \
	print('runtime install OK: stream, engines and synth import without torch')"

clean:
	rm -rf $(VENV) build *.egg-info
