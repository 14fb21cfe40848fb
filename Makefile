# emp.deploy: the two entry points are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
VENV_218 := $(ROOT)/.venv-2.18
VENV_BENCH := $(ROOT)/.venv-bench
VENV_SANITY := $(ROOT)/.venv-sanity
BIN := $(VENV)/bin
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export PATH := $(BIN):$(PATH)
PYTEST_ARGS ?=

.PHONY: help demo test venv system-deps sanity lint unit integration molecule build compat-2.18 bench clean sandbox-up sandbox-down sandbox-status

help:
	@echo "make demo   - run the main job against the embedded sandbox"
	@echo "make test   - install everything and run sanity, lint, unit, integration, molecule"

$(VENV)/.stamp: requirements.txt requirements/dev.txt requirements/constraints.txt
	test -x $(BIN)/python || $$($(ROOT)/tools/find-python) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements/dev.txt -c requirements/constraints.txt
	touch $@

venv: $(VENV)/.stamp

$(VENV_218)/.stamp: requirements/compat-2.18.txt requirements.txt
	test -x $(VENV_218)/bin/python || $$($(ROOT)/tools/find-python) -m venv $(VENV_218)
	$(VENV_218)/bin/python -m pip install -q --disable-pip-version-check -r requirements/compat-2.18.txt
	touch $@

$(VENV_SANITY)/.stamp: requirements/sanity.txt
	test -x $(VENV_SANITY)/bin/python || $$($(ROOT)/tools/find-python) -m venv $(VENV_SANITY)
	$(VENV_SANITY)/bin/python -m pip install -q --disable-pip-version-check -r requirements/sanity.txt
	touch $@

$(VENV_BENCH)/.stamp: requirements/bench.txt requirements.txt
	test -x $(VENV_BENCH)/bin/python || $$($(ROOT)/tools/find-python) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/python -m pip install -q --disable-pip-version-check -r requirements/bench.txt
	touch $@

system-deps:
	$(ROOT)/tools/system-deps

demo: system-deps venv
	$(BIN)/ansible-playbook $(ROOT)/playbooks/demo.yml

test: system-deps venv sanity lint unit integration molecule build compat-2.18
	@echo "make test: all quality gates passed"

sanity: system-deps $(VENV_SANITY)/.stamp
	$(ROOT)/tools/sanity

lint: venv
	cd $(ROOT) && $(BIN)/ansible-lint --profile production

unit: venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: system-deps venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

molecule: system-deps venv
	cd $(ROOT) && for s in $$(ls molecule); do $(BIN)/molecule test -s $$s; done

build: venv
	$(ROOT)/tools/build-check

compat-2.18: system-deps $(VENV_218)/.stamp
	cd $(ROOT) && $(VENV_218)/bin/python -m pytest tests/unit $(PYTEST_ARGS) && $(VENV_218)/bin/python -m pytest tests/integration -m compat $(PYTEST_ARGS)

bench: system-deps venv $(VENV_BENCH)/.stamp
	for b in $(ROOT)/bench/*/run; do $$b; done

sandbox-up: venv system-deps
	cd $(ROOT) && $(BIN)/python -m sandbox up

sandbox-down: venv system-deps
	cd $(ROOT) && $(BIN)/python -m sandbox down

sandbox-status: venv system-deps
	cd $(ROOT) && $(BIN)/python -m sandbox status

clean:
	rm -rf $(ROOT)/.tmp $(ROOT)/deploy-reports $(ROOT)/emp-deploy-*.tar.gz
