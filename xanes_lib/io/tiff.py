"""TIFF stacks with an energy list, a common export of TXM-XANES software, read as a Stack.

The images are a multi-page TIFF (one page per energy) or a folder of single-image TIFFs
(ordered by the numbers in their names: ``img_2.tif`` before ``img_10.tif``, ``E_8.233keV.tif``
before ``E_8.33keV.tif``); the energies
are an array or a text file of one column (energies, one per image, in image order) or two
(an image index, 0- or 1-based, and the energy, in either order). Read with tifffile.

The checks are those of :func:`xanes_lib.io.read_stack`: energies strictly increasing and one
per image, NaN/inf, raw counts (corrected with a given flat field, refused without one),
frames that measure nothing, the element (given or inferred from the energies).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..validate import EV_MIN, EV_PER_KEV, KEV_MAX, check_energies, check_stack, energies_to_ev
from ._intake import (
    BAD_FRAMES_MODES,
    finish_stack,
    numeric_order,
    parse_pixel_size,
    refuse_nonfinite,
    to_transmission,
    warn,
)
from .stacks import Stack, _check_frame, _check_label, _real_array

__all__ = ["TIFF_EXTENSIONS", "read_energy_list", "read_tiff_stack"]

#: File name endings of TIFF images.
TIFF_EXTENSIONS = (".tif", ".tiff")
_ENERGY_DECIMALS_EV = 6
_COMMENT = re.compile(r"[#%].*$")
_SPLIT = re.compile(r"[,;\s]+")
_UNIT = re.compile(r"k?ev", re.IGNORECASE)


def _index_column(values: np.ndarray) -> int | None:
    """0 or 1 when ``values`` are the integers 0..n-1 or 1..n in some order, else None."""
    if not np.all(values == np.round(values)):
        return None
    for base in (0, 1):
        if np.array_equal(np.sort(values), np.arange(base, base + values.size)):
            return base
    return None


def _text_lines(source: str) -> list[str]:
    """Lines of a text file: UTF-8 (with or without the byte-order mark spreadsheets write) or UTF-16."""
    with open(source, "rb") as fh:
        raw = fh.read()
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return raw.decode(encoding, errors="replace").splitlines()


def _tokens(text: str, decimal_comma: bool) -> list[str]:
    """Fields of one line, without quotes and without a unit written after a number ("8333.0 eV")."""
    fields = re.split(r"[;\s]+", text) if decimal_comma else _SPLIT.split(text)
    fields = [f.strip("\"'") for f in fields]
    fields = [f.replace(",", ".") if decimal_comma else f for f in fields if f]
    return [f for i, f in enumerate(fields) if not (i and _UNIT.fullmatch(f) and _is_number(fields[i - 1]))]


def _parse_rows(source: str, *, decimal_comma: bool = False) -> tuple[np.ndarray, int]:
    """Numeric rows of a text file (header lines and comments skipped) and the header count.

    With ``decimal_comma`` commas are decimal points and only semicolons and spaces separate.
    Quotes around numbers and a unit after a number (``8333.0 eV``) are dropped.
    """
    lines = _text_lines(source)
    rows, skipped = [], 0
    for number, line in enumerate(lines, start=1):
        text = _COMMENT.sub("", line).strip()
        if not text:
            continue
        tokens = _tokens(text, decimal_comma)
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            if rows:
                raise ValueError(f"energy list {source}: line {number} is not numbers: {line.strip()!r}. "
                                 "Only header lines may precede the numbers; remove it or comment it "
                                 "out with '#'.") from None
            skipped += 1
            continue
        if len(rows[-1]) != len(rows[0]):
            raise ValueError(f"energy list {source}: line {number} has {len(rows[-1])} column(s), the first "
                             f"numeric line {len(rows[0])}; every line needs the same columns.")
    if not rows:
        raise ValueError(f"energy list {source} holds no numbers; write one energy per line (or an image "
                         "index and an energy).")
    return np.asarray(rows, dtype=np.float64), skipped


def read_energy_list(path, *, unit: str | None = None) -> tuple[np.ndarray, dict]:
    r"""Read photon energies from a text file of one or two columns.

    Parameters
    ----------
    path : str or os.PathLike
        Text file: one energy per line, in image order; or two columns, an image index (the
        integers 0..E-1 or 1..E, in any order) and the energy (either column first).
        Separators: spaces, tabs, commas or semicolons; header lines before the numbers and
        comments after ``#`` or ``%`` are skipped; quotes around numbers and a unit after a
        number (``8333.0 eV``) are dropped; UTF-8 (with or without a byte-order mark) or
        UTF-16 text. Decimal commas (``8333,5``) are not read: a
        file without a decimal point that does not read, but would with its commas taken for
        decimal points, is refused naming the first one.
    unit : {None, "eV", "keV"}
        Unit of the energies; None tells it from their magnitude (keV below 200, eV above
        1000).

    Returns
    -------
    energies_eV : numpy.ndarray
        (E,) float64, in eV, in image order.
    info : dict
        How the file was read: ``file``, ``columns``, ``energy_column`` and
        ``index_column`` (1-based column numbers, None when absent), ``index_base`` (0 or 1),
        ``unit`` (as written), ``header_lines``.

    Raises
    ------
    ValueError
        For a file without numbers, rows of unequal length, more than two columns, two
        columns neither of which is an image index (naming the column that looks like one and
        what is wrong with it: a gap, a repeat, another start), energies not strictly
        increasing (in image order), out of the hard X-ray range or of an undetectable unit,
        and decimal commas (naming the line and the value).
    FileNotFoundError
        If the file does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "e.txt"
    >>> _ = path.write_text("image energy\n1 8.3400\n0 8.3300\n")
    >>> energies, info = read_energy_list(path)
    >>> energies.tolist(), info["index_column"], info["unit"]
    ([8330.0, 8340.0], 1, 'keV')
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"energy list {source} does not exist or is not a file; give the text file "
                                "of energies (one per image) or an array.")
    if unit not in (None, "eV", "keV"):
        raise ValueError(f"unit must be None (detect), 'eV' or 'keV'; got {unit!r}.")
    where = f"energy list {source}"
    try:
        rows, skipped = _parse_rows(source)
        values, info = _from_columns(rows, where)
        energies_eV, used = _to_ev(values, unit, where)
    except ValueError as err:
        _refuse_decimal_commas(source, unit, where, err)
        raise
    return energies_eV, {"file": os.path.basename(source), **info, "header_lines": skipped, "unit": used}


