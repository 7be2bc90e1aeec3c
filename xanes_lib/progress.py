"""Progress bars of the long loops (training, adaptation, tiled inference, simulation, scoring).

:func:`progress_bar` is tqdm with one switch: in a Jupyter kernel it draws the notebook
widget, except when the environment variable ``XANES_LIB_PROGRESS`` is ``text``; then it
writes a plain text bar with the time left to stderr, which papermill passes on to the
terminal (``make run`` sets it for the kernels it starts). ``XANES_LIB_PROGRESS=off`` hides
every bar.
"""

from __future__ import annotations

import os
import sys

__all__ = ["PROGRESS_ENV", "progress_bar"]

#: Environment variable choosing the bars: unset (automatic), ``text`` or ``off``.
PROGRESS_ENV = "XANES_LIB_PROGRESS"


def progress_bar(iterable=None, *, total=None, desc: str | None = None, disable: bool = False, **kwargs):
    """Return a tqdm bar over ``iterable`` (or of ``total`` steps, updated by hand).

    Parameters
    ----------
    iterable : iterable, optional
        What to loop over.
    total : int, optional
        Number of steps when there is no iterable (or it has no length).
    desc : str, optional
        Label in front of the bar.
    disable : bool
        Hide the bar (e.g. ``progress=False`` of the caller).
    **kwargs
        Further tqdm options.

    Examples
    --------
    >>> sum(progress_bar(range(3), disable=True))
    3
    """
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if mode == "text":
        from tqdm.std import tqdm
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("mininterval", 2.0)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, disable=disable or mode == "off", **kwargs)
