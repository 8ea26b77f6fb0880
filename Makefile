# Two commands a newcomer needs (README): `make demo` and `make test`.
# Everything installs into .venv/ at the repository root (other tools rely on that path).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision are pinned together, in the same pip command as what depends on them.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
REAL_METHOD ?= mil-uninorm
export LUS_REAL_CLIPS ?= $(abspath ../shared/data/real-clips)
# One thread per library: on 2 cores oversubscribed pools run 10-30x slower.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: setup serve-env demo test lint check-install check-runtime models clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS) -e '.[train,dev,serve]'
	touch $@

setup: $(VENV)/.installed

# The Triton server's own venv (PyTriton 0.7 needs numpy<2; docs/serving.md); the lus-serve tests use it.
SERVE_VENV := $(VENV)/serve
$(SERVE_VENV)/bin/python: $(VENV)/.installed
	$(PY) -m engines.triton_server setup-env $(SERVE_VENV)

serve-env: $(SERVE_VENV)/bin/python

demo: setup
	$(PY) -m stream.demo

test: setup serve-env lint typecheck check-install
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# mypy over the runtime packages (configuration: [tool.mypy] in pyproject.toml).
.PHONY: typecheck
typecheck: setup
	$(VENV)/bin/mypy stream engines synth

# lus-stream as a user installs it: a wheel into a clean venv without extras; torch-free imports, `pip check`
# clean, and `lus-stream --clip` on a real clip from another folder scores every frame with the models
# that came with the package (tools/check_install.py says each step).
check-install: setup
	$(PY) tools/check_install.py --python $(PYTHON)

check-runtime: check-install

clean:
	rm -rf $(VENV) build *.egg-info

# The real-scan table (README "What the models know about real scans"). Needs ../shared/data/covid-blues;
# about 100 CPU-minutes on 2 cores (each fold of each run ~5 min); resumable: finished folds are kept.
COVID_BLUES ?= $(abspath ../shared/data/covid-blues)
REAL_CV := runs/real-cv
REAL_CV_ARGS := --data data/covid-blues --cache runs/real/covid-blues-128.npz --out $(REAL_CV) --steps 800 --threads 2
.PHONY: real-cv real-models
data/covid-blues/dataset.json:
	$(VENV)/bin/lus-train import $(COVID_BLUES) --out data/covid-blues --force

real-cv: setup data/covid-blues/dataset.json
	# the cheaper protocol (folds 0 and 1) for the variants, the full 5 folds for the baseline and the chosen method
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods inherit,mil-uninorm,mil-mean --only-folds 0,1
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods mil-uninorm --tag=-scratch --set pretrained=none --only-folds 0,1
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods inherit,$(REAL_METHOD)
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods $(REAL_METHOD) --tag=-cnn --set arch=cnn-sord --only-folds 0,1
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods $(REAL_METHOD) --tag=-8x4 --set clips_per_step=8 \
	    --set frames_per_clip=4 --only-folds 0,1
	$(VENV)/bin/lus-train real-cv $(REAL_CV_ARGS) --methods $(REAL_METHOD) --tag=-appearance --set appearance_p=0.8 \
	    --only-folds 0,1

# The shipped real-scan frame model and aggregator (models/frame/), trained on all 48 patients.
real-models: real-cv
	$(VENV)/bin/lus-train real-fit --data data/covid-blues --cache runs/real/covid-blues-128.npz --cv $(REAL_CV) \
	    --run $(REAL_METHOD) --out runs/real-final --export models/frame --version 2.0.0
