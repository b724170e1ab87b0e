# Two entry points: `make demo` (the main job) and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit clients-setup system-deps bench clean image

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/esgf-ha demo

# Debian packages some tests drive for real: wget (the generated download scripts), BIND 9 and
# dig (the DNS load balancer's RFC 2136 mode and its answers), nginx (the data node's nginx
# mode and its benchmark), curl (that benchmark), iproute2 (a network namespace whose
# resolver is our DNS, for an unmodified client), unbound (a real recursive resolver in front of
# a DNS server per site), chromium with its driver (the search page's browser tests), podman,
# runc and debootstrap (the image and the Compose deployment; debootstrap makes the Debian base
# image where no registry answers).
SYSTEM_PACKAGES := wget bind9 bind9-dnsutils nginx-light curl iproute2 unbound chromium \
  chromium-driver podman runc debootstrap uidmap
system-deps:
	@command -v wget >/dev/null 2>&1 && command -v dig >/dev/null 2>&1 && test -x /usr/sbin/named && \
	  test -x /usr/sbin/nginx && command -v curl >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && \
	  test -x /usr/sbin/unbound && test -x /usr/bin/chromium && test -x /usr/bin/chromedriver && \
	  command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && \
	  command -v debootstrap >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; }

clients-setup: $(STAMP)
	bash tests/clients/setup_client_venvs.sh $(CURDIR)

lint: $(STAMP)
	$(BIN)/hadolint deploy/container/Containerfile
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Two pytest-xdist workers: most tests wait on servers and clients, not on the CPU. Each test
# module runs whole on one worker, and the whole-system tests (federations, BIND, podman) all
# on the same one (tests/conftest.py).
test: $(STAMP) system-deps clients-setup lint
	$(BIN)/pytest -q -n 2

# The OCI image localhost/esgf-ha:dev (deploy/container/). Installs podman, runc and
# debootstrap when missing; the first build on a machine that reaches no registry also makes
# the Debian base image with debootstrap (about 2 min), kept in podman's storage afterwards.
image: $(STAMP)
	deploy/container/build-image.sh

bench: $(STAMP)
	$(BIN)/python bench/search_bench.py --scale 100k

clean:
	rm -rf $(VENV) .venv-clients .pytest_cache .mypy_cache .ruff_cache
