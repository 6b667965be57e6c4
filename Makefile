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

.PHONY: install demo test test-fast bench clean

$(STAMP):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ragkiln --workspace $(WORKSPACE) ingest samples/python-docs
	@for q in "how do I parse command line arguments" "read and write CSV files" "temporary files and directories"; do \
		echo; echo "== $$q"; $(BIN)/ragkiln --workspace $(WORKSPACE) --log-level WARNING search "$$q" -k 3; done

test: $(STAMP)
	@# the web page test drives Debian's chromium; it skips (saying why) if the install is impossible
	command -v chromium >/dev/null || (apt-get install -y chromium >/dev/null 2>&1 || sudo -n apt-get install -y chromium >/dev/null 2>&1) || echo "chromium unavailable: the browser test will be skipped"
	$(BIN)/python -m pytest -q -m "not slow or slow" tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(WORKSPACE)
