# Milo on a new machine (Debian/Ubuntu, Python >= 3.10, root or sudo for apt):
#   make up     set up, build the offline demo models, run the whole stack (Ctrl-C stops it)
#   make test   set up, build the demo models, lint, run every test tier
#   make test-fast   tiers 1 and 2 only (no models, no processes): the inner loop
# Each step is idempotent; `make setup` alone prepares the virtual environment.

VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= models/demo
APT_PACKAGES := espeak-ng sox prometheus chromium fonts-dejavu-core
# CPU build of torch from the local wheel; any other pin pulls GBs of CUDA packages.
TORCH_PIN ?= torch==2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# checkov (Kubernetes manifest linter) pins many packages that fight ours: its own venv.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_PIN ?= checkov==3.3.30

.PHONY: setup system-packages demo up test test-fast lint unit clean checkov

setup: $(VENV)/.installed

system-packages:
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null && command -v promtool >/dev/null \
	  && command -v chromium >/dev/null \
	  || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); }

$(VENV)/.installed: pyproject.toml setup.py | system-packages
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/milo models demo --dir $(DEMO)

up: demo
	$(BIN)/milo up --models $(DEMO)

lint: setup
	$(BIN)/buf lint
	BUF=$(BIN)/buf sh protos/breaking.sh
	$(BIN)/ruff format --check services gateway tests protos/generate.py setup.py gateway/milo_client/setup.py
	$(BIN)/ruff check services gateway tests protos/generate.py setup.py gateway/milo_client/setup.py
	$(BIN)/mypy

$(CHECKOV_VENV)/.installed:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -U pip
	$(CHECKOV_VENV)/bin/pip install -q $(CHECKOV_PIN)
	touch $@

checkov: $(CHECKOV_VENV)/.installed

unit: demo checkov
	MILO_DEMO_MODELS=$(DEMO) $(BIN)/python -m pytest -q -rs --durations=25 $(ARGS)

# Tiers 1 and 2: pure logic and servicers on port 0 (tests/conftest.py marks the tiers).
test-fast: setup
	$(BIN)/python -m pytest -q -m "tier1 or tier2" --durations=10 $(ARGS)

test: lint unit

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) protos/gen build *.egg-info