def _refuse_decimal_commas(source: str, unit, where: str, err: ValueError) -> None:
    """Raise a ValueError naming the first decimal comma when the list reads with commas as decimal points.

    Only a file without a decimal point in its numbers, that ``err`` refused, and that gives valid
    energies when its commas are read as decimal points; otherwise return (``err`` stands).
    """
    lines = _text_lines(source)
    texts = [(n, _COMMENT.sub("", line).strip()) for n, line in enumerate(lines, start=1)]
    numeric = [(n, t) for n, t in texts if t and all(_is_number(w) for w in _SPLIT.split(t) if w)]
    found = [(n, m.group()) for n, t in numeric for m in [re.search(r"\d+,\d+", t)] if m]
    if not found or any("." in t for _, t in numeric):
        return
    try:
        rows, _ = _parse_rows(source, decimal_comma=True)
        values, _ = _from_columns(rows, where)
        e, _ = _to_ev(values, unit, where)
    except ValueError:
        return
    number, token = found[0]
    raise ValueError(f"{where}: line {number} holds {token!r}, and no line has a decimal point: decimal "
                     f"commas? Commas separate columns here, so {token!r} reads as two numbers (read with "
                     f"decimal points the list gives {e[0]:g} ... {e[-1]:g} eV). Write decimal points "
                     f"({token.replace(',', '.')!r}), or pass the energies as an array.") from err


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _from_columns(rows: np.ndarray, where: str) -> tuple[np.ndarray, dict]:
    """Energies in image order from (E, 1) rows, or (E, 2) rows of an image index and the energy."""
    n_rows, n_cols = rows.shape
    info = {"columns": n_cols, "energy_column": 1, "index_column": None, "index_base": None}
    if n_cols == 1:
        return rows[:, 0], info
    if n_cols != 2:
        raise ValueError(f"{where} has {n_cols} columns; give one (the energies) or two (an image index and "
                         "the energy), or pass the energies as an array.")
    bases = [_index_column(rows[:, c]) for c in (0, 1)]
    index_col = 0 if bases[0] is not None else 1 if bases[1] is not None else None
    if index_col is None:
        raise ValueError(_no_index(rows, where))
    order = rows[:, index_col].astype(int) - bases[index_col]
    values = np.empty(n_rows)
    values[order] = rows[:, 1 - index_col]
    info.update(energy_column=2 - index_col, index_column=index_col + 1, index_base=bases[index_col])
    return values, info


