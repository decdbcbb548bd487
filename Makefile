# Two commands: `make demo` and `make test`. Each creates or refreshes .venv,
# installs the project into it, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
# A second, small venv at the oldest protobuf runtimes pycaffe is found with: Ubuntu 22.04's
# python3-protobuf 3.12.4 (the declared floor) and Debian 12's 3.21.12 (= pip 4.21.12).
FLOOR_VENV ?= build/venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
FLOOR_STAMP := $(FLOOR_VENV)/.installed
FLOOR_PROTOBUF := 3.12.4 4.21.12
FLOOR_TESTS := tests/test_caffe_pb.py tests/test_compat_imports.py

.PHONY: demo test test-floor lint bench venv clean gpu-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests also run build-lmdb --engine ray on a local Ray instance and train through
# feedstock.torch.DataLoader against torch's own (the CPU wheel): both extras are large
# (~500 MB each), so only `make test` installs them, not `make demo`.
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,ray,torch]'
	touch $(RAY_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/feedstock demo

test: $(RAY_STAMP) lint test-floor
	$(PY) -m pytest -q -p no:cacheprovider

# ruff (pyflakes, pycodestyle, bugbear, import order) and mypy, as configured in pyproject.toml
lint: $(STAMP)
	$(PY) -m ruff check feedstock tests bench
	$(PY) -m mypy

$(FLOOR_STAMP): pyproject.toml
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install --quiet --upgrade pip
	$(FLOOR_PY) -m pip install --quiet -e '.[test]' 'protobuf==$(firstword $(FLOOR_PROTOBUF))'
	touch $(FLOOR_STAMP)

# The Datum/BlobProto codec and the import checks, once per protobuf runtime.
test-floor: $(FLOOR_STAMP)
	for v in $(FLOOR_PROTOBUF); do \
	  $(FLOOR_PY) -m pip install --quiet "protobuf==$$v" && \
	  $(FLOOR_PY) -c "import google.protobuf as p, sys; sys.exit(None if p.__version__ == '$$v' else 'protobuf ' + p.__version__ + ', wanted $$v')" && \
	  $(FLOOR_PY) -m pytest -q -p no:cacheprovider $(FLOOR_TESTS) || exit 1; \
	done

# Benchmarks compare against PyTorch's DataLoader (the CPU wheel is an extra) and Ray.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,torch,ray]'
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# Everything GPU (cupy trainer vs numpy, pinned slots, DeviceFeeder overlap, torch batches) in one
# command, minutes: run it first on any machine with a GPU. The gpu extra (cupy) is installed only
# where nvidia-smi sees a GPU; elsewhere (CI) the check says there is none and exits 0.
gpu-check: $(STAMP)
	@if nvidia-smi -L >/dev/null 2>&1; then $(PY) -m pip install --quiet -e '.[gpu,torch]'; fi
	$(PY) -m feedstock.gpu_check

clean:
	rm -rf $(VENV) $(FLOOR_VENV) build *.egg-info
