# Every target delegates to a Python CLI; `make help` lists them.
SHELL := /bin/bash
PY_BOOT ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= $(abspath ../shared/datasets)
export DATA_DIR
# The upload benchmark's images (generated, under the ignored build/) and its scores ($(UPLOADS)-scores.json)
UPLOADS ?= build/uploads
# Peers for the benchmark's side-by-side (loadtests/peers/): their own venv (nvidia-pytriton's pins clash with ours)
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_ARGS ?=
# KServe's Python clients for the v2 protocol tests: their own venv (kserve pins protobuf<7, ours is 7)
KSERVE_VENV ?= .venv-kserve
KSERVE_LOCK := tests/e2e/kserve/requirements.lock
KSERVE_STAMP := $(KSERVE_VENV)/.installed
export KSERVE_VENV
# The container image's base: python:3.11-slim where a registry is reachable; `make base-image` builds
# digits-base:bookworm from Debian's packages for where none is (then BASE_IMAGE=digits-base:bookworm).
BASE_IMAGE ?= python:3.11-slim
export BASE_IMAGE

.DEFAULT_GOAL := help
.PHONY: help venv kserve-venv lint test test-unit models quick-models serve loadtest reliability bench bento base-image container container-test deploy-check k8s-validate export-triton export-tfserving clean

help: ## list targets (coloured only on a terminal)
	@if [ -t 1 ]; then on=$$'\033[36m' off=$$'\033[0m'; else on= off=; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -v on="$$on" -v off="$$off" 'BEGIN{FS=":.*## "}{printf "  %s%-14s%s %s\n",on,$$1,off,$$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock pip setuptools
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[train,dev]'
	touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies (cached)

$(KSERVE_STAMP): $(KSERVE_LOCK)
	test -x $(KSERVE_VENV)/bin/python || $(PY_BOOT) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(KSERVE_LOCK)
	touch $@

kserve-venv: $(KSERVE_STAMP) ## create .venv-kserve (KServe's REST/gRPC clients, for the v2 protocol tests)

lint: $(STAMP) ## ruff (lint + format check) over the tree, mypy --strict over serving/ and contract/, generated protos up to date
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m contract.protos.generate --check

test: $(STAMP) $(KSERVE_STAMP) lint ## lint, then every test (unit + end-to-end; trains a tiny model store)
	$(PY) -m pytest -q --durations=10

test-unit: $(STAMP) ## unit tests only
	$(PY) -m pytest -q tests/unit

models: $(STAMP) $(UPLOADS)/manifest.json ## train + export + register every model (default profile), then score them on the upload benchmark
	$(PY) -m training build --profile default --data-dir $(DATA_DIR)
	$(PY) -m training uploads eval --uploads $(UPLOADS) --home "$${BENTOML_HOME:-$$HOME/bentoml}" --json $(UPLOADS)-scores.json

# The upload benchmark (training/uploads.py): 2,000 seeded digit pictures, rewritten when its generator changes.
$(UPLOADS)/manifest.json: training/uploads.py $(STAMP)
	$(PY) -m training uploads make --out $(UPLOADS) --data-dir $(DATA_DIR)

quick-models: $(STAMP) ## train + export + register a quick profile (minutes)
	$(PY) -m training build --profile quick --data-dir $(DATA_DIR)

serve: $(STAMP) ## serve HTTP (BentoML, :3000) and gRPC (TF Serving API, :8500); builds quick models if the store is empty
	SERVING_DRAIN_DELAY_S=$${SERVING_DRAIN_DELAY_S:-0} $(PY) -m serving

loadtest: $(STAMP) ## bounded locust run against a service it starts (or URL=http://...); SLO verdict, exit 1 on breach
	$(PY) -m loadtests run $(if $(URL),--url $(URL))

reliability: $(STAMP) ## the reliability suite against a server it starts: Schemathesis, hostile inputs, faults under load, a MINUTES soak per sender (h2load, Python; default 10); exit 1 on any failure (needs wrk, h2load)
	$(PY) -m loadtests.reliability --minutes $(or $(MINUTES),10) --out results/reliability-$$(date +%Y%m%d-%H%M%S)

bench: $(STAMP) $(PEERS_STAMP) ## one benchmark table: in-process ORT, served, bulk, Keras baseline, manifold, start-up, RSS, and side by side with Triton + textbook BentoML (needs wrk, h2load)
	$(PY) -m loadtests.bench

bento: $(STAMP) ## bentoml build (CPU image by default; GPU=1 for the CUDA image)
	$(PY) -m deploy bento $(if $(GPU),--gpu)

base-image: $(STAMP) ## digits-base:bookworm, a python:3.11-slim equivalent from Debian's packages (debootstrap; root, Docker)
	$(PY) -m deploy base-image

container: $(STAMP) ## the image digits-cpu:<bento version> + :latest from a fresh bento, on $(BASE_IMAGE) (needs a Docker engine)
	$(PY) -m deploy bento $(if $(GPU),--gpu)
	$(PY) -m deploy container $(if $(GPU),--gpu)

container-test: $(STAMP) ## build the image (cached) from a tiny trained store and test it running: v1, v2 REST/gRPC, TF Serving, demo, docker stop
	$(PY) -m pytest -q tests/e2e/test_container.py

deploy-check: $(STAMP) ## check the last bento: contents, Dockerfile, hadolint (GPU=1 for the CUDA one)
	$(PY) -m deploy check $(if $(GPU),--gpu)

k8s-validate: $(STAMP) ## render every deploy/k8s variant (kubectl kustomize) and validate it: Kubernetes API schemas, KServe/KEDA CRD schemas
	$(PY) -m deploy k8s --validate --all

export-triton: $(STAMP) ## the stored models as a Triton model repository in exports/triton
	$(PY) -m training export --model all --layout triton --out exports/triton

export-tfserving: $(STAMP) ## the stored models as TF Serving base paths in exports/tfserving
	$(PY) -m training export --model all --layout tfserving --out exports/tfserving

clean: ## remove runs, results and caches (keeps .venv and the model store)
	rm -rf runs results exports .pytest_cache

# ---------------------------------------------------------------- bench-peers
# Peers for the benchmark's side-by-side (loadtests/peers/): Triton (PyTriton) in its own venv, since
# nvidia-pytriton's pins clash with the main venv's, and the textbook BentoML service in the main venv.
.PHONY: peers-venv bench-peers

$(PEERS_STAMP): loadtests/peers/requirements.lock
	test -x $(PEERS_PY) || $(PY_BOOT) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --disable-pip-version-check -r loadtests/peers/requirements.lock
	touch $@

peers-venv: $(PEERS_STAMP) ## create .venv-peers (Triton via nvidia-pytriton + ONNX Runtime CPU) from loadtests/peers/requirements.lock

bench-peers: $(STAMP) $(PEERS_STAMP) ## ours vs Triton vs textbook BentoML, 1 image per request, wrk (PEERS_ARGS="--duration 5 -c 1,32")
	$(PY) -m loadtests.peers $(PEERS_ARGS)
