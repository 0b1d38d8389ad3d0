# labctl: two commands for a new user.
#   make run   set up the virtualenv, build or reuse the local control plane, start moto for the aws labs, serve the
#              API with the sample labs
#   make test  set up and run the whole suite (lint, types, import contracts, unit and integration tests)
# Prerequisites: Python >= 3.11 and Go >= 1.26 (to build Kubernetes from source once; cached outside the repo).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test test-resilience venv system-packages binaries cluster cluster-down lint bench clean lock iam-evaluator browser-deps test-packages

help:
	@echo "make run    start the local control plane, moto (aws labs) and the labctl service (Ctrl-C stops all)"
	@echo "make test   run the whole suite against the real local control plane"
	@echo "make test-resilience   crashes and outages: a replica killed, the apiserver stopped, PostgreSQL restarted"
	@echo "make cluster / make cluster-down   start or remove the local control plane alone"
	@echo "make bench  the benchmarks (cluster start, grading time, webhook throughput, simulator step, usage writes, sweep reads, rendering, API reads, class start, mass submit)"

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labctl needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

venv: $(STAMP)

# Debian packages the service and the tests need: bubblewrap jails the graders, npm installs the IAM evaluator of
# the AWS tests and axe-core; the tests also need chromium (the browser tests, tests/browser), `make run` does not.
# Installed only when missing and the user is root (as on CI); otherwise the command to run is printed and make
# stops.
SYSTEM_PACKAGES := /usr/bin/bwrap:bubblewrap /usr/bin/npm:npm
TEST_PACKAGES := $(SYSTEM_PACKAGES) /usr/bin/chromium:chromium

system-packages:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  [ -x "$${entry%%:*}" ] || missing="$$missing $${entry#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  echo "missing system packages:$$missing; install them first: sudo apt-get install$$missing" >&2; exit 1; \
	fi

binaries: $(STAMP)
	$(BIN)/python -m labctl.localcluster.build

cluster: binaries
	$(BIN)/labctl cluster up

cluster-down: $(STAMP)
	$(BIN)/labctl cluster down

# Every shipped lab, the aws ones included: their AWS is a moto server on loopback that lives as long as labctl
# (LOCAL_AWS=0 keeps it off, for a real account: see the README's "AWS sandboxes"; LABCTL_PROVIDERS=kubernetes
# serves the Kubernetes labs alone).
LOCAL_AWS ?= 1
LOCAL_GCP ?= 1

# The gcp labs run against the FAKE Compute API of the tests (tests/support/gce_fake.py: no GCE emulator exists), as
# its own process on loopback, stopped with the service; LOCAL_GCP=0 (and LABCTL_GCP_PROJECT) for a real project.
GCP_FAKE_PORT ?= 8490
run: system-packages binaries
	@if [ "$(LOCAL_GCP)" = 1 ]; then \
	  $(BIN)/python -m tests.support.gce_fake --port $(GCP_FAKE_PORT) & fake=$$!; \
	  trap 'kill $$fake 2>/dev/null' EXIT INT TERM; \
	  export LABCTL_GCP_ENDPOINT_URL=http://127.0.0.1:$(GCP_FAKE_PORT) LABCTL_GCP_PROJECT=$${LABCTL_GCP_PROJECT:-labctl-local}; \
	fi; \
	LABCTL_PROVIDERS=$${LABCTL_PROVIDERS:-kubernetes,aws,gcp} \
	  $(BIN)/labctl serve --local-cluster $(if $(filter 1,$(LOCAL_AWS)),--local-aws)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The independent IAM evaluator the AWS tests run (npm package, locked in tests/iam/package-lock.json).
IAM_EVALUATOR := tests/iam/node_modules/@cloud-copilot/iam-simulate/package.json

$(IAM_EVALUATOR): tests/iam/package.json tests/iam/package-lock.json
	cd tests/iam && npm ci --no-audit --no-fund --silent
	@touch $@

iam-evaluator: $(IAM_EVALUATOR)

# axe-core, the accessibility engine the browser tests inject into the learner page (locked in
# tests/browser/package-lock.json).
AXE_CORE := tests/browser/node_modules/axe-core/axe.min.js

$(AXE_CORE): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --silent
	@touch $@

browser-deps: $(AXE_CORE)

test-packages:
	@$(MAKE) --no-print-directory system-packages SYSTEM_PACKAGES="$(TEST_PACKAGES)"

test: test-packages lint binaries iam-evaluator browser-deps
	$(BIN)/python -m pytest -m "not resilience"

# Crashes and outages (tests/resilience): a replica killed mid-start, the apiserver stopped for 30 s, PostgreSQL
# restarted under load. Its own phase in .ci/run, after `make test`.
test-resilience: test-packages binaries
	$(BIN)/python -m pytest -m resilience tests/resilience

bench: system-packages binaries
	$(BIN)/python -m bench.cluster_start
	$(BIN)/python -m bench.grading
	$(BIN)/python -m bench.webhook_throughput
	$(BIN)/python -m bench.simulator_step
	$(BIN)/python -m bench.usage_apply
	$(BIN)/python -m bench.sweep
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.api_reads
	$(BIN)/python -m bench.class_start
	$(BIN)/python -m bench.mass_submit

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
