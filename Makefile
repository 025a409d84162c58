# SettleProof build, test and check entry points (CI runs .ci/run = install, test, check).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
AUTONOMY := $(BIN)/autonomy --registry-path packages
ANVIL := .tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
# Tendermint as open-autonomy expects it (LOCAL_TENDERMINT_VERSION), built from the Go module proxy.
TENDERMINT := .tools/bin/tendermint
TENDERMINT_VERSION := 0.34.19
INSTALL_STAMP := $(VENV)/.settleproof-installed

# Test dirs that exist (pytest errors on a missing path); an empty list is an error below.
TEST_PATHS := $(wildcard tests packages/settleproof)
PYTEST_FLAGS ?= -p no:cacheprovider -ra --durations=10

# Handlers/dialogues every ABCI skill must define; abstract_abci only has abci, so skip it.
COMMON := abci http contract_api ledger_api signing tendermint ipfs
ANALYSE_IGNORE := -i abstract_abci

.PHONY: help install tendermint sync-packages demo demo-chaos bench test check lock constraints clean distclean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

install: $(INSTALL_STAMP) $(ANVIL) tendermint sync-packages ## venv + pinned deps + editable project, third-party packages, anvil, Tendermint (idempotent)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3

# Re-run pip only when the pins change (or the venv is new).
$(INSTALL_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

sync-packages: $(INSTALL_STAMP) ## put third-party packages under packages/ and verify their IPFS hashes
	$(BIN)/settleproof packages sync

# npm ci from the committed lock; re-run only when the lock changes or the binary is gone.
$(ANVIL): tools/package.json tools/package-lock.json
	mkdir -p .tools
	cp tools/package.json tools/package-lock.json .tools/
	cd .tools && npm ci --no-audit --no-fund --loglevel=error
	test -x $@ && touch $@
	$@ --version

# Skipped when the binary already reports the version. `go install ...@v0.34.19` would need the
# module's version list (its deprecation check), which the proxy refuses here, so tools/tendermint
# pins the module in a go.mod/go.sum of ours and `go build` makes the same binary.
tendermint: ## build Tendermint v0.34.19 into .tools/bin (needs Go; about a minute on a fresh machine)
	@if $(TENDERMINT) version 2>/dev/null | grep -qx '$(TENDERMINT_VERSION)'; then exit 0; fi; \
	command -v go >/dev/null || { echo "make install: no Go toolchain on PATH; Tendermint v$(TENDERMINT_VERSION) is built with it (install Go 1.22 or newer)" >&2; exit 1; }; \
	echo "building Tendermint v$(TENDERMINT_VERSION) into $(TENDERMINT) ..."; \
	mkdir -p $(dir $(TENDERMINT)); \
	cd tools/tendermint && go build -mod=readonly -trimpath -buildvcs=false -o $(CURDIR)/$(TENDERMINT) github.com/tendermint/tendermint/cmd/tendermint
	@$(TENDERMINT) version | grep -qx '$(TENDERMINT_VERSION)' || { echo "make install: $(TENDERMINT) is not v$(TENDERMINT_VERSION)" >&2; exit 1; }

demo: install ## the local multi-agent demo: anvil, 3 RPC endpoints, merchant, devnet with 4 agents, 20 invoices
	$(BIN)/python -m settleproof.demo

demo-chaos: install ## before/after reliability demo: one fault script through a naive baseline, then SettleProof; one table
	$(BIN)/python -m settleproof.demo_chaos

# Which benchmarks `make bench` runs (in this order) and their arguments; reports also go to benchmarks/results/ (ignored).
BENCH ?= matching catchup delivery durability comparative idle state
MATCHING_ARGS ?=
CATCHUP_ARGS ?=
DELIVERY_ARGS ?=
DURABILITY_ARGS ?=
COMPARATIVE_ARGS ?=
IDLE_ARGS ?=

bench: install ## benchmarks (not tests): one period's pure cores at 10,000 invoices x 10,000 logs, RPC catch-up, 1,000 webhooks in one period, memory/recovery after 100,000 events, SettleProof vs a reference poller on 1,000 invoices paid over time, the idle cost of 4 agents and 4 Tendermint nodes, the consensus state after 100,000 dead letters and 10,000 pending events; quicker: BENCH=delivery DELIVERY_ARGS="--settlements 200", CATCHUP_ARGS="--blocks 20000 --payments 2000", DURABILITY_ARGS="--events 1000", COMPARATIVE_ARGS="--invoices 200"
	@mkdir -p benchmarks/results
	$(if $(filter matching,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/matching.py $(MATCHING_ARGS) | tee benchmarks/results/matching.json)
	$(if $(filter catchup,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/catchup.py $(CATCHUP_ARGS) | tee benchmarks/results/catchup.json)
	$(if $(filter delivery,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/delivery.py $(DELIVERY_ARGS) | tee benchmarks/results/delivery.json)
	$(if $(filter durability,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/durability.py $(DURABILITY_ARGS) | tee benchmarks/results/durability.json)
	$(if $(filter comparative,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/comparative.py $(COMPARATIVE_ARGS) | tee benchmarks/results/comparative.json)
	$(if $(filter idle,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/idle.py $(IDLE_ARGS) | tee benchmarks/results/idle.json)
	$(if $(filter state,$(BENCH)),set -o pipefail; $(BIN)/python benchmarks/state.py $(STATE_ARGS) | tee benchmarks/results/state.json)

test: install ## install (idempotent), then run the test suite (tests/ and packages/settleproof/)
	@test -n "$(TEST_PATHS)" || { echo "no test dirs (tests/, packages/settleproof/) found" >&2; exit 1; }
	$(BIN)/pytest $(PYTEST_FLAGS) $(TEST_PATHS)

check: ## framework analysers + packages.json lock check
	$(AUTONOMY) analyse fsm-specs
	$(AUTONOMY) analyse docstrings
	$(AUTONOMY) analyse handlers $(addprefix -h ,$(COMMON)) $(ANALYSE_IGNORE)
	$(AUTONOMY) analyse dialogues $(addprefix -d ,$(COMMON)) $(ANALYSE_IGNORE)
	$(AUTONOMY) packages lock --check

# Every third-party package is pre-listed, so any new package is ours: answer the prompt with "dev".
lock: ## refresh fingerprints, dependency hashes and packages.json after editing our packages
	yes dev 2>/dev/null | $(AUTONOMY) packages lock

constraints: ## regenerate constraints.txt from the current venv (after changing pins in pyproject.toml)
	{ echo '# Full lock of a working install: pip freeze minus settleproof (make constraints).'; \
	  $(BIN)/pip freeze --exclude-editable --exclude settleproof; } > constraints.txt

clean: ## remove build artefacts and caches (keeps .venv, .tools and third-party packages)
	rm -rf build dist src/*.egg-info .pytest_cache .hypothesis .tox abci_build* benchmarks.html benchmarks/results
	find . -path ./$(VENV) -prune -o -path ./.tools -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove synced third-party packages, .tools and download caches (keeps .venv)
	rm -rf packages/valory packages/open_aea .tools .cache $(INSTALL_STAMP)
