# podstore's tasks. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: help install demo test lint unit soak bench image image-check crds clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: ## install Debian packages and a virtualenv with podstore (safe to repeat)
	bash .ci/install.sh

demo: install ## the main job: build an example image, run examples/ with podstore, run a bundle
	bash examples/demo.sh

lint: install ## ruff, mypy (strict on controller/ and oci_diff.py) and the import layering
	$(VENV)/bin/ruff check controller tests bench manifests/image
	$(VENV)/bin/ruff format --check controller tests bench manifests/image
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m controller.api.crdgen --check

test: install lint ## install, lint and run the whole test suite
	$(PY) -m pytest

unit: ## only the fast tests that need no tools
	$(PY) -m pytest tests/unit

soak: install ## the reliability suite at length: FUZZ_CASES manifests (1000), KILLS kill -9 (100); FUZZ_SEED, KILL_SEED
	FUZZ_CASES=$${FUZZ_CASES:-1000} KILLS=$${KILLS:-100} $(PY) -m pytest tests/reliability -q -s -p no:cacheprovider

bench: install ## the benchmarks: ratios against the bare CLI and podman
	$(PY) bench/storage_cycle.py
	$(PY) bench/operator.py
	$(PY) bench/scale.py
	$(PY) bench/image_gc.py

image: install ## build the agent image offline (mmdebstrap + umoci) into build/image/oci
	bash manifests/image/build-oci.sh build/image

image-check: install ## build the agent image twice, fail naming the first file that differs
	bash manifests/image/build-oci.sh --check

crds: ## write the CRDs (crds/, chart, manifests, package) from controller/api/schema.py
	$(PY) -m controller.api.crdgen

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
