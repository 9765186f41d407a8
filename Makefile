# The two commands of README.md. Each one sets up everything it needs on a fresh machine
# (system packages, .venv) before it runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup lint bench

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/ltchm demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/forward.py
