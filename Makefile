# Everything a fresh machine needs, from python3 and make alone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV := .venv-checkov/bin/checkov
EMULATOR_PORT ?= 4566
EMULATOR_URL := http://127.0.0.1:$(EMULATOR_PORT)
# The local inventory reads these; a user's own AWS_ENDPOINT_URL wins.
export AWS_ENDPOINT_URL ?= $(EMULATOR_URL)
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/sbin
export ANSIBLE_HOME := $(CURDIR)/.run/ansible-home
# Placeholder credentials for plain boto3 tools talking to the emulator (Ansible gets them from the inventory).
EMULATOR_CLIENT := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

.PHONY: demo test lint node-tools venv emulator emulator-stop teardown bench report clean

## demo: provision on the embedded emulator, send a burst, scale out, consume, scale in to zero, report
demo: venv emulator
	$(BIN)/ansible-playbook site.yml
	$(EMULATOR_CLIENT) $(BIN)/python tools/scale_test.py --messages 120 --period-seconds 1 --out .run/demo
	$(EMULATOR_CLIENT) $(BIN)/python tools/stack_summary.py
	@echo "Report and plots: .run/demo/REPORT.md, .run/demo/report-*.png"

## test: linters, then every test (playbooks on private emulators, booted nodes where root)
test: venv lint node-tools
	$(BIN)/pytest

# What booted test nodes need (tools/node.py); installed only as root, elsewhere those tests skip.
node-tools:
	@if [ "$$(id -u)" -eq 0 ] && ! { command -v systemd-nspawn && command -v debootstrap && command -v zstd; } >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap systemd-container zstd; \
	fi

lint: venv $(CHECKOV)
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline --profile production
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r files tools collections/ansible_collections/sqs_fleet
	$(BIN)/python tools/lint_policies.py
	$(CHECKOV) --quiet --compact --skip-download --framework ansible -d . --external-checks-dir checks/checkov \
	  --skip-path .venv --skip-path .venv-checkov --skip-path .run --skip-path tests --skip-path molecule

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	touch $@

$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q -r requirements-checkov.txt
	touch $@

## emulator: start the embedded moto server on 127.0.0.1 (idempotent); emulator-stop: stop it
emulator: venv
	$(BIN)/python tools/emulator.py start --port $(EMULATOR_PORT)
emulator-stop:
	$(BIN)/python tools/emulator.py stop

## teardown: remove everything site.yml made
teardown: venv
	$(BIN)/ansible-playbook teardown.yml

## bench: benchmarks, printed as tables with their conditions
bench: venv
	cd bench && ../$(BIN)/python playbooks.py && ../$(BIN)/python sqs_clients.py

clean: emulator-stop
	rm -rf $(VENV) .venv-checkov .run

## report: the scale-out / scale-in plan on the emulator, workers as booted nodes where they can boot (root),
## else as local processes; writes REPORT.md, report-data.json and the plots
# (Booted nodes run on a stack of their own lab, so only local processes need site.yml here.)
report: venv emulator node-tools
	workers=$$($(BIN)/python tools/node.py check >/dev/null && echo nodes || echo processes); \
	if [ "$$workers" = processes ]; then $(BIN)/ansible-playbook site.yml; fi && \
	$(BIN)/ansible-playbook scale_test.yml -e messages=200 -e period_seconds=10 -e workers=$$workers
