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
# Integration tests mostly wait (soak windows, services starting), so they run in parallel: three
# workers (510 tests took 13.5 min with three on a 2-core machine; the sandboxes sleep more than they compute),
# each test file kept on one worker (module-scoped sandboxes and servers are not shared across
# processes; every test starts its own servers on free ports).
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile
# emp.deploy.* resolves to this checkout through this link (ansible.cfg: collections_path); it is
# created, not committed (see tools/collection-link). Order-only prerequisite of every target that
# runs Ansible.
COLLECTION_LINK := $(ROOT)/collections/ansible_collections/emp/deploy

.PHONY: help plan demo demo-nogo demo-watch demo-real demo-predeploy demo-sandbox test venv system-deps sanity lint typecheck unit integration molecule build compat-2.18 bench ee-context clean sandbox-up sandbox-down sandbox-status

help:
	@echo "make demo   - run the main job against the embedded sandbox"
	@echo "make plan   - print the deployment plan for the sandbox inventory (touches no host; docs/safety.md)"
	@echo "make demo-nogo - the same with a broken webhook release: NO-GO and automatic rollback"
	@echo "make demo-watch - deploy (GO), then a 3-minute watch: a webhook fault, the alert, the webhooks roll back"
	@echo "make demo-real EMP_SOURCE=<checkout> - build the real EMP API and webhook service, gate them (GO, then a NO-GO)"
	@echo "make demo-predeploy - the checklist's pre-deployment tests against the sandbox (all automated lines GO)"
	@echo "make test   - install everything and run sanity, lint, typecheck, unit, integration, molecule"

$(VENV)/.stamp: requirements.txt requirements/dev.txt requirements/constraints.txt
	test -x $(BIN)/python || $$($(ROOT)/tools/find-python) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements/dev.txt -c requirements/constraints.txt
	touch $@

venv: $(VENV)/.stamp | $(COLLECTION_LINK)

$(COLLECTION_LINK):
	$(ROOT)/tools/collection-link

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

# make demo: a fresh sandbox at the initial 1.0.0 releases, then the real main job deploys 1.1.0
# through every phase (GO). make demo-nogo ships the webhook release whose routes answer 404:
# phases 1-2 GO, webhooks NO-GO, the callback rolls back only the webhooks, exit code 2.
DEMO_STATE ?= $(ROOT)/.tmp/sandbox
DEMO_ENV := EMP_SANDBOX_STATE=$(DEMO_STATE) ANSIBLE_PIPELINING=1

demo-sandbox: system-deps venv
	cd $(ROOT) && $(BIN)/python -m sandbox --state-dir $(DEMO_STATE) down
	rm -rf $(DEMO_STATE)
	cd $(ROOT) && $(BIN)/python -m sandbox --state-dir $(DEMO_STATE) up

# the plan of deploy.yml for the sandbox inventory: phases, hosts, releases, gates, rollback plays,
# budgets and what is unsafe; runs nothing on any host (docs/safety.md)
plan: venv
	cd $(ROOT) && $(DEMO_ENV) $(BIN)/ansible-playbook deploy.yml -e emp_plan=true

# make demo also shows the plan first (touches no host) and verifies the run's record after it (hash chain).
ifndef DEMO_RUN
DEMO_RUN := demo-$(shell date -u +%Y%m%dT%H%M%SZ)
endif

demo: demo-sandbox
	cd $(ROOT) && $(DEMO_ENV) $(BIN)/ansible-playbook deploy.yml -e emp_plan=true
	cd $(ROOT) && $(DEMO_ENV) EMP_DEPLOY_RUN_ID=$(DEMO_RUN) $(BIN)/ansible-playbook deploy.yml
	cd $(ROOT) && $(BIN)/ansible-playbook playbooks/verify.yml -e emp_run_dir=$(ROOT)/deploy-reports/$(DEMO_RUN)

demo-nogo: demo-sandbox
	cd $(ROOT) && rc=0 && $(DEMO_ENV) $(BIN)/ansible-playbook deploy.yml -e emp_sandbox_webhook_version=1.1.0-404 || rc=$$?; \
	  echo "ansible-playbook deploy.yml exited with $$rc (2 = an enforced gate said NO-GO)"; \
	  echo "webhook current: $$(readlink $(DEMO_STATE)/releases/webhook/current)"; test $$rc -eq 2

