# Everything a fresh machine needs, from python3 and make alone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV := .venv-checkov/bin/checkov
# What ships to workers runs on the nodes' Python 3.9 and later: a 3.9 interpreter, where one is installed,
# runs it in the tests (pyenv's, or one on PATH).
PYTHON39 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9) $(shell command -v python3.9))
EMULATOR_PORT ?= 4566
EMULATOR_URL := http://127.0.0.1:$(EMULATOR_PORT)
# The local inventory reads these; a user's own AWS_ENDPOINT_URL wins.
export AWS_ENDPOINT_URL ?= $(EMULATOR_URL)
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/sbin
export ANSIBLE_HOME := $(CURDIR)/.run/ansible-home
# Placeholder credentials for the controller tools talking to the emulator (Ansible gets them from the inventory).
EMULATOR_CLIENT := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
PYTEST := $(BIN)/pytest

.PHONY: demo test test-unit test-lint test-emulator test-nodes lint node-tools py39 venv emulator emulator-stop \
	teardown bench report role-docs clean

## demo: provision on the embedded emulator, send a burst, scale out, consume, scale in to zero, report
demo: venv emulator
	@# amazon.aws.iam_role announces on every run a change of its own return value, which no option of ours can
	@# silence; every other deprecation is fixed at its source, so the demo's output turns them off.
	ANSIBLE_DEPRECATION_WARNINGS=false $(BIN)/ansible-playbook site.yml
	$(EMULATOR_CLIENT) $(BIN)/sqs-fleet-scale-test --messages 120 --period-seconds 1 --out .run/demo
	$(EMULATOR_CLIENT) $(BIN)/sqs-fleet-summary

## test: linters, then every tier of tests (unit, lint, emulator, booted nodes where root), then each
## benchmark once in its smoke mode
test: venv lint node-tools py39
	$(PYTEST)
	$(MAKE) --no-print-directory bench BENCH_FLAGS=--smoke

## test-unit, test-lint, test-emulator, test-nodes: one tier only
test-unit: venv
	$(PYTEST) -m unit
test-lint: venv py39 $(CHECKOV)
	$(PYTEST) -m lint
test-emulator: venv py39
	$(PYTEST) -m emulator
test-nodes: venv node-tools
	$(PYTEST) -m nodes

# What booted test nodes need (sqs_fleet.lab.node); installed only as root, elsewhere those tests skip.
node-tools:
	@if [ "$$(id -u)" -eq 0 ] && ! { command -v systemd-nspawn && command -v debootstrap && command -v zstd; } >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap systemd-container zstd; \
	fi

# A Python 3.9 with boto3, the oldest the worker scripts support: it type-checks them as 3.9 (make lint) and
# runs them (tests/emulator/test_python39.py).
py39: .venv-py39/.installed
.venv-py39/.installed:
	@if [ -n "$(PYTHON39)" ]; then \
	  $(PYTHON39) -m venv .venv-py39 && .venv-py39/bin/pip install -q boto3 mypy && touch $@; \
	else echo "py39: no Python 3.9 found; the Python 3.9 test will skip"; fi

lint: venv py39 $(CHECKOV)
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline --profile production
	$(BIN)/ruff check .
	$(BIN)/mypy
	@if [ -x .venv-py39/bin/mypy ]; then .venv-py39/bin/mypy --python-version 3.9 --strict --ignore-missing-imports files; \
	else echo "lint: no Python 3.9 venv: files/ not type-checked as Python 3.9"; fi
	$(BIN)/bandit -q -c pyproject.toml -r files src collections/ansible_collections/sqs_fleet
	$(BIN)/sqs-fleet-lint-policies
	$(CHECKOV) --quiet --compact --skip-download --framework ansible -d . --external-checks-dir checks/checkov \
	  --skip-path .venv --skip-path .venv-checkov --skip-path .venv-py39 --skip-path .run --skip-path tests \
	  --skip-path molecule

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q -r requirements-checkov.txt
	touch $@

## emulator: start the embedded moto server on 127.0.0.1 (idempotent); emulator-stop: stop it
emulator: venv
	$(BIN)/sqs-fleet-emulator start --port $(EMULATOR_PORT)
emulator-stop:
	@if [ -x $(BIN)/sqs-fleet-emulator ]; then $(BIN)/sqs-fleet-emulator stop; fi

## teardown: remove everything site.yml made
teardown: venv
	$(BIN)/ansible-playbook teardown.yml

## bench: benchmarks, printed as tables with their conditions (BENCH_FLAGS=--smoke: each once, small)
bench: venv
	$(BIN)/python -m bench.playbooks $(BENCH_FLAGS)
	$(BIN)/python -m bench.sqs_clients $(BENCH_FLAGS)
	$(BIN)/python -m bench.node_boot $(BENCH_FLAGS)
	$(BIN)/python -m bench.redis_broker $(BENCH_FLAGS)
	$(BIN)/python -m bench.planner $(BENCH_FLAGS)

clean: emulator-stop
	rm -rf $(VENV) .venv-checkov .venv-py39 .run

## report: the scale test of record on the emulator: where nodes can boot (root), every instance a booted node
## (stock and baked images, SQS and Redis, ticks in real time), the previous design beside the current one with
## local processes; elsewhere local processes only, and the report says why. Writes REPORT.md and report/.
# (Booted nodes run on stacks of their own labs; site.yml here is the stack of the local processes' comparison.)
report: venv emulator node-tools
	$(BIN)/ansible-playbook site.yml
	if $(BIN)/sqs-fleet-node check >/dev/null; then \
	  $(BIN)/ansible-playbook scale_test.yml -e messages=200 -e workers=nodes -e images=stock,baked -e redis=true \
	    -e real_time=true -e compare=true -e period_seconds=2; \
	else $(BIN)/ansible-playbook scale_test.yml -e messages=200 -e workers=processes -e compare=true; fi
