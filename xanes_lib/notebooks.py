"""Run the numbered notebooks headless with papermill (the main job and the notebook tests).

``python -m xanes_lib.notebooks --out outputs`` executes every ``notebooks/NN_*.ipynb`` in
order on its shipped defaults, writes the executed notebooks to ``outputs/`` and the figures
they drew to ``outputs/figures/``. ``--quick`` runs the fast mode used by the tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from pathlib import Path

__all__ = [
    "NOTEBOOKS_DIR", "list_notebooks", "run_notebook", "export_figures", "main",
]

#: The repository's notebooks folder (the package is installed in editable mode).
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def list_notebooks(folder=NOTEBOOKS_DIR) -> list[Path]:
    """List the numbered notebooks ``NN_snake_case.ipynb`` of ``folder``, in order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if _NAME.match(p.name))


def run_notebook(notebook, output, *, parameters=None, cwd=None, timeout: int = 3600):
    """Execute one notebook with papermill and return the executed notebook node.

    Parameters
    ----------
    notebook, output : path-like
        Source notebook and where to write the executed copy.
    parameters : dict, optional
        Values injected after the cell tagged ``parameters``.
    cwd : path-like, optional
        Working directory of the kernel; default the notebook's folder (so that the
        notebooks' relative defaults such as ``../data/derived`` hold).
    timeout : int
        Seconds allowed per cell.
    """
    import papermill as pm

    notebook = Path(notebook)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return pm.execute_notebook(str(notebook), str(output), parameters=parameters or {},
                               cwd=str(cwd or notebook.parent), kernel_name="python3",
                               execution_timeout=timeout, progress_bar=False)


def export_figures(executed, folder) -> list[Path]:
    """Write every PNG output of an executed notebook to ``folder``; return the paths."""
    nb = json.loads(Path(executed).read_text())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem, paths = Path(executed).stem, []
    for ci, cell in enumerate(nb.get("cells", [])):
        for oi, out in enumerate(cell.get("outputs", [])):
            png = out.get("data", {}).get("image/png")
            if png:
                path = folder / f"{stem}_cell{ci:02d}_{oi}.png"
                path.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
                paths.append(path)
    return paths


def main(argv=None) -> int:
    """Command line: execute all notebooks in order."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs", help="folder for executed notebooks and figures")
    ap.add_argument("--quick", action="store_true", help="fast mode (quick=True) of every notebook")
    ap.add_argument("--only", nargs="*", default=None, help="notebook name prefixes, e.g. 01 04")
    args = ap.parse_args(argv)
    out = Path(args.out)
    params = {"quick": True} if args.quick else {}
    for nb in list_notebooks():
        if args.only and not any(nb.name.startswith(p) for p in args.only):
            continue
        t0 = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        executed = out / nb.name
        run_notebook(nb, executed, parameters=params)
        figs = export_figures(executed, out / "figures")
        print(f"  done in {time.perf_counter() - t0:.0f} s, {len(figs)} figures", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
