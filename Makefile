# Countersign: every entry point a developer or CI needs.
#   make test    install the Python dependencies and the pinned reference tools (cached), run every test tier
#                (tests/adversarial last, inside a loopback-only network namespace: tools/netns-run.sh)
#   make test-adversarial   only the adversarial suite (hostile registry and clients), in that namespace
#   make lint    ruff + mypy --strict
#   make demo    signed and unsigned images in a local registry, Countersign's verdicts and a tag pinned
#                (builds only olareg, oras, cosign, notation; GATEKEEPER=1: through the real Gatekeeper and
#                kube-apiserver, printing what kubectl answers, which also builds those)
#   make bench   run the benchmark and print its table, then a traced cold batch's critical path
#                (BENCH_ARGS='--trace FILE' also writes its spans as JSON)
#   make bench-trace   only the traced cold batch (TRACE_ARGS: bench/trace_bench.py's options)
#   make bench-peers   Countersign and Ratify v1.4.6 side by side (builds Ratify the first time, ~5 minutes;
#                not part of `make tools` nor `make test`); prints the table of docs/performance.md
#   make image   build Countersign's OCI image into $(CACHE)/image/countersign.oci (no Docker daemon, no
#                registry: Debian packages via mmdebstrap, buildah; root; reproducible; tools/image/build.sh)
#   make image-lock   re-resolve the image's Debian package versions (tools/image/debian-ARCH.lock)
#   make sbom    an SPDX 2.3 SBOM of the built image, made by syft ($(CACHE)/image/countersign.spdx.json)
#   make sign-image REPOSITORY=registry.example.com/platform/countersign COSIGN_KEY=cosign.key NOTATION_KEY=NAME
#                push the built image (by digest) to your registry, attach its SBOM (a referrer and a cosign
#                attestation), sign it with cosign and notation (tools/image/sign.sh; SIGN_ARGS=--no-tlog ...)
#   make system-packages   the Debian packages for building and running images (tools/system-packages.sh)
#   make schema  regenerate the chart's values.schema.json `config` part from the configuration's models,
#                and the chart's CustomResourceDefinitions (crds/countersign.dev.yaml) from the resources' models
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/countersign
PYTHON ?= python3
# The virtualenv lives outside the repository and is keyed by the interpreter, so clean clones reuse it.
VENV ?= $(CACHE)/venv-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY := $(VENV)/bin/python
export COUNTERSIGN_TOOLS ?= $(CACHE)/tools
# The stamp names the dependency pins and this checkout, so a change to either reinstalls.
DEPS_STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$(shell echo '$(CURDIR)' | sha256sum | cut -c1-8)
PYTEST_ARGS ?=

.PHONY: deps tools system-packages image image-lock sbom sign-image test test-unit test-integration test-adversarial lint demo bench bench-trace bench-peers schema clean-cache

deps: $(DEPS_STAMP)

$(DEPS_STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.stamp-*
	@touch $@

tools:
	@tools/install.sh >/dev/null

# Both runs always happen; the status is the first failure's. Exit status 5 ("no tests collected") only
# comes from a PYTEST_ARGS filter that selects nothing in one of the two runs, and is not a failure.
ADVERSARIAL := tools/netns-run.sh $(PY) -m pytest tests/adversarial
test: deps tools
	@echo "+ pytest (all tiers but tests/adversarial), then $(ADVERSARIAL)"; status=0; \
	$(PY) -m pytest --ignore=tests/adversarial $(PYTEST_ARGS) || { rc=$$?; [ $$rc = 5 ] || status=$$rc; }; \
	$(ADVERSARIAL) $(PYTEST_ARGS) || { rc=$$?; [ $$rc = 5 ] || [ $$status != 0 ] || status=$$rc; }; \
	exit $$status

test-adversarial: deps tools
	$(ADVERSARIAL) $(PYTEST_ARGS)

test-unit: deps
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: deps tools
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layering.py

# `make demo` builds only the four tools it runs (a registry, oras and the two signers: a few minutes the
# first time, cached afterwards), not the whole `tools` set. GATEKEEPER=1 adds Gatekeeper and the kube
# control plane (etcd, kube-apiserver, kubectl): about 20 minutes more to build the first time.
GATEKEEPER ?=
DEMO_GATEKEEPER := $(filter 1 true yes,$(GATEKEEPER))
DEMO_TOOLS := olareg oras cosign notation $(if $(DEMO_GATEKEEPER),gatekeeper kube)
demo: deps
	@tools/install.sh $(DEMO_TOOLS) >/dev/null
	$(PY) -m $(if $(DEMO_GATEKEEPER),examples.demo_gatekeeper,examples.demo)

bench: deps tools
	$(PY) -m bench.run $(BENCH_ARGS)

# Only the traced cold batch: TRACE_ARGS='--keys 100 --delay-ms 0 --delay-ms 10 --trace /tmp/batch.json'
TRACE_ARGS ?= --keys 100
bench-trace: deps
	@tools/install.sh olareg cosign2 notation >/dev/null
	$(PY) -m bench.trace_bench $(TRACE_ARGS)

# Only the tools it runs; Ratify is built here, never by `make tools`. BENCH_PEERS_ARGS: see --help.
BENCH_PEERS_ARGS ?=
bench-peers: deps
	@tools/install.sh olareg cosign cosign2 notation ratify >/dev/null
	$(PY) -m bench.peers $(BENCH_PEERS_ARGS)

system-packages:
	@tools/system-packages.sh >/dev/null

# Rebuilds only when a tracked file changed (IMAGE_ARGS=--force rebuilds anyway).
IMAGE_ARGS ?=
image: deps
	@CACHE=$(CACHE) PY=$(PY) tools/image/build.sh $(IMAGE_ARGS)

image-lock: deps
	@CACHE=$(CACHE) PY=$(PY) tools/image/build.sh --relock

# Both work on the image `make image` built last; neither rebuilds it (what is signed is what was built).
sbom:
	@tools/install.sh syft >/dev/null
	@CACHE=$(CACHE) tools/image/sbom.sh >/dev/null

REPOSITORY ?=
COSIGN_KEY ?=
NOTATION_KEY ?=
SIGN_ARGS ?=
sign-image:
	@if [ -z '$(REPOSITORY)' ] || [ -z '$(COSIGN_KEY)' ] || [ -z '$(NOTATION_KEY)' ]; then \
	  echo "usage: make sign-image REPOSITORY=registry.example.com/platform/countersign COSIGN_KEY=cosign.key NOTATION_KEY=NAME [SIGN_ARGS='--no-tlog --plain-http --tag T']" >&2; \
	  exit 2; fi
	@tools/install.sh oras cosign notation syft >/dev/null
	@CACHE=$(CACHE) tools/image/sign.sh --repository '$(REPOSITORY)' --cosign-key '$(COSIGN_KEY)' \
	  --notation-key '$(NOTATION_KEY)' $(SIGN_ARGS)

CHART_SCHEMA := charts/countersign/values.schema.json
schema: deps
	$(PY) -m provider.schema --chart $(CHART_SCHEMA) > $(CHART_SCHEMA).new
	mv $(CHART_SCHEMA).new $(CHART_SCHEMA)
	$(PY) -m provider.kube.crds

clean-cache:
	rm -rf $(VENV)