# make demo-watch: deploy (GO), then the watch after GO compressed to a 3-minute window (alerts every 5 s,
# "hourly" every 30 s, follow mode). About 40 s in, a webhook fault makes half the deliveries fail: the
# alert fires, the callback rolls back only the webhooks (which clears the fault) and the watch exits 2.
# The target succeeds only when exactly that happened (tools/watch_outcome.py reads the run's summary.json).
ifndef DEMO_WATCH_RUN
DEMO_WATCH_RUN := demo-watch-$(shell date -u +%Y%m%dT%H%M%SZ)
endif
DEMO_WATCH_FAULT_AFTER ?= 40
DEMO_WATCH_VARS := -e emp_watch_window=3m -e emp_watch_alert_interval=5s -e emp_watch_hourly_interval=30s

demo-watch: demo-sandbox
	cd $(ROOT) && $(DEMO_ENV) EMP_DEPLOY_RUN_ID=$(DEMO_WATCH_RUN) $(BIN)/ansible-playbook deploy.yml $(DEMO_WATCH_VARS)
	cd $(ROOT) && ( sleep $(DEMO_WATCH_FAULT_AFTER) && echo "demo-watch: injecting: webhook-failures --rate 0.5" && \
	    $(BIN)/python -m sandbox --state-dir $(DEMO_STATE) fault webhook-failures --rate 0.5 >/dev/null ) & fault=$$!; \
	  rc=0 && $(DEMO_ENV) $(BIN)/ansible-playbook playbooks/watch.yml $(DEMO_WATCH_VARS) -e emp_watch_mode=follow \
	    -e emp_watch_run_id=$(DEMO_WATCH_RUN) || rc=$$?; kill $$fault 2>/dev/null || true; wait $$fault || true; \
	  echo "ansible-playbook playbooks/watch.yml exited with $$rc (2 = a watch alert said NO-GO)"; \
	  echo "webhook current: $$(readlink $(DEMO_STATE)/releases/webhook/current); faults: $$($(BIN)/python -m sandbox --state-dir $(DEMO_STATE) fault list | tr -d ' \n')"; \
	  test $$rc -eq 2 && $(BIN)/python $(ROOT)/tools/watch_outcome.py $(ROOT)/deploy-reports $(DEMO_WATCH_RUN) \
	    --check webhook_delivery_failures --component webhooks && \
	  test "$$(readlink $(DEMO_STATE)/releases/webhook/current)" = releases/1.0.0

# make demo-real EMP_SOURCE=<checkout of stakeordie/emp-job-queue>: the real API and webhook service built from
# their sources, deployed to with inventories/real-emp (GO, then the NO-GO of a Redis restart without
# persistence); everything it starts is stopped (tools/demo-real). Not part of make test: CI has no sources.
demo-real: venv | $(COLLECTION_LINK)
	EMP_SOURCE="$(EMP_SOURCE)" $(ROOT)/tools/demo-real

# make demo-predeploy: a fresh sandbox, then predeploy.yml (the checklist's "Pre-deployment testing checklist",
# docs/predeploy.md) against it: every automated line GO, the disruptive ones included (the sandbox inventory
# marks the sandbox disposable), recorded with run_kind predeploy. Exit code 0 only when the run said GO.
demo-predeploy: demo-sandbox
	cd $(ROOT) && $(DEMO_ENV) $(BIN)/ansible-playbook predeploy.yml

test: system-deps venv sanity lint typecheck unit integration molecule build compat-2.18
	@echo "make test: all quality gates passed"

sanity: system-deps $(VENV_SANITY)/.stamp
	$(ROOT)/tools/sanity

lint: venv
	cd $(ROOT) && $(BIN)/ansible-lint --profile production

# mypy over plugins/ as ansible_collections.emp.deploy.plugins (mypy.ini); paths shown from the root
typecheck: venv
	cd $(ROOT) && $(BIN)/mypy | sed 's|^collections/ansible_collections/emp/deploy/||'

unit: venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: system-deps venv
	cd $(ROOT) && $(BIN)/python -m pytest tests/integration $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Collection layout (molecule 26): scenarios in extensions/molecule/<name>/, shared settings in
# extensions/molecule/config.yml. Stops at the first failing scenario.
molecule: system-deps venv
	cd $(ROOT) && for f in extensions/molecule/*/molecule.yml; do s=$${f%/molecule.yml}; $(BIN)/molecule test -s $${s##*/} || exit 1; done

build: venv
	$(ROOT)/tools/build-check

# The execution environment's build context (execution-environment.yml): builds the collection artifact and
# runs `ansible-builder create` into .tmp/ee/context, no container engine needed. See docs/awx.md.
ee-context: venv
	$(ROOT)/tools/ee-context

compat-2.18: system-deps $(VENV_218)/.stamp | $(COLLECTION_LINK)
	cd $(ROOT) && $(VENV_218)/bin/python -m pytest tests/unit $(PYTEST_ARGS) && $(VENV_218)/bin/python -m pytest tests/integration -m compat $(PYTEST_PARALLEL) $(PYTEST_ARGS)

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
