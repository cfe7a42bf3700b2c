# wsk: the two commands a new user needs are 'make demo' and 'make test'.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Deployment tools call ansible-playbook: they find it on PATH, in the venv.
VENV_PATH := PATH=$(CURDIR)/$(BIN):$$PATH
# PACKAGE:COMMAND is skipped where COMMAND exists already; redis-server also runs the
# tests' sentinels (redis-server --sentinel)
# chromium: the browser tests/test_page.py drives (Playwright, pointed at it)
OS_PACKAGES := redis-server haproxy curl openssl nodejs:node npm:npm chromium:chromium
VENV_PACKAGE := $(shell $(PYTHON) -c 'import ensurepip' 2>/dev/null || echo python3-venv)

.PHONY: help demo destroy demo-local demo-local-stop test lint pytest ansible-lint yamllint \
	molecule bench os-packages clean test-all vendor

help:
	@echo "make demo      deploy a cluster into local containers and say how to connect to it"
	@echo "make destroy   remove the demo cluster"
	@echo "make test      install what the tests need and run them all (Molecule: $(MOLECULE_SCENARIOS))"
	@echo "make test-all  the same with every Molecule scenario ($(MOLECULE_ALL_SCENARIOS))"
	@echo "make bench     measure wsk beside the Node socket.io cluster (docs/benchmarks.md)"
	@echo "make demo-local / demo-local-stop   the same cluster as plain processes on loopback"

os-packages:
	scripts/install-os-packages.sh $(OS_PACKAGES) $(VENV_PACKAGE)

# every package at the version the suite tested (constraints.txt, scripts/lock.sh)
$(BIN)/wsk-server: pyproject.toml constraints.txt | os-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	@touch $@

$(BIN)/molecule: requirements-dev.txt constraints.txt | $(BIN)/wsk-server
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt
	@touch $@

NODE_MODULES := tests/node/node_modules/.package-lock.json bench/node/node_modules/.package-lock.json

%/node_modules/.package-lock.json: %/package.json %/package-lock.json | os-packages
	npm ci --prefix $* --no-audit --no-fund --loglevel=error

demo: $(BIN)/wsk-server $(BIN)/molecule
	$(VENV_PATH) scripts/demo-cluster.sh up

destroy: $(BIN)/molecule
	$(VENV_PATH) scripts/demo-cluster.sh down

demo-local: os-packages $(BIN)/wsk-server
	scripts/demo-local.sh

demo-local-stop:
	scripts/demo-local.sh stop

lint: $(BIN)/wsk-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# includes a smoke run of the benchmark, which checks only that its result is well formed;
# the redis role's ACL module runs on Ansible's module_utils (requirements-dev.txt)
pytest: os-packages $(BIN)/wsk-server $(BIN)/molecule $(NODE_MODULES)
	$(BIN)/pytest

bench: os-packages $(BIN)/wsk-server $(NODE_MODULES)
	$(BIN)/python -m bench --wait-quiet 300

ansible-lint: $(BIN)/molecule
	$(VENV_PATH) ansible-lint

yamllint: $(BIN)/molecule
	$(BIN)/yamllint -s .

# The scenarios `make test` runs, and those `make test-all` runs: each full run takes
# 10-15 minutes on a 2-core machine, so CI runs Debian 12 (default) and test-all adds
# Debian 13 and ha (Redis under Sentinel failing over, docs/redis-ha.md).
MOLECULE_SCENARIOS ?= default
MOLECULE_ALL_SCENARIOS ?= default debian13 ha

# the verifier runs Node's socket.io-client of tests/node against the cluster too;
# the scenarios share container names and ports: one after the other
molecule: $(BIN)/wsk-server $(BIN)/molecule $(NODE_MODULES)
	$(VENV_PATH) scripts/docker-engine.sh
	set -e; for scenario in $(MOLECULE_SCENARIOS); do \
	  rm -f /tmp/wsk-molecule-verify-$$scenario.xml; \
	  $(VENV_PATH) molecule test -s $$scenario || \
	  { $(BIN)/python scripts/verify-failures.py /tmp/wsk-molecule-verify-$$scenario.xml; exit 1; }; \
	done

# the live page's browser bundle, from web/package-lock.json into server/wsk/static/ (commit it)
vendor: os-packages
	scripts/vendor-web.sh

test: lint pytest ansible-lint yamllint molecule

test-all:
	$(MAKE) test MOLECULE_SCENARIOS="$(MOLECULE_ALL_SCENARIOS)"

clean:
	rm -rf $(VENV) tests/node/node_modules bench/node/node_modules web/node_modules .demo-local tests/artifacts
