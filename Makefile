# One-command entry points. `make test` works on a fresh machine: it installs the Debian tools the
# integration tests drive (prometheus, promtool, alertmanager, amtool, nginx) and a virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_TOOLS := promtool prometheus amtool prometheus-alertmanager nginx docker-compose openssl chromium

.PHONY: test demo demo-vllm real-vllm deps system-deps lint typecheck unit bench clean

test: deps real-vllm lint typecheck unit

# vLLM's CPU build in its own venv under ~/.cache/vllm-sidecar/real-vllm (reused while the pinned
# versions hold) plus the tiny model the real-vLLM test tier and `make demo-vllm` serve.
real-vllm: $(VENV)/.installed
	$(BIN)/python -m sidecar.realvllm install

demo: $(VENV)/.installed
	$(BIN)/vllm-sidecar demo

demo-vllm: real-vllm
	$(BIN)/vllm-sidecar demo --real-vllm

deps: system-deps $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast,review]'
	touch $@

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
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
