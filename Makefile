# pfplan developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the CPU build of torch when there is no GPU, then the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest workers: the suite is sized for 2 cores.
JOBS ?= 2

.PHONY: setup demo test bench schemas clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing torch from the default index"; \
		$(PY) -m pip install -q torch; \
	else \
		echo "no GPU: installing the CPU build of torch"; \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m planner.demo $(ARGS)

# Tests that compare wall-clock timings run alone, before the others, so nothing competes for the cores.
test: $(STAMP)
	$(PY) -m pytest -q -m timing
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile -m "not timing"

bench: $(STAMP)
	$(PY) -m benchmarks

schemas: $(STAMP)
	$(PY) -m planner.schemas docs/schemas

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
