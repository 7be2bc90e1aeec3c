# Two commands do everything (see README.md):
#   make run    create the environment if missing, execute every notebook headless (outputs/)
#   make test   create the environment if missing, unit tests + notebooks (quick) + nbval
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs
QUICK_DIR := build/notebooks-quick
export MPLBACKEND := agg

.PHONY: env run test unit notebooks nbval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

env: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m xanes_lib.notebooks --out $(OUT)

test: unit notebooks nbval

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/integration --doctest-modules xanes_lib -q

notebooks: $(STAMP)
	$(BIN)/python -m pytest tests/notebooks -q --quick-dir $(QUICK_DIR)

nbval: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(QUICK_DIR) -q

clean:
	rm -rf build $(OUT) data/derived
