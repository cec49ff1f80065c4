# Two entry points for a fresh machine with Python 3.9-3.11; each builds its own
# virtual environment under .venv/ from pyproject.toml.
#   make example   install the package and run examples/train_dnn_classifier.py
#   make test      install the package with its test extra and run the test suite
#   make bench     the same environment; run benchmarks/bench_history.py (BENCH_ARGS=...)

# The first Python on PATH that TensorFlow 2.13-2.15 supports.
PYTHON ?= $(shell for p in python3.11 python3.10 python3.9 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 11))' 2>/dev/null && echo $$p && break; \
	done)

EXAMPLE_VENV := .venv/example
TEST_VENV := .venv/test
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: example test bench clean check-python

check-python:
	@test -n "$(PYTHON)" || { echo "Python 3.9, 3.10 or 3.11 is required (TensorFlow 2.13-2.15 supports no other); set PYTHON=/path/to/python3.x"; exit 1; }

$(EXAMPLE_VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(EXAMPLE_VENV)
	$(EXAMPLE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EXAMPLE_VENV)/bin/python -m pip install --quiet '.[estimator]'
	touch $@

$(TEST_VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/python -m pip install --quiet -e '.[test,estimator]'
	touch $@

example: $(EXAMPLE_VENV)/.installed
	$(EXAMPLE_VENV)/bin/python examples/train_dnn_classifier.py

test: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

bench: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/python benchmarks/bench_history.py $(BENCH_ARGS)

clean:
	rm -rf .venv build *.egg-info