def _no_index(rows: np.ndarray, where: str) -> str:
    """Why two columns hold no image index, naming the column that looks like one, if any."""
    n = rows.shape[0]
    said = f"{where} has two columns and neither is an image index (the integers 0..{n - 1} or 1..{n})"
    looks = [c for c in (0, 1) if np.all(rows[:, c] == np.round(rows[:, c]))
             and rows[:, c].min() >= 0 and rows[:, c].max() < EV_MIN]
    if len(looks) != 1:
        return (f"{said}: which one is the energy is unclear. Keep only the energy column, or pass the "
                "energies as an array (e.g. np.loadtxt(path, usecols=1)).")
    c = looks[0]
    uniq, counts = np.unique(rows[:, c].astype(int), return_counts=True)
    gaps = np.setdiff1d(np.arange(uniq[0], uniq[-1] + 1), uniq)
    notes = [f"{', '.join(map(str, uniq[counts > 1][:3]))} repeated"] if (counts > 1).any() else []
    if gaps.size:
        notes.append(f"{', '.join(map(str, gaps[:3]))}{' ...' if gaps.size > 3 else ''} missing")
    notes += [f"starting at {uniq[0]}"] if uniq[0] > 1 else []
    return (f"{said}: column {c + 1} looks like one, but holds the integers {uniq[0]}..{uniq[-1]} "
            f"({', '.join(notes)}). Number the images 0..{n - 1} (an image left out of the stack leaves its "
            f"line out too), or keep only the energy column (column {2 - c}).")


