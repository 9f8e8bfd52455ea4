# Two commands do all the set-up on a fresh machine:
#   make demo   -- install, then run the main job on SynthWorld
#   make test   -- install, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.unike-installed
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=
# the suite runs in one pytest process per core (pytest-xdist), a test file per process
PYTEST_WORKERS ?= auto

.PHONY: setup demo test test-fast clean

$(STAMP): pyproject.toml scripts/setup-env.sh
	VENV=$(VENV) bash scripts/setup-env.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unike demo --out $(DEMO_OUT)

test: $(STAMP)
	bash scripts/setup-browser.sh
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache build dist src/*.egg-info
