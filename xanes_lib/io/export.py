"""Exports of valence maps for other tools: TIFF maps (Fiji, napari) and per-particle statistics (CSV).

The HDF5 results file (:func:`xanes_lib.io.write_results`) is the complete record; these
files are views of it for programs that do not read HDF5:

- :func:`write_map_tiffs` writes the oxidation state, its standard deviation, the sample mask
  and the unexplained-phase flags as single-image TIFFs (ImageJ layout, with the pixel size
  in um when known);
- :func:`particle_labels` numbers the connected regions of the mask ("particles");
- :func:`particle_statistics` summarises the oxidation state of every particle and
  :func:`write_particle_csv` writes those rows to a CSV file.

Every file is written to a temporary file beside the target and renamed into place (whole or
not at all), and never onto an input file (``inputs``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage

from ._hdf5 import atomic_file, check_not_input
from ._intake import parse_pixel_size

__all__ = ["MAP_TIFF_NAMES", "PARTICLE_COLUMNS", "write_map_tiffs", "particle_labels",
           "particle_statistics", "write_particle_csv"]

#: Maps written by :func:`write_map_tiffs`, in order: file stem -> (dtype, meaning).
MAP_TIFF_NAMES = {
    "oxidation_state": ("float32", "oxidation state, NaN where not mapped"),
    "oxidation_state_std": ("float32", "its standard deviation, NaN where not mapped"),
    "mask": ("uint8", "1 where the pixel was fitted (sample), 0 elsewhere"),
    "unexplained": ("uint8", "1 where no mix of the references explains the spectrum, 0 elsewhere"),
}

#: Columns of :func:`particle_statistics` rows and of the CSV file, in order.
PARTICLE_COLUMNS = (
    "label", "n_pixels", "n_mapped", "centroid_y_px", "centroid_x_px", "oxidation_state_mean",
    "oxidation_state_median", "oxidation_state_spread", "oxidation_state_std_mean", "unexplained_share",
)


def _maps(fit) -> dict[str, np.ndarray]:
    """Return the four maps of a fit or results object, checked to share one (Y, X) shape."""
    missing = [n for n in ("oxidation_state", "oxidation_state_std", "mask") if not hasattr(fit, n)]
    if missing:
        raise TypeError(f"fit must carry oxidation_state, oxidation_state_std and mask maps (a "
                        f"mapping.ReferenceFit or an io.ValenceResults); {type(fit).__name__} lacks "
                        f"{missing}.")
    mask = np.asarray(fit.mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"fit.mask must be a boolean (Y, X) map; got {mask.dtype} {mask.shape}.")
    flags = getattr(fit, "unexplained", None)
    maps = {"oxidation_state": np.asarray(fit.oxidation_state, dtype=np.float32),
            "oxidation_state_std": np.asarray(fit.oxidation_state_std, dtype=np.float32),
            "mask": mask, "unexplained": np.zeros_like(mask) if flags is None else np.asarray(flags)}
    for name, a in maps.items():
        if a.shape != mask.shape:
            raise ValueError(f"fit.{name} has shape {a.shape}; it must match the mask {mask.shape}.")
    if maps["unexplained"].dtype != bool:
        raise ValueError(f"fit.unexplained must be boolean; got {maps['unexplained'].dtype}.")
    return maps


def _check_path(value, name: str, what: str) -> None:
    """Refuse a ``name`` that is no path (TypeError naming what came and what is expected)."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a str or os.PathLike ({what}); got {type(value).__name__}. "
                        "Arguments in the wrong order?")


def _pixel_size(value) -> float | None:
    """Return a number of nm as given, or text with a unit read by :func:`parse_pixel_size` ("0 nm": None)."""
    if value is None:
        return None
    if isinstance(value, str | bytes | np.bytes_):
        return parse_pixel_size(value, "pixel_size_nm")[0]
    try:
        px = float(value)
    except (TypeError, ValueError):
        px = math.nan
    if not (math.isfinite(px) and px > 0):
        raise ValueError(f"pixel_size_nm must be a finite positive number of nm, text such as '21.7 nm', "
                         f"or None; got {value!r}.")
    return px


