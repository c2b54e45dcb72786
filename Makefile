# Two commands from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test run browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# With an NVIDIA GPU, PyPI's CUDA build. Without one, a CPU build: a local CPU wheel of
	@# torch 2.13.0 where pip's find-links has one, otherwise the PyTorch CPU index (PyPI's
	@# own Linux wheel is the multi-GB CUDA build).
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch>=2.4,<3"; \
	elif $(PY) -m pip download -q --no-index --no-deps torch==2.13.0 -d $(VENV)/.torch-probe >/dev/null 2>&1; \
	then rm -rf $(VENV)/.torch-probe && $(PY) -m pip install -q torch==2.13.0; \
	else $(PY) -m pip install -q torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu; fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Two test processes: the tests run single-threaded and many wait on subprocesses, so a second
# process uses the core the first leaves idle. Each file stays on one process (--dist loadfile).
TEST_PROCESSES ?= 2
test: install browser
	scripts/test-servers
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# Debian's Chromium for the console's browser tests (tests/console). Installed where it is
# missing and apt-get can run (as root); otherwise those tests skip, naming what is missing.
browser:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; } || \
	  echo "note: /usr/bin/chromium is not installed; the browser tests in tests/console will be skipped"

# The service on the embedded defaults with the digits demo model; prints URL, key and curl commands.
HOST ?= 127.0.0.1
PORT ?= 8000
run: install
	scripts/run-demo $(VENV) $(HOST) $(PORT)
