# pfplan developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install the CPU build of torch when there is no GPU, then the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest workers: the suite is sized for 2 cores.
JOBS ?= 2
# Where the CPU torch comes from when there is no GPU. From the default index (PyPI) `torch` on Linux is the
# multi-GB CUDA build; set a CPU wheel index where you can reach one, e.g.
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: setup browser demo test bench schemas gpu-check clean

setup: $(STAMP) browser

# The report test opens every report in Debian's headless chromium: install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1; then \
			SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
			echo "chromium not found: installing Debian's chromium for the report test"; \
			$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
				|| echo "could not install chromium: the report browser test will fail"; \
		else echo "chromium not found and no apt-get: install chromium for the report browser test"; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing torch from the default index"; \
		$(PY) -m pip install -q torch; \
	else \
		echo "no GPU: installing the CPU build of torch"; \
		$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m planner.demo $(ARGS)

# Tests that compare wall-clock timings run alone, before the others, so nothing competes for the cores.
test: $(STAMP) browser
	$(PY) -m pytest -q -m timing
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile -m "not timing"

bench: $(STAMP)
	$(PY) -m benchmarks

# The bounded CUDA check (docs/gpu.md): about 8 minutes on one H100/H200, report in docs/gpu/, profiles in
# profiles/data/profiles/. DRY=1: the same steps on the CPU with the tiny presets, into OUT (default: a temp folder).
GPU_CHECK_BUDGET ?= 480
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check --budget-s $(GPU_CHECK_BUDGET) $(if $(DRY),--dry) $(if $(OUT),--out $(OUT))

schemas: $(STAMP)
	$(PY) -m planner.schemas docs/schemas

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
