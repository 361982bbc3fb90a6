# MoonTV delivery platform. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
STACK ?= dev
VENV := venv
PY := $(VENV)/bin/python

.PHONY: help setup preview up destroy test unit integration lint bench bench-node bench-release bench-browser bench-ci toolchain cluster-up cluster-down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(PY): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(PY)

setup: $(PY) ## Create the virtualenv with the pinned Python dependencies

preview: setup ## pulumi preview on STACK (default dev)
	bash tools/stack.sh preview $(STACK)

up: setup ## pulumi up on STACK (default dev: renders manifests to rendered/dev, no cluster)
	bash tools/stack.sh up $(STACK)

destroy: setup ## pulumi destroy on STACK
	bash tools/stack.sh destroy $(STACK)

test: setup ## Everything CI runs: lint and the test groups at the same time (time per group at the end)
	bash tools/test.sh

unit: setup ## Unit tests only (mocks, seconds)
	$(PY) -m pytest -q tests/unit

integration: setup ## Integration tests only (real engine, local clusters)
	bash tools/test.sh integration

lint: setup ## ruff, mypy, hadolint, actionlint, zizmor, shellcheck
	bash tools/lint.sh

bench: setup ## Benchmarks (docs/performance.md): program under mocks, preview vs the empty program, per-stack cost, canary step, image rebuild
	source tools/env.sh || true; $(PY) -m benchmarks

bench-node: setup ## Real node figures: cold build of its binaries, start to Ready, stack up to Ready
	source tools/env.sh || true; $(PY) -m benchmarks --node

bench-release: setup ## Real node and Swarm release figures: canary split, switch/rolling failures, rollback time, mirroring
	source tools/env.sh || true; $(PY) -m benchmarks.node_release

bench-browser: setup ## Browser figures: broken page loads (Chromium) per page and weight, per-request split vs the node Gateway with affinity
	source tools/env.sh || true; $(PY) -m benchmarks.browser

bench-ci: setup ## The last `make test`'s breakdown: wall time, outcome and counts per group
	$(PY) tools/ci_groups.py report

toolchain: ## Build the Pulumi engine, plugins and local-cluster binaries offline (cached)
	bash tools/toolchain.sh

cluster-up: ## Start the local clusters: kwok, the real single node, Docker Swarm
	bash tools/cluster.sh kwok-up
	bash tools/cluster.sh node-up
	bash tools/cluster.sh swarm-up

cluster-down: ## Stop the local clusters
	bash tools/cluster.sh kwok-down
	bash tools/cluster.sh node-down
	bash tools/cluster.sh swarm-down

clean: ## Remove rendered manifests and local state (not the toolchain cache)
	rm -rf rendered .pulumi-state .pytest_cache
