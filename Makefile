# Two commands: `make demo` and `make test`. Each creates or refreshes .venv,
# installs the project into it, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests also run build-lmdb --engine ray on a local Ray instance: the extra is
# large (~500 MB), so only `make test` installs it, not `make demo`.
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(RAY_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/feedstock demo

test: $(RAY_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Benchmarks compare against PyTorch's DataLoader (the CPU wheel is an extra) and Ray.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,torch,ray]'
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