def write_map_tiffs(out_dir, fit, *, prefix: str = "", pixel_size_nm=None, inputs=(),
                    overwrite: bool = True) -> dict[str, Path]:
    """Write the oxidation state, its std, the mask and the unexplained flags as TIFF files.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder of the files; created when missing.
    fit : xanes_lib.mapping.ReferenceFit or xanes_lib.io.ValenceResults
        Anything with (Y, X) maps ``oxidation_state``, ``oxidation_state_std``, ``mask``
        (bool) and optionally ``unexplained`` (bool; None or absent writes all zeros).
    prefix : str
        Start of every file name, e.g. ``"sample7_"``: files are
        ``<prefix><name>.tif`` for each name of :data:`MAP_TIFF_NAMES`.
    pixel_size_nm : float or str, optional
        Pixel size: a number of nm or text such as ``"21.7 nm"`` or ``"0.0217 um"``; written
        as the resolution in um (ImageJ ``unit``). None (or ``"0 nm"``) leaves it out.
    inputs : path or sequence of paths, optional
        Files that must not be overwritten (the input stack); a target that is one of them
        (or a link to it) raises ``ValueError`` before anything is written.
    overwrite : bool
        If False, an existing target raises ``FileExistsError`` before anything is written.

    Returns
    -------
    dict of str to pathlib.Path
        The path written for each map name.

    Raises
    ------
    TypeError
        If ``out_dir`` is no path, or ``fit`` lacks one of the maps.
    ValueError
        If the maps differ in shape, the mask or flags are not boolean, the pixel size is not
        positive (or unparsable text), the prefix holds a path separator, or a target is an
        input file.
    IsADirectoryError, NotADirectoryError
        If a target is a folder, or ``out_dir`` is a file (before anything is written).
    FileExistsError
        If a target exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, types, numpy as np, tifffile
    >>> fit = types.SimpleNamespace(oxidation_state=np.full((2, 3), 3.0), mask=np.ones((2, 3), bool),
    ...                             oxidation_state_std=np.full((2, 3), 0.1), unexplained=None)
    >>> paths = write_map_tiffs(tempfile.mkdtemp(), fit, prefix="demo_", pixel_size_nm=250.0)
    >>> sorted(paths), tifffile.imread(paths["mask"]).tolist()
    (['mask', 'oxidation_state', 'oxidation_state_std', 'unexplained'], [[1, 1, 1], [1, 1, 1]])
    """
    import tifffile

    if not isinstance(prefix, str) or os.sep in prefix or (os.altsep and os.altsep in prefix):
        raise ValueError(f"prefix must be a file-name start without a path separator; got {prefix!r}. "
                         "Give the folder as out_dir.")
    _check_path(out_dir, "out_dir", "the folder of the TIFF files; write_map_tiffs(out_dir, fit)")
    maps = _maps(fit)
    px = _pixel_size(pixel_size_nm)
    folder = Path(out_dir)
    targets = {name: folder / f"{prefix}{name}.tif" for name in MAP_TIFF_NAMES}
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write the maps into {folder}: it is a file, not a folder; give a "
                                 "folder as out_dir.")
    for target in targets.values():        # every target is checked before any is written
        if target.is_dir():
            raise IsADirectoryError(f"cannot write {target}: it is a folder; remove it, or choose another "
                                    "prefix or out_dir. Nothing was written.")
        check_not_input(target, inputs)
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(f"{target} exists and overwrite=False; choose another prefix or folder, "
                                  "delete it, or pass overwrite=True.")
    options = {"imagej": True}
    if px is not None:
        per_um = 1000.0 / px
        options.update(resolution=(per_um, per_um), metadata={"unit": "um"})
    for name, target in targets.items():
        data = maps[name].astype(MAP_TIFF_NAMES[name][0])
        with atomic_file(target, inputs=inputs) as tmp:
            tifffile.imwrite(tmp, data, **options)
    return targets


