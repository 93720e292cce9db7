# One-command entry points. `make test` works on a fresh machine: it installs the Debian tools the
# integration tests drive (prometheus, promtool, alertmanager, amtool, nginx) and a virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# apt-get needs root: plain when make runs as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# A venv needs Python >= 3.11 and, on Debian/Ubuntu, the python3-venv package (docs/install.md).
CHECK_PYTHON = $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	{ echo "vllm-sidecar needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1). See docs/install.md, or: make PYTHON=python3.11 ..."; exit 1; }; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	{ echo "$(PYTHON) cannot create virtualenvs: $(SUDO) apt-get install python3-venv (or python3.X-venv). See docs/install.md"; exit 1; }
SYSTEM_TOOLS := promtool prometheus amtool prometheus-alertmanager nginx docker-compose openssl chromium

.PHONY: test demo demo-vllm real-vllm deps system-deps lint typecheck unit bench clean

test: deps real-vllm lint typecheck unit

# vLLM's CPU build in its own venv under ~/.cache/vllm-sidecar/real-vllm (reused while the pinned
# versions hold) plus the tiny models the real-vLLM test tier and `make demo-vllm` serve (seed 1:
# the "candidate" of the replay-compare test).
real-vllm: $(VENV)/.installed
	$(BIN)/python -m sidecar.realvllm install --seed 0 --seed 1

demo: $(VENV)/.demo-installed
	$(BIN)/vllm-sidecar demo

# Only what the demo needs (~500 MB, no test tools); a full `make deps` venv already has it.
$(VENV)/.demo-installed: pyproject.toml
	@$(CHECK_PYTHON)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

demo-vllm: real-vllm
	$(BIN)/vllm-sidecar demo --real-vllm

deps: system-deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(CHECK_PYTHON)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast,review,semantic]'
	touch $@

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager nginx-light docker-compose openssl chromium >/dev/null; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check sidecar tests bench dashboards helm
	$(BIN)/ruff format --check sidecar tests bench dashboards helm

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
