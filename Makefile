# Two commands do everything (see README.md):
#   make run    create the environment if missing, execute every notebook headless (outputs/)
#   make test   create the environment if missing, ruff + unit tests + notebooks (quick) + nbval
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs
QUICK_DIR := build/notebooks-quick
export MPLBACKEND := agg

.PHONY: env run test lint unit notebooks nbval browser weights clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

env: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m xanes_lib.notebooks --out $(OUT)

test: lint unit notebooks nbval browser

# ruff with the configuration of pyproject.toml: library, tests, benchmarks and notebooks
lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit tests/integration --doctest-modules xanes_lib -q

notebooks: $(STAMP)
	$(BIN)/python -m pytest tests/notebooks -q --quick-dir $(QUICK_DIR)

nbval: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(QUICK_DIR) -q

# The explorer in a real browser (JupyterLab + headless Chromium); skipped, with the reason, without
# Chromium and chromedriver (Debian: apt install chromium chromium-driver). Screenshots go to outputs/.
browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -q -rs

# Re-train the shipped denoiser weights (data/denoiser_*.pt) from scratch with the library's
# recipes (xanes_lib.denoising.recipe), through notebook 02, on a larger domain-randomised set of
# notebook 01 (64 training + 8 validation stacks in data/derived_release); about 45 min on 2 cores.
RELEASE_DATA := data/derived_release
weights: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/papermill notebooks/01_simulate_nmc_stacks.ipynb $(OUT)/01_simulate_nmc_stacks_release.ipynb \
		--cwd notebooks -p data_dir ../$(RELEASE_DATA) -p n_train 64 -p n_val 8
	$(BIN)/papermill notebooks/02_train_denoiser.ipynb $(OUT)/02_train_denoiser_release.ipynb \
		--cwd notebooks -p data_dir ../$(RELEASE_DATA) -p train_from_scratch True -p release_dir ../data

clean:
	rm -rf build $(OUT) data/derived $(RELEASE_DATA)
