# wsk: the two commands a new user needs are 'make demo' and 'make test'.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PACKAGE:COMMAND is skipped where COMMAND exists already
OS_PACKAGES := redis-server haproxy curl openssl nodejs:node npm:npm
VENV_PACKAGE := $(shell $(PYTHON) -c 'import ensurepip' 2>/dev/null || echo python3-venv)

.PHONY: help demo demo-local demo-local-stop test lint pytest os-packages clean

help:
	@echo "make demo   bring a working cluster up and say how to connect to it"
	@echo "make test   install what the tests need and run them all"

os-packages:
	scripts/install-os-packages.sh $(OS_PACKAGES) $(VENV_PACKAGE)

$(BIN)/wsk-server: pyproject.toml | os-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

tests/node/node_modules/.package-lock.json: tests/node/package.json tests/node/package-lock.json | os-packages
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error

demo: demo-local

demo-local: os-packages $(BIN)/wsk-server
	scripts/demo-local.sh

demo-local-stop:
	scripts/demo-local.sh stop

lint: $(BIN)/wsk-server
	$(BIN)/ruff check server tests
	$(BIN)/ruff format --check server tests

pytest: os-packages $(BIN)/wsk-server tests/node/node_modules/.package-lock.json
	$(BIN)/pytest

test: lint pytest

clean:
	rm -rf $(VENV) tests/node/node_modules .demo-local