def _energy_array(energies) -> tuple[np.ndarray, dict]:
    """Energies in image order from an (E,) array, or (E, 2) rows of an image index and the energy."""
    a = np.asarray(energies, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 2 and a.shape[0] > 1:
        return _from_columns(a, f"the given energies {a.shape}")
    if sum(n > 1 for n in a.shape) > 1:
        raise ValueError(f"the given energies have shape {a.shape}; give one energy per image (E,), or "
                         "(E, 2) rows of an image index and the energy (e.g. np.loadtxt(path)).")
    return a.ravel(), {"columns": 1, "energy_column": 1, "index_column": None, "index_base": None}


def _to_ev(values, unit: str | None, where: str) -> tuple[np.ndarray, str]:
    if unit not in (None, "eV", "keV"):
        raise ValueError(f"unit must be None (detect), 'eV' or 'keV'; got {unit!r}.")
    values = check_energies(values, name="energies", unit=unit or "as given", source=where)
    energies_eV, unit = energies_to_ev(values, unit=unit, source=where)
    if energies_eV[0] < EV_MIN or energies_eV[-1] > KEV_MAX * EV_PER_KEV:
        raise ValueError(f"energies of {where} give {energies_eV[0]:g} ... {energies_eV[-1]:g} eV when read "
                         f"as {unit}; hard X-ray edges lie at 1-200 keV. Check unit=.")
    return np.round(energies_eV, _ENERGY_DECIMALS_EV), unit


def _imread(path: str) -> np.ndarray:
    """All pages of a TIFF as one array; colour (samples per pixel > 1) is refused."""
    import tifffile

    shapes, skipped, axes, data = [], [], "", None
    try:
        with tifffile.TiffFile(path) as tif:
            every = tif.series
            shapes = [tuple(s.shape) for s in every]
            stacks = [i for i, shape in enumerate(shapes) if len(shape) >= 3]
            if len(every) > 1 and not stacks and len(set(shapes)) == 1:
                # pages appended one by one: one 2-D series per page
                axes, data = "Q" + every[0].axes, np.stack([np.asarray(s.asarray()) for s in every])
            elif len(every) == 1 or len(stacks) == 1:  # the one multi-page series, beside single pages
                chosen = every[stacks[0] if stacks else 0]
                skipped = [shape for i, shape in enumerate(shapes) if chosen is not every[i]]
                axes, data = chosen.axes, np.asarray(chosen.asarray())
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise OSError(f"{path} could not be read as a TIFF ({type(err).__name__}: {err}); is it a TIFF "
                      "image and completely copied?") from err
    if data is None:
        raise ValueError(f"{path} holds {len(every)} series of pages of shapes {shapes[:4]}; a TIFF stack "
                         "needs one series of 2-D pages, one per energy. Save the images alone "
                         "(tifffile.imwrite(path, stack)) or as a folder of one TIFF per energy.")
    if skipped:
        warn(f"{path}: read its series of {data.shape[0]} pages {data.shape}; left out {len(skipped)} other "
             f"series of shape(s) {skipped[:4]} (a preview, thumbnail or mask page).")
    if "S" in axes:
        raise ValueError(f"{path} holds colour images (axes {axes!r}, shape {data.shape}); a TIFF stack "
                         "needs one 2-D grey-level page per energy: export one channel.")
    return data


def _squeeze(a: np.ndarray) -> np.ndarray:
    """Drop length-1 axes before the last two (ImageJ hyperstacks keep them)."""
    lead = tuple(n for n in a.shape[:-2] if n != 1)
    return a.reshape(lead + a.shape[-2:]) if a.ndim >= 2 else a


def _read_images(source: str) -> tuple[np.ndarray, dict]:
    if os.path.isdir(source):
        names, order = numeric_order([n for n in os.listdir(source) if n.lower().endswith(TIFF_EXTENSIONS)
                                      and os.path.isfile(os.path.join(source, n))])
        if not names:
            raise ValueError(f"{source} holds no TIFF files ({', '.join(TIFF_EXTENSIONS)}); give a "
                             "multi-page TIFF or a folder of one TIFF per energy.")
        frames = []
        for n in names:
            a = _squeeze(_imread(os.path.join(source, n)))
            if a.ndim != 2:
                raise ValueError(f"{os.path.join(source, n)} holds an array of shape {a.shape}; a folder of "
                                 "TIFFs needs one 2-D image per file (give a multi-page TIFF by its path).")
            if frames and a.shape != frames[0].shape:
                raise ValueError(f"{os.path.join(source, n)} is {a.shape} pixels but {names[0]} is "
                                 f"{frames[0].shape}; every image of a stack must have the same size.")
            frames.append(a)
        layout = {"images": f"folder of {len(names)} TIFF files in the {order}", "first_file": names[0],
                  "last_file": names[-1]}
        return np.stack(frames), layout
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist; give a multi-page TIFF or a folder of TIFFs.")
    images = _squeeze(_imread(source))
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"{source} holds an array of shape {images.shape}; a TIFF stack needs one 2-D "
                         "grey-level page per energy (colour or multi-channel images are not XANES "
                         "stacks: export one channel).")
    return images, {"images": f"multi-page TIFF of {images.shape[0]} pages"}