def particle_labels(mask, *, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Label the connected regions ("particles") of a sample mask, 1 to n.

    Parameters
    ----------
    mask : array_like of bool, shape (Y, X)
        The sample mask.
    connectivity : {1, 2}
        1: pixels touching by a side belong together; 2: by a corner too.

    Returns
    -------
    labels : numpy.ndarray of int32, shape (Y, X)
        0 outside the mask, 1..n in raster order of each region's first pixel.
    n : int
        Number of regions.

    Examples
    --------
    >>> labels, n = particle_labels(np.array([[1, 0, 1], [1, 0, 0]], bool))
    >>> n, labels.tolist()
    (2, [[1, 0, 2], [1, 0, 0]])
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != bool:
        raise ValueError(f"mask must be a boolean (Y, X) map; got {m.dtype} {m.shape}.")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (sides) or 2 (sides and corners); got {connectivity!r}.")
    labels, n = ndimage.label(m, structure=ndimage.generate_binary_structure(2, connectivity))
    return labels.astype(np.int32), int(n)


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if values.size else math.nan


def particle_statistics(fit, *, connectivity: int = 1, min_pixels: int = 1) -> list[dict]:
    """Statistics of the oxidation state in every connected region of the mask.

    Parameters
    ----------
    fit : xanes_lib.mapping.ReferenceFit or xanes_lib.io.ValenceResults
        As in :func:`write_map_tiffs`.
    connectivity : {1, 2}
        See :func:`particle_labels`.
    min_pixels : int
        Regions with fewer pixels are left out (specks of noise); their labels are skipped.

    Returns
    -------
    list of dict
        One row per region, in label order, with the keys of :data:`PARTICLE_COLUMNS`:
        ``label`` (as in :func:`particle_labels`), ``n_pixels`` (region size),
        ``n_mapped`` (pixels with a finite oxidation state: unexplained pixels have none),
        ``centroid_y_px``, ``centroid_x_px`` (row and column of the region's centre),
        ``oxidation_state_mean``, ``oxidation_state_median``, ``oxidation_state_spread``
        (standard deviation over the mapped pixels: heterogeneity plus noise),
        ``oxidation_state_std_mean`` (mean of the per-pixel standard deviations) and
        ``unexplained_share`` (flagged pixels / region size). Statistics over no pixel are NaN.

    Examples
    --------
    >>> import types
    >>> fit = types.SimpleNamespace(oxidation_state=np.array([[2.0, 4.0, np.nan, 3.0]]),
    ...                             oxidation_state_std=np.full((1, 4), 0.2),
    ...                             mask=np.array([[1, 1, 0, 1]], bool), unexplained=None)
    >>> [(r["label"], r["n_pixels"], r["oxidation_state_mean"]) for r in particle_statistics(fit)]
    [(1, 2, 3.0), (2, 1, 3.0)]
    """
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int | np.integer) or min_pixels < 1:
        raise ValueError(f"min_pixels must be an integer >= 1; got {min_pixels!r}.")
    maps = _maps(fit)
    labels, n = particle_labels(maps["mask"], connectivity=connectivity)
    rows = []
    for lab, region in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[region] == lab
        size = int(inside.sum())
        if size < min_pixels:
            continue
        state = maps["oxidation_state"][region][inside]
        std = maps["oxidation_state_std"][region][inside]
        mapped = np.isfinite(state)
        yy, xx = np.nonzero(inside)
        rows.append({
            "label": lab, "n_pixels": size, "n_mapped": int(mapped.sum()),
            "centroid_y_px": float(yy.mean() + region[0].start),
            "centroid_x_px": float(xx.mean() + region[1].start),
            "oxidation_state_mean": _nan_stat(np.mean, state[mapped]),
            "oxidation_state_median": _nan_stat(np.median, state[mapped]),
            "oxidation_state_spread": _nan_stat(np.std, state[mapped]),
            "oxidation_state_std_mean": _nan_stat(np.mean, std[mapped & np.isfinite(std)]),
            "unexplained_share": float(maps["unexplained"][region][inside].mean()),
        })
    return rows


def _cell(value) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def write_particle_csv(path, rows, *, inputs=(), overwrite: bool = True) -> Path:
    """Write per-particle rows (:func:`particle_statistics`) to a CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file; its folder is created when missing.
    rows : sequence of dict
        Rows with the keys of :data:`PARTICLE_COLUMNS` (further keys are written after them,
        in the order of the first row). An empty sequence writes the header only.
    inputs : path or sequence of paths, optional
        Files that must not be overwritten (the input stack).
    overwrite : bool
        If False, an existing ``path`` raises ``FileExistsError``.

    Returns
    -------
    pathlib.Path
        The file written. Floats have 6 significant digits; NaN is written as ``nan``.

    Raises
    ------
    TypeError
        If ``path`` is no path or ``rows`` no sequence of rows (e.g. a fit: pass
        ``particle_statistics(fit)``).
    ValueError
        If a row is not a dict, lacks a column or holds keys the first row does not, or
        ``path`` is an input file.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> row = dict.fromkeys(PARTICLE_COLUMNS, 1.0) | {"label": 1}
    >>> out = write_particle_csv(pathlib.Path(tempfile.mkdtemp()) / "p.csv", [row])
    >>> out.read_text().splitlines()[1][:8]
    '1,1,1,1,'
    """
    _check_path(path, "path", "the CSV file; write_particle_csv(path, rows)")
    if hasattr(rows, "oxidation_state"):
        raise TypeError(f"rows must be a sequence of dicts (the rows of particle_statistics); got "
                        f"{type(rows).__name__}. Pass particle_statistics(fit).")
    if isinstance(rows, str | bytes | os.PathLike | dict) or not isinstance(rows, Iterable):
        raise TypeError(f"rows must be a sequence of dicts (the rows of particle_statistics); got "
                        f"{type(rows).__name__}.")
    rows = list(rows)
    extra = [k for k in (rows[0] if rows and isinstance(rows[0], dict) else {}) if k not in PARTICLE_COLUMNS]
    columns = list(PARTICLE_COLUMNS) + extra
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"rows[{i}] must be a dict (a row of particle_statistics); got "
                             f"{type(row).__name__}.")
        if set(row) != set(columns):
            lacking, unknown = sorted(set(columns) - set(row)), sorted(set(row) - set(columns))
            raise ValueError(f"rows[{i}] does not have the columns of the table: lacking {lacking}, "
                             f"unknown {unknown}. Every row needs the keys of PARTICLE_COLUMNS.")
    target = Path(path)
    check_not_input(target, inputs)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists and overwrite=False; choose another name, delete it, "
                              "or pass overwrite=True.")
    with atomic_file(target, inputs=inputs) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([_cell(row[c]) for c in columns] for row in rows)
    return target
