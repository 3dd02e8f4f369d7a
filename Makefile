# golf — the two commands a newcomer needs:
#   make run    the whole pipeline on the smoke preset (CPU, a few minutes)
#   make test   the test suite (CPU, under ~10 minutes)
# Both create .venv on first use: torch 2.13.0 (CPU build) first, then the project with its test extras.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Not $(abspath …)/$(wildcard …): make splits their arguments at spaces, so a checkout under a path
# with a space would silently lose the mirror. The shell sees the path as one quoted word.
MIRROR := $(shell cd "$(CURDIR)/.." && pwd)/shared/fineweb-sample

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export HF_HUB_DISABLE_TELEMETRY := 1
# Use the local FineWeb sample as the data mirror when it exists, the hub otherwise.
ifneq ($(shell test -f "$(MIRROR)/datasets/manifest.json" && echo yes),)
export GOLF_DATA__MIRROR ?= $(MIRROR)
endif

.PHONY: run test lint bench clean-venv

$(BIN)/golf: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(BIN)/golf

run: $(BIN)/golf
	$(BIN)/golf run --preset smoke

test: $(BIN)/golf
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(BIN)/golf
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/golf
	$(BIN)/golf bench model
	$(BIN)/golf bench pack
	$(BIN)/golf bench tokenise

clean-venv:
	rm -rf $(VENV)