def _load_frame(value, name: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        value = _imread(os.fspath(value))
    a = _squeeze(np.asarray(value))
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    return _check_frame(_real_array(a, name), name, shape,
                        fix="Average repeated frames (.mean(axis=0)) and check rows and columns.")


def read_tiff_stack(path, energies, *, element: str | None = None, edge: str = "K",
                    unit: str | None = None, flat=None, dark=None, pixel_size_nm=None,
                    allow_nonfinite: bool = False, bad_frames: str = "refuse") -> Stack:
    """Read a TIFF stack (multi-page file or folder of TIFFs) and its energies as a Stack.

    Parameters
    ----------
    path : str or os.PathLike
        A multi-page TIFF (pages in energy order) or a folder of single-image TIFFs (in the
        order of the numbers in their names, decimal points included: :func:`numeric_order`).
    energies : str, os.PathLike or array_like
        The energy list: a text file (see :func:`read_energy_list`), one energy per image, or
        (E, 2) rows of an image index and the energy (e.g. ``np.loadtxt`` of such a file), read
        as the file's two columns are.
    element : str, optional
        Absorbing element, refused when its tabulated edge lies outside the energies; None
        infers it from the energies (recorded as ``attrs["element_inferred"] = True``).
    edge : str
        Absorption edge.
    unit : {None, "eV", "keV"}
        Unit of the energies; None tells it from their magnitude. Recorded in
        ``provenance["energies"]``.
    flat, dark : array_like or path, optional
        Flat field and dark frame ((Y, X), (1, Y, X) or (E, Y, X); arrays or TIFF files).
        Images of raw counts (an integer dtype or a median above 5) are corrected with them
        on reading as ``(images - dark) / (flat - dark)`` (no dark: 0, with a warning) and
        refused without a flat. Transmission images are not corrected again; the frames are
        kept on the Stack.
    pixel_size_nm : float or str, optional
        Pixel size: a number of nm or a string such as "21.7 nm" or "0.0217 um".
    allow_nonfinite : bool
        If False, NaN or inf in the images raises.
    bad_frames : {"refuse", "drop", "keep"}
        As in :func:`xanes_lib.io.read_stack`.

    Returns
    -------
    Stack
        float32 transmission, energies in eV, ``source`` = ``path``, and ``provenance``
        (reader, layout, energy list columns and unit, intensity decision).

    Raises
    ------
    ValueError
        If the number of energies differs from the number of images, the energies are not
        strictly increasing, the images are not one 2-D grey-level image per energy (or of
        different sizes), hold NaN/inf, raw counts without a flat field, frames that
        measure nothing, an element whose edge lies outside the energies, or the element
        cannot be inferred.
    FileNotFoundError, OSError
        If a path does not exist or is not a readable TIFF.

    Examples
    --------
    >>> import tempfile, os, numpy as np, tifffile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     t = np.random.default_rng(0).uniform(0.4, 0.6, (3, 4, 5)).astype(np.float32)
    ...     tifffile.imwrite(os.path.join(d, "s.tif"), t, photometric="minisblack")
    ...     stack = read_tiff_stack(os.path.join(d, "s.tif"), [8.30, 8.34, 8.40], unit="keV")
    >>> stack.element, stack.energies_eV.tolist()
    ('Ni', [8300.0, 8340.0, 8400.0])
    """
    source = os.fspath(path)
    if bad_frames not in BAD_FRAMES_MODES:
        raise ValueError(f"bad_frames must be one of {BAD_FRAMES_MODES}; got {bad_frames!r}.")
    element = _check_label(element, "element")
    edge = _check_label(edge, "edge") or "K"
    images, provenance = _read_images(source)
    images = _real_array(images, "images")
    if isinstance(energies, str | os.PathLike):
        energies_eV, info = read_energy_list(energies, unit=unit)
        given = f"the energy list {os.fspath(energies)} has {energies_eV.size} energies"
    else:
        values, info = _energy_array(energies)
        energies_eV, used = _to_ev(values, unit, "the given energies")
        info = {"file": None, **info, "unit": used}
        given = f"{energies_eV.size} energies were given"
    if energies_eV.size != images.shape[0]:
        raise ValueError(f"{source} holds {images.shape[0]} images but {given}; they must match one to one "
                         "(a missing or extra page or file, or the energy list of another scan?).")
    check_stack(images, name="images", source=source, n_energies=energies_eV.size, allow_nonfinite=True)
    if not allow_nonfinite:
        refuse_nonfinite(images, name="images", source=source)
    flat = _load_frame(flat, "flat", images.shape)
    dark = _load_frame(dark, "dark", images.shape)
    transmission, intensity = to_transmission(
        images, energies_eV, flat, dark, name="images", source=source, mode="correct", flat_name="flat",
        dark_name="dark", refused_fix="",
        no_flat_fix=("Give the flat field (and dark frame) of the same scan: read_tiff_stack(path, energies, "
                     "flat=..., dark=...) corrects them on reading as (images - dark) / (flat - dark). If "
                     "they are transmission in percent, divide by 100."))
    provenance = {"reader": "read_tiff_stack", **provenance, "energies": info, **intensity}
    if pixel_size_nm is not None:
        pixel_size_nm, provenance["pixel_size"] = parse_pixel_size(pixel_size_nm, "pixel_size_nm")
    return finish_stack(transmission, energies_eV, flat, dark, name="images", source=source,
                        element=element, file_element=None, edge=edge, attrs={}, bad_frames=bad_frames,
                        missing_element="was read without element=", energies_name="the energy list",
                        pixel_size_nm=pixel_size_nm,
                        provenance=provenance)
