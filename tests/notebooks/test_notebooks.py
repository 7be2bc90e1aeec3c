"""Every numbered notebook runs headless through papermill in its quick mode, in order.

The executed notebooks land in ``--quick-dir`` (default ``build/notebooks-quick``); the
``nbval`` step of ``make test`` then re-executes them and compares the summary cells marked
``# NBVAL_CHECK_OUTPUT`` with these outputs (same seed, same numbers).
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from xanes_lib.notebooks import NOTEBOOKS_DIR, count_figures, list_notebooks, run_notebook

#: A figure made unconditionally: a top-level (not indented) line that creates one.
_DRAWS = re.compile(r"^\S.*\bplt\.(subplots|figure)\(", re.M)

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
    # Every cell that draws a figure shows it in the executed notebook (inline backend).
    drawing = [i for i, c in enumerate(cells)
               if c["cell_type"] == "code" and _DRAWS.search("".join(c["source"]))]
    blank = [i for i in drawing
             if not any("image/png" in o.get("data", {}) for o in cells[i].get("outputs", []))]
    assert not blank, f"{notebook.name}: cells {blank} draw a figure but show none"
    assert count_figures(out) >= len(drawing)


def test_training_from_scratch_runs_quick(quick_dir, tmp_path):
    # What `make weights` runs (notebook 02 with train_from_scratch), on notebook 01's quick data.
    notebook = next(nb for nb in NOTEBOOKS if nb.name.startswith("02_"))
    if not any((quick_dir / "data").glob("train_*.h5")):
        pytest.skip("notebook 01's quick data is missing (run the notebook tests in order)")
    # A copy: the networks trained here must not be found by the other notebooks' runs.
    data = shutil.copytree(quick_dir / "data", tmp_path / "data",
                           ignore=shutil.ignore_patterns("*.pt", "valence_*", "adapted_*"))
    out = tmp_path / notebook.name
    run_notebook(notebook, out, parameters={"quick": True, "seed": 0, "data_dir": str(data),
                                            "train_from_scratch": True}, timeout=600)
    text = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"]
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "training from scratch" in text and "12 steps" in text and "held-out stacks scored: 2" in text
