# Entry points for newcomers: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: venv demo test lint format docs bench examples clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

# One stamp file per set of extras, so each is installed once.
$(VENV)/.installed-%: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e '.[$*]'
	touch $@

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-examples
	$(PY) examples/digits_classifier.py --output examples/output

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check theanets tests examples benchmarks scripts
	$(VENV)/bin/ruff format --check theanets tests examples benchmarks

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format theanets tests examples benchmarks
	$(VENV)/bin/ruff check --fix theanets tests examples benchmarks

docs: $(VENV)/.installed-docs $(VENV)/.installed-examples
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

examples: $(VENV)/.installed-examples
	$(PY) -m pytest -q tests/test_examples.py

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info docs/_build examples/output
