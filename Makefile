# Two commands from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test run

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# A CPU build of torch where there is no NVIDIA GPU; pip picks the CUDA build otherwise.
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch>=2.4,<3"; \
	else $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	scripts/test-servers
	$(PY) -m pytest

# The service on the embedded defaults with the digits demo model; prints URL, key and curl commands.
HOST ?= 127.0.0.1
PORT ?= 8000
run: install
	scripts/run-demo $(VENV) $(HOST) $(PORT)
