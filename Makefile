# One-command entry points. `make demo` and `make test` each set everything up from scratch.
VENV ?= .venv
PY := $(VENV)/bin/python
ACCELERATE := $(VENV)/bin/accelerate

.PHONY: setup demo test test-fast test-long lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# -q: a wrong flag prints skinacc's one-line error, not accelerate's traceback of the launcher.
# The thread count is the one launch setting accelerate cannot read from a config file.
THREADS ?= $(shell nproc 2>/dev/null || echo 1)

demo: setup
	$(ACCELERATE) launch -q --config_file accelerate_configs/cpu.yaml --num_cpu_threads_per_process $(THREADS) \
		recipes/train.py --config recipes/configs/demo.yaml --overwrite_output_dir

test: setup
	$(PY) -m ruff check skinacc recipes tests benchmarks
	$(PY) -m ruff format --check skinacc recipes tests benchmarks
	$(PY) -m pytest --durations=15

# pyproject's addopts leave out the tests marked long; a -m given here replaces that, so repeat it.
test-fast: setup
	$(PY) -m pytest -m "not slow and not long"

# Minutes each: the GPU-check rehearsal and real-data accuracy. CI runs them after `make test`.
test-long: setup
	$(PY) -m pytest -m long

lint: setup
	$(PY) -m ruff check skinacc recipes tests benchmarks
	$(PY) -m ruff format --check skinacc recipes tests benchmarks

clean:
	rm -rf outputs .pytest_cache .ruff_cache
