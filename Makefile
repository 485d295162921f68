# The two commands of the README: `make demo` and `make test`.
# Each creates .venv if there is none and installs what is needed; a torch that is
# already installed is kept, otherwise the CPU build torch==2.13.0 is installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.monokd-installed

.PHONY: setup demo test docs bench clean

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/monokd demo --out runs/demo

test: setup
	$(PY) -m pytest

docs: setup
	$(PY) -m monokd.viz.docs_pictures --out docs/pictures

# The speed benchmarks. The accuracy ones train models for hours on a CPU and take run
# folders as arguments: run benchmarks/add_seeds.py and benchmarks/depth_error.py by hand.
SPEED_BENCHMARKS = synth_speed eval_speed train_speed distill_overhead

bench: setup
	for b in $(SPEED_BENCHMARKS); do $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf runs build *.egg-info
