"""Every numbered notebook runs headless through papermill in its quick mode, in order.

The executed notebooks land in ``--quick-dir`` (default ``build/notebooks-quick``); the
``nbval`` step of ``make test`` then re-executes them and compares the summary cells marked
``# NBVAL_CHECK_OUTPUT`` with these outputs (same seed, same numbers).
"""

import json
from pathlib import Path

import pytest

from xanes_lib.notebooks import NOTEBOOKS_DIR, list_notebooks, run_notebook

NOTEBOOKS = list_notebooks()


@pytest.fixture(scope="session")
def quick_dir(request):
    path = Path(request.config.getoption("--quick-dir")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_notebooks_exist():
    assert NOTEBOOKS, f"no numbered notebooks in {NOTEBOOKS_DIR}"
    numbers = [nb.name[:2] for nb in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_quick(notebook, quick_dir):
    out = quick_dir / notebook.name
    params = {"quick": True, "seed": 0, "data_dir": str(quick_dir / "data")}
    run_notebook(notebook, out, parameters=params, timeout=600)
    cells = json.loads(out.read_text())["cells"]
    checked = [c for c in cells if c["cell_type"] == "code"
               and "NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert checked, f"{notebook.name} has no summary cell marked # NBVAL_CHECK_OUTPUT"
    for c in checked:
        assert c["outputs"] and c["execution_count"], f"summary cell of {notebook.name} printed nothing"
