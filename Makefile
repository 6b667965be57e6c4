# Two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1
PORT ?= 8000
WORKSPACE ?= ragkiln-data

# llama.cpp is built once per machine for the CPU features every x86-64 server here has (AVX2, FMA,
# F16C), not -march=native: on a Xeon with AMX the native build (AMX_INT8 = 1 in
# llama_print_system_info) segfaulted on every Q8_0 generation. Native without AMX passed but was no
# faster than this build (bench/results/quantize-xeon-*.json). The wheel is kept outside the clone,
# keyed by version and flags, and pip's own cache is bypassed so that a native wheel it holds is
# never reused.
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ragkiln/llama-cpp-$(shell echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-12)

.PHONY: install demo test test-fast docs bench clean

$(STAMP):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || { rm -rf $(LLAMA_WHEELS).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEELS).tmp llama-cpp-python==$(LLAMA_VERSION) && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); }
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ragkiln --workspace $(WORKSPACE) build samples/python-docs --preset demo
	@echo
	@echo "ragkiln is serving the sample corpus on http://127.0.0.1:$(PORT)/  (web page; API docs at /docs, report at /report)"
	@echo "Try:"
	@echo "  curl -s localhost:$(PORT)/v1/search -H 'content-type: application/json' -d '{\"query\": \"parse command line arguments\", \"k\": 3}'"
	@echo "  curl -s localhost:$(PORT)/v1/answer -H 'content-type: application/json' -d '{\"question\": \"Which module reads CSV files?\"}'"
	@echo "  curl -s localhost:$(PORT)/v1/chat/completions -H 'content-type: application/json' -d '{\"model\": \"ragkiln\", \"messages\": [{\"role\": \"user\", \"content\": \"What does shutil do?\"}]}'"
	@echo
	$(BIN)/ragkiln --workspace $(WORKSPACE) serve --host 127.0.0.1 --port $(PORT)

test: $(STAMP)
	@# the web page test drives Debian's chromium; it skips (saying why) if the install is impossible
	command -v chromium >/dev/null || (apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq chromium >/dev/null 2>&1) || echo "chromium unavailable: the browser test will be skipped"
	$(BIN)/python -m pytest -q -m "not slow or slow" tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

docs: $(STAMP)
	$(BIN)/python -m common.settings_reference docs/configuration.md
	$(BIN)/python -m server.api_reference docs/api.md

clean:
	rm -rf $(VENV) $(WORKSPACE)
