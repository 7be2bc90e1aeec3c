"""Run the numbered notebooks headless with papermill (the main job and the notebook tests).

``python -m xanes_lib.notebooks --out outputs`` executes every ``notebooks/NN_*.ipynb`` in
order on its shipped defaults and writes

- the executed notebooks to ``outputs/`` and the figures they drew to ``outputs/figures/``;
- each executed notebook rendered to HTML in ``outputs/html/``;
- ``outputs/index.html``: one page with the time, the figures and the key numbers (the
  summary cell) of every notebook, linking the rendered notebooks.

While it runs, the terminal shows each notebook, each section as it starts and the
progress bars of the long loops (the kernels draw text bars on stderr:
:mod:`xanes_lib.progress`). The kernels draw figures inline whatever ``MPLBACKEND`` the
calling shell sets. ``--quick`` runs the fast mode used by the tests.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .progress import PROGRESS_ENV

__all__ = [
    "NOTEBOOKS_DIR", "KERNEL_ENV", "SUMMARY_MARK", "list_notebooks", "section_titles", "run_notebook",
    "export_figures", "count_figures", "summary_text", "NotebookRun", "write_report", "main",
]

#: The repository's notebooks folder (the package is installed in editable mode).
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
#: Environment of the kernels papermill starts: inline figures, text progress bars.
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", PROGRESS_ENV: "text"}
#: Marker of the summary cell of a notebook (its key numbers; nbval checks it).
SUMMARY_MARK = "# NBVAL_CHECK_OUTPUT"


def list_notebooks(folder=NOTEBOOKS_DIR) -> list[Path]:
    """List the numbered notebooks ``NN_snake_case.ipynb`` of ``folder``, in order."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if _NAME.match(p.name))


def section_titles(notebook) -> dict[str, str]:
    """Map the id of each code cell that opens a section to the section's title.

    A section opens with a markdown cell holding a ``#`` or ``##`` heading; its first code
    cell gets the title (the last heading before it).
    """
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    titles, pending = {}, None
    for cell in cells:
        source = "".join(cell.get("source", []))
        if cell["cell_type"] == "markdown":
            heads = [line.lstrip("#").strip() for line in source.splitlines()
                     if re.match(r"^#{1,2} ", line)]
            pending = heads[-1] if heads else pending
        elif cell["cell_type"] == "code" and pending is not None and "id" in cell:
            titles[cell["id"]], pending = pending, None
    return titles


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables for the kernels started inside the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(notebook, output, *, parameters=None, cwd=None, timeout: int = 3600, log=None):
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
    log : text stream, optional
        Receives each section's title as it starts and the kernel's stderr (progress bars,
        warnings), e.g. ``sys.stderr``; None runs silently.
    """
    import papermill as pm

    notebook = Path(notebook)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    hooks = {}
    if log is not None:
        titles = section_titles(notebook)

        def announce(cell, cell_index):
            title = titles.get(cell.get("id"))
            if title:
                log.write(f"  - {title}\n")
                log.flush()

        hooks = {"stderr_file": log, "on_cell_start": announce}
    with _environment(KERNEL_ENV):
        return pm.execute_notebook(str(notebook), str(output), parameters=parameters or {},
                                   cwd=str(cwd or notebook.parent), kernel_name="python3",
                                   execution_timeout=timeout, progress_bar=False, **hooks)


def _png_outputs(executed) -> list[tuple[int, int, bytes]]:
    nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    found = []
    for ci, cell in enumerate(nb.get("cells", [])):
        for oi, out in enumerate(cell.get("outputs", [])):
            png = out.get("data", {}).get("image/png")
            if png:
                found.append((ci, oi, base64.b64decode(png if isinstance(png, str) else "".join(png))))
    return found


def count_figures(executed) -> int:
    """Count the PNG figures of an executed notebook."""
    return len(_png_outputs(executed))


def export_figures(executed, folder) -> list[Path]:
    """Write every PNG output of an executed notebook to ``folder``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem, paths = Path(executed).stem, []
    for ci, oi, data in _png_outputs(executed):
        path = folder / f"{stem}_cell{ci:02d}_{oi}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def summary_text(executed) -> str:
    """Return the printed output of the summary cell (marked ``# NBVAL_CHECK_OUTPUT``) of a notebook."""
    nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    texts = []
    for cell in nb.get("cells", []):
        if cell["cell_type"] == "code" and SUMMARY_MARK in "".join(cell.get("source", [])):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    texts.append("".join(out.get("text", [])))
                elif "text/plain" in out.get("data", {}):
                    texts.append("".join(out["data"]["text/plain"]))
    return "".join(texts).strip()


@dataclass
class NotebookRun:
    """What the main job records of one executed notebook (for the report)."""

    name: str
    executed: Path
    seconds: float
    figures: int
    summary: str


def _render_html(executed: Path, folder: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{executed.stem}.html"
    path.write_text(body, encoding="utf-8")
    return path


def write_report(runs, out) -> Path:
    """Render every executed notebook to HTML and write ``out/index.html`` linking them.

    The index lists, per notebook, its run time, its number of figures and its key numbers
    (the summary cell's output), and shows the notebook's first figure.
    """
    out = Path(out)
    rows = []
    for run in runs:
        page = _render_html(run.executed, out / "html")
        figures = sorted((out / "figures").glob(f"{run.executed.stem}_cell*.png"))
        thumb = (f'<img src="{html.escape(figures[0].relative_to(out).as_posix())}" alt="first figure" '
                 'style="max-width:480px">' if figures else "<em>no figure</em>")
        rows.append(f"<h2><a href=\"{html.escape(page.relative_to(out).as_posix())}\">{html.escape(run.name)}"
                    f"</a></h2>\n<p>{run.seconds:.0f} s, {run.figures} figures</p>\n"
                    f"<pre>{html.escape(run.summary or '(no summary cell)')}</pre>\n{thumb}\n")
    total = sum(r.seconds for r in runs)
    index = out / "index.html"
    head = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xanes-lib main job</title></head>\n"
            "<body style=\"font-family:sans-serif;max-width:60em;margin:auto\">\n"
            f"<h1>xanes-lib: the main job</h1>\n<p>{len(runs)} notebooks in {total:.0f} s. "
            "Each title links the executed notebook with its figures.</p>\n")
    index.write_text(head + "".join(rows) + "</body></html>\n", encoding="utf-8")
    return index


def main(argv=None) -> int:
    """Command line: execute all notebooks in order, then write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs", help="folder for executed notebooks, figures and the report")
    ap.add_argument("--quick", action="store_true", help="fast mode (quick=True) of every notebook")
    ap.add_argument("--only", nargs="*", default=None, help="notebook name prefixes, e.g. 01 04")
    args = ap.parse_args(argv)
    out = Path(args.out)
    params = {"quick": True} if args.quick else {}
    runs = []
    for nb in list_notebooks():
        if args.only and not any(nb.name.startswith(p) for p in args.only):
            continue
        t0 = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        executed = out / nb.name
        run_notebook(nb, executed, parameters=params, log=sys.stderr)
        figs = export_figures(executed, out / "figures")
        runs.append(NotebookRun(nb.name, executed, time.perf_counter() - t0, len(figs),
                                summary_text(executed)))
        print(f"  done in {runs[-1].seconds:.0f} s, {len(figs)} figures", flush=True)
    index = write_report(runs, out)
    print("\nnotebook                               time  figures")
    for r in runs:
        print(f"{r.name:38s} {r.seconds:5.0f} s  {r.figures:3d}")
    print(f"{'total':38s} {sum(r.seconds for r in runs):5.0f} s\nreport: {index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
