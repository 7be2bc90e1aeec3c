"""Reading stack files: validation on read, ground truth for simulation and tests only.

Files are opened read-only. ``ground_truth/`` is read only by :func:`read_ground_truth`,
which is meant for simulation, metrics and tests; :func:`read_stack` never opens it.

NSLS-II FXI exports are read as written: ``img_xanes`` as corrected float32 transmission
(most exports) or raw counts (an integer dtype or a median above 5: corrected with the file's
``img_bkg``/``img_dark`` and a warning by default, refused when the file has no flat field or
when asked), ``X_eng`` in keV, ``Pixel Size`` as
``"21.666666666666668nm"`` or ``"0.0217 um"`` or a number of nm, ``Magnification``, averaged
frames with their axis kept, the scan metadata; what was decided is in ``Stack.provenance``.
"""

from __future__ import annotations

import hashlib
import math
import os

import h5py
import numpy as np

from ..validate import EV_MIN, EV_PER_KEV, KEV_MAX, check_energies, check_stack, energies_to_ev
from ._checks import DamagedFileError, read_dataset
from ._hdf5 import open_read, read_attrs, to_python
from ._intake import (
    BAD_FRAMES_MODES,
    RAW_COUNTS_MODES,
    REPEAT_POS_RE,
    describe_intensity,
    finish_stack,
    parse_pixel_size,
    refuse_nonfinite,
    to_transmission,
    warn,
)
from .stacks import (
    DARK_KEY,
    DRIFT_KEY,
    ENERGY_KEY,
    FLAT_KEY,
    GROUND_TRUTH_KEY,
    IMAGES_KEY,
    MAGNIFICATION_KEY,
    PIXEL_SIZE_KEY,
    PROVENANCE_ATTR,
    GroundTruth,
    Stack,
    _check_frame,
    _check_label,
    _real_array,
    _validate_ground_truth,
)

__all__ = [
    "read_stack", "has_ground_truth", "read_ground_truth", "stack_checksum", "DamagedFileError",
    "BAD_FRAMES_MODES", "RAW_COUNTS_MODES",
]

_ENERGY_DECIMALS_EV = 6           # keV -> eV round-off is removed by rounding to 1 micro-eV
#: Scalar datasets of FXI exports recorded in ``Stack.provenance["instrument"]``.
_INSTRUMENT_KEYS = ("scan_id", "uid", "note", "scan_time")


def _positions_in(f: h5py.File) -> list[str]:
    """Names of the positions stored inside an open file.

    Groups holding ``img_xanes`` and ``img_xanes_posN`` datasets; ``ground_truth/`` and the
    other groups of the layout are not opened.
    """
    from .positions import _IN_FILE_DATASET_RE, _NOT_POSITIONS  # positions builds on this module

    found = []
    for key in f.keys():
        if key in _NOT_POSITIONS:
            continue
        kind = f.get(key, getclass=True)
        if (kind is h5py.Dataset and _IN_FILE_DATASET_RE.match(key) and f[key].ndim == 3) or \
                (kind is h5py.Group and isinstance(f[key].get(IMAGES_KEY), h5py.Dataset)):
            found.append(key)
    return found


def _linked(group, key: str, source: str):
    """``group[key]``; a link whose target cannot be opened is refused naming the file and the key."""
    try:
        return group[key]
    except KeyError as err:
        raise ValueError(f"{key!r} in {source} cannot be opened ({err}): it is a link to an object that is "
                         "not there, e.g. an external link to a data file that was not copied with this "
                         f"file. Copy the linked file next to {os.path.basename(source)}, or export the "
                         "stack as one file.") from None


def _require_dataset(f: h5py.File, key: str, source: str) -> h5py.Dataset:
    if key not in f:
        positions = _positions_in(f) if key == IMAGES_KEY else []
        if positions:
            shown = ", ".join(repr(p) for p in positions[:6]) + (" ..." if len(positions) > 6 else "")
            raise ValueError(f"{source} has no {key!r} at its root but holds {len(positions)} positions "
                             f"({shown}): read one with xanes_lib.io.read_position(path, name) (all are "
                             "listed by xanes_lib.io.list_positions(path)).")
        raise ValueError(f"{source} has no {key!r} dataset (keys present: {sorted(f.keys())}). A stack "
                         f"file needs {IMAGES_KEY!r} (E, Y, X) transmission and {ENERGY_KEY!r} (E,) "
                         "energies in keV (the FXI export layout); rename the datasets or re-export.")
    obj = _linked(f, key, source)
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{key!r} in {source} is a {type(obj).__name__}, not a dataset; "
                         "the stack layout expects a dataset there.")
    return obj


def _read_energies(ds: h5py.Dataset, source: str, energy_unit: str | None) -> np.ndarray:
    if ds.ndim != 1:
        raise ValueError(f"{ENERGY_KEY} in {source} must be 1-D (one energy per image); got shape "
                         f"{ds.shape}. Flatten it (X_eng.ravel()) when it is a column.")
    raw = _real_array(read_dataset(ds, source), f"{ENERGY_KEY} in {source}")
    return energies_in_ev(raw, source, energy_unit)


def _unit_attribute(ds: h5py.Dataset) -> str | None:
    """Return the unit ``X_eng`` states in a ``units`` (or ``unit``) attribute: "eV", "keV" or None."""
    for key in ("units", "unit"):
        said = str(to_python(ds.attrs[key])).strip().lower() if key in ds.attrs else ""
        if said in ("ev", "kev"):
            return "eV" if said == "ev" else "keV"
    return None


def energies_in_ev(raw, source: str, energy_unit: str | None) -> np.ndarray:
    """``X_eng`` values as read (keV unless ``energy_unit``) to checked energies in eV.

    Shared by the HDF5 reader and :func:`xanes_lib.io.read_stack_header` (HDF5 and Zarr).
    """
    where = f"{ENERGY_KEY} in {source}"
    raw = np.asarray(raw, dtype=np.float64)
    if energy_unit is None:
        finite = raw[np.isfinite(raw)]
        if finite.size and finite.max() > KEV_MAX:
            raise ValueError(f"{where} looks like eV ({finite[0]:.1f} ... {finite[-1]:.1f}); the FXI "
                             "convention is keV: divide by 1000 or pass energy_unit='eV'.")
        unit = "keV"
    else:
        unit = energy_unit
    energies = check_energies(raw, name=ENERGY_KEY, unit=unit, source=source)
    energies_eV, _ = energies_to_ev(energies, unit=unit, source=source)
    if energies_eV[0] < EV_MIN or energies_eV[-1] > KEV_MAX * EV_PER_KEV:
        raise ValueError(f"{where} gives {energies_eV[0]:g} ... {energies_eV[-1]:g} eV when read as "
                         f"{unit}; hard X-ray edges lie at 1-200 keV. Check energy_unit "
                         "(None reads keV, the FXI convention).")
    energies_eV = np.round(energies_eV, _ENERGY_DECIMALS_EV)
    return check_energies(energies_eV, name=ENERGY_KEY, unit="eV", source=source)


def _read_label(f: h5py.File, key: str, source: str) -> str | None:
    if key not in f.attrs:
        return None
    value = to_python(f.attrs[key])
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"attribute {key!r} of {source} must be a non-empty string; got {value!r}. "
                         "Rewrite it (e.g. 'Ni', 'K').")
    return value.strip()



def _companion(f: h5py.File, group, key: str):
    """``key`` next to the images (their group) when there, else at the root; None if absent."""
    for where in (group, f):
        if key in where:
            return _linked(where, key, where.file.filename)
    return None


def _read_frame(ds, key: str, shape: tuple[int, int, int], source: str, fix: str,
                repeat: int | None) -> tuple[np.ndarray, str | None]:
    """Read a flat or dark frame: (Y, X), (E, Y, X), (1, Y, X) (squeezed), or one repeat's block."""
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{key!r} in {source} is a {type(ds).__name__}, not a dataset; the stack layout "
                         "expects a dataset there.")
    a = read_dataset(ds, source)
    note = None
    n = shape[0]
    if a.ndim == 3 and a.shape[1:] == shape[1:]:
        if a.shape[0] == 1 and n != 1:
            a, note = a[0], f"{key} has shape {ds.shape}: used as one averaged frame"
        elif repeat is not None and a.shape[0] != n and a.shape[0] % n == 0 and a.shape[0] // n > repeat:
            a = a[repeat * n:(repeat + 1) * n]
            note = (f"{key} holds {ds.shape[0] // n} repeats of {n} frames: frames "
                    f"{repeat * n}-{(repeat + 1) * n - 1} (repeat {repeat}) used")
    return _check_frame(a, key, shape, source=source, fix=fix), note


def _read_magnification(ds, source: str) -> tuple[float | None, str | None]:
    value = to_python(read_dataset(ds, source)) if isinstance(ds, h5py.Dataset) else None
    values = value if isinstance(value, list) else [value]
    try:
        numbers = {float(v) for v in values}
    except (TypeError, ValueError):
        numbers = set()
    m = numbers.pop() if len(numbers) == 1 else float("nan")
    if math.isfinite(m) and m > 0:
        return m, None
    return None, f"{MAGNIFICATION_KEY!r} is {value!r}: not one positive number, left unknown"


def _read_frames(f: h5py.File, group, shape, source: str, *, correcting: bool, repeat: int | None):
    """(flat, dark, notes) next to the images; None for a frame the file does not hold."""
    fix = ("The flat and dark frames are needed to correct the raw counts: average repeated frames "
           "(.mean(axis=0)) and correct them with flat_field_correct." if correcting
           else "Pass load_flat_dark=False to read the stack without them.")
    frames, notes = [], []
    for key in (FLAT_KEY, DARK_KEY):
        ds = _companion(f, group, key)
        frame, note = (None, None) if ds is None else _read_frame(ds, key, shape, source, fix, repeat)
        frames.append(frame)
        if note:
            notes.append(note)
    return frames[0], frames[1], notes


def _metadata(f: h5py.File, group, source: str) -> tuple[float | None, float | None, dict]:
    """Pixel size (nm), magnification and the provenance notes about them and the scan."""
    notes = {}
    pixel_size_nm = magnification = None
    pixel_ds = _companion(f, group, PIXEL_SIZE_KEY)
    if pixel_ds is not None:
        value = read_dataset(pixel_ds, source) if isinstance(pixel_ds, h5py.Dataset) else None
        pixel_size_nm, notes["pixel_size"] = parse_pixel_size(value, f"{PIXEL_SIZE_KEY!r} in {source}")
    else:  # some exports write it as an attribute of the images, their group or the file
        holder = next((obj for obj in (f.get(IMAGES_KEY), group, f)
                       if obj is not None and PIXEL_SIZE_KEY in obj.attrs), None)
        if holder is not None:
            where = f"attribute {PIXEL_SIZE_KEY!r} of {holder.name} in {source}"
            value = to_python(holder.attrs[PIXEL_SIZE_KEY])
            pixel_size_nm, notes["pixel_size"] = parse_pixel_size(value, where)
    magnification_ds = _companion(f, group, MAGNIFICATION_KEY)
    if magnification_ds is not None:
        magnification, note = _read_magnification(magnification_ds, source)
        if note:
            notes["magnification"] = note
    instrument = _instrument(f, source)
    if instrument:
        notes["instrument"] = instrument
    return pixel_size_nm, magnification, notes


def _instrument(f: h5py.File, source: str) -> dict:
    """FXI scan metadata stored as scalar datasets (scan id, uid, note, time)."""
    out = {}
    for key in _INSTRUMENT_KEYS:
        ds = f.get(key)
        if isinstance(ds, h5py.Dataset) and ds.ndim == 0:
            value = to_python(read_dataset(ds, source))
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out[key] = value
    return out


def read_stack(path, *, load_flat_dark: bool = True, energy_unit: str | None = None,
               element: str | None = None, allow_nonfinite: bool = False,
               bad_frames: str = "refuse", raw_counts: str = "auto",
               dataset: str = IMAGES_KEY) -> Stack:
    """Read a stack file (FXI export or xanes_lib file), checking it against the contract.

    The file is opened read-only and ``ground_truth/`` is never opened, so analysis code
    cannot see the truth of a simulated file.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    load_flat_dark : bool
        Read ``img_bkg`` and ``img_dark`` when present (False skips them, and their checks).
        A frame stored as (1, Y, X) (an FXI average with its axis kept) is read as (Y, X);
        in a file named ``..._repeat_RR_pos_PP`` whose frames hold several repeats of E
        (FXI multi-position scans), the block of repeat RR is used (noted in the provenance).
    energy_unit : {None, "keV", "eV"}
        Unit of ``X_eng``. None takes the unit its ``units`` attribute states ("eV" or
        "keV"), else keV (the FXI convention), and raises when keV values look like eV (> 200).
    element : str, optional
        Absorbing element. None takes the ``element`` attribute of the file (refused when its
        tabulated edge lies outside the scanned energies), or when it is missing (plain FXI
        exports) infers it with :func:`infer_element` and records
        ``attrs["element_inferred"] = True``. A given element overrides the file's label,
        but is refused too when its tabulated edge lies outside the scanned energies.
    allow_nonfinite : bool
        If False, NaN or inf in ``img_xanes`` raises.
    bad_frames : {"refuse", "drop", "keep"}
        Frames that measure nothing: dead (every pixel equal, e.g. zeros from a detector
        drop-out, in a stack whose other frames vary), saturated (half the pixels or more at
        an integer detector's full scale, e.g. 65535) or without beam (median <= 0).
        "refuse" raises naming each; "drop" leaves them and their energies (and per-energy
        flat/dark frames) out, lists them in ``attrs["dropped_frames"]`` (index in the file,
        energy in eV, reason) and warns; "keep" reads them and lists them in
        ``attrs["bad_frames"]``.
    raw_counts : {"auto", "refuse", "correct"}
        What to do when ``img_xanes`` holds raw detector counts rather than transmission
        (an integer dtype, or a median above ``RAW_COUNTS_MEDIAN`` = 5; most FXI exports are
        already corrected float32, some are not). "auto" (default) and "correct" compute
        ``(img_xanes - img_dark) / (img_bkg - img_dark)`` on reading with the file's frames
        (``img_dark`` missing: taken as 0, with a warning); "auto" warns that it did, "correct"
        only logs it. "refuse" raises, naming the fix. Counts in a file without ``img_bkg``, or
        whose ``img_bkg`` is no flat field of counts, are refused in every mode. The decision is
        in ``Stack.provenance`` (``intensity``, ``intensity_note``, ``raw_counts_mode``).
    dataset : str
        Path of the image dataset (default ``img_xanes``); ``X_eng``, ``img_bkg``,
        ``img_dark``, ``Pixel Size`` and ``Magnification`` are taken from its group when
        there, else from the root (files holding several positions, see
        :func:`xanes_lib.io.list_positions`).

    Returns
    -------
    Stack
        ``transmission`` as float32, ``energies_eV`` in eV (float64, rounded to 1 micro-eV
        to remove the keV -> eV round-off), ``edge`` from the file or "K" by default,
        ``pixel_size_nm`` from ``Pixel Size`` (a string such as "21.7 nm", "21.666nm" or
        "0.0217 um", or a number of nm; "0 nm" means unknown: None), ``magnification`` from
        ``Magnification``, ``attrs`` with the other root attributes, ``source`` = ``path``,
        and ``provenance``: ``intensity`` ("transmission" or "raw counts, flat-field
        corrected on reading") with ``intensity_note`` (dtype, median, what was done), notes on
        the pixel size, magnification and flat/dark frames, FXI scan metadata
        (``instrument``: scan_id, uid, note, scan_time) and the provenance the file recorded.

    Raises
    ------
    ValueError
        Naming the file and the key: a missing ``img_xanes`` or ``X_eng`` (the keys present
        are listed), ``img_xanes`` not 3-D or not real numbers, a length mismatch between
        ``img_xanes`` and ``X_eng``, NaN/inf in ``img_xanes`` (count and first index), raw
        counts (integer dtype or a median above 5) in a file without a flat field ``img_bkg``
        (or with ``raw_counts="refuse"``), bad frames (index,
        energy in keV and eV), an ``element`` attribute whose edge lies outside the energies
        (the element whose edge lies inside is named), a given ``element`` whose edge lies
        outside them, energies not strictly increasing or
        looking like eV, ``img_bkg``/``img_dark`` of the wrong shape, an unparsable
        ``Pixel Size``, or an element that cannot be inferred.
    DamagedFileError
        (an ``OSError`` and a ``ValueError``) if a dataset cannot be read (corrupted chunk,
        truncated copy), naming the file and the dataset.
    FileNotFoundError, OSError
        If the file does not exist or is not HDF5.
    """
    match = REPEAT_POS_RE.match(os.path.splitext(os.path.basename(os.fspath(path)))[0])
    return _read_stack(path, load_flat_dark=load_flat_dark, energy_unit=energy_unit, element=element,
                       allow_nonfinite=allow_nonfinite, bad_frames=bad_frames, raw_counts=raw_counts,
                       dataset=dataset, repeat=int(match["repeat"]) if match else None)


def _read_stack(path, *, load_flat_dark: bool, energy_unit, element, allow_nonfinite: bool,
                bad_frames: str, raw_counts: str, dataset: str, repeat: int | None = None,
                position: dict | None = None) -> Stack:
    """:func:`read_stack`; ``repeat`` picks that repeat's block of flat frames stored for several."""
    source = os.fspath(path)
    if energy_unit not in (None, "keV", "eV"):
        raise ValueError(f"energy_unit must be None (keV, the FXI convention), 'keV' or 'eV'; "
                         f"got {energy_unit!r}.")
    if bad_frames not in BAD_FRAMES_MODES:
        raise ValueError(f"bad_frames must be one of {BAD_FRAMES_MODES}; got {bad_frames!r}.")
    if raw_counts not in RAW_COUNTS_MODES:
        raise ValueError(f"raw_counts must be one of {RAW_COUNTS_MODES}; got {raw_counts!r}.")
    element = _check_label(element, "element")
    with open_read(source) as f:
        images_ds = _require_dataset(f, dataset, source)
        name = images_ds.name.lstrip("/")
        group = images_ds.parent
        energies_ds = _require_dataset(group if ENERGY_KEY in group else f, ENERGY_KEY, source)
        unit_said = _unit_attribute(energies_ds) if energy_unit is None else None
        energies_eV = _read_energies(energies_ds, source, energy_unit or unit_said)
        if images_ds.ndim != 3:
            raise ValueError(f"{name} in {source} must be 3-D (energies, rows, columns); got shape "
                             f"{images_ds.shape}. A single image needs a leading energy axis.")
        if images_ds.shape[0] != energies_eV.size:
            raise ValueError(f"{name} in {source} has {images_ds.shape[0]} images but {ENERGY_KEY} "
                             f"has {energies_eV.size} energies; they must match one to one (is the "
                             "stack transposed, or the export incomplete?).")
        images = _real_array(read_dataset(images_ds, source), f"{name} in {source}")
        check_stack(images, name=name, source=source, n_energies=energies_eV.size, allow_nonfinite=True)
        if not allow_nonfinite:
            refuse_nonfinite(images, name=name, source=source)
        counts = describe_intensity(images)[0]
        correcting = counts and raw_counts != "refuse"
        flat_ds, dark_ds = _companion(f, group, FLAT_KEY), _companion(f, group, DARK_KEY)
        flat = dark = None
        notes = []
        if load_flat_dark or correcting:
            flat, dark, notes = _read_frames(f, group, images.shape, source, correcting=correcting,
                                             repeat=repeat)
        present = [repr(k) for k, ds in ((FLAT_KEY, flat_ds), (DARK_KEY, dark_ds)) if ds is not None]
        transmission, provenance = to_transmission(
            images, energies_eV, flat, dark, name=name, source=source, mode=raw_counts,
            flat_name=FLAT_KEY, dark_name=DARK_KEY, has_flat=flat_ds is not None,
            refused_fix=(f"Correct them on reading with this file's {' and '.join(present)}: "
                         "read_stack(path) (raw_counts='auto', the default) or raw_counts='correct'; "
                         "or yourself with "
                         f"xanes_lib.io.flat_field_correct(images, flat, dark) with this file's "
                         f"{' and '.join(present)}, and write the result with write_stack."),
            no_flat_fix=(f"This file has no {FLAT_KEY!r} (flat field), so they cannot be corrected on "
                         "reading. Flat-field correct them first with the flat and dark frames of the same "
                         "scan: xanes_lib.io.flat_field_correct(images, flat, dark), and write the result "
                         f"with write_stack (or re-export the scan with {FLAT_KEY!r} and {DARK_KEY!r}); "
                         "transmission in percent: divide by 100."))
        if not load_flat_dark:
            flat = dark = None
        said = f"{ENERGY_KEY} in {energy_unit or unit_said or 'keV'}"
        provenance = {"reader": "read_stack", "images": name,
                      "energies": said + (" (its units attribute)" if unit_said else ""), **provenance}
        if position:
            provenance["position"] = position
        if notes:
            provenance["flat_dark"] = notes
        pixel_size_nm, magnification, more = _metadata(f, group, source)
        provenance.update(more)
        file_element = _read_label(f, "element", source)
        file_edge = _read_label(f, "edge", source)
        attrs = read_attrs(f, source=source, exclude=("element", "edge"))
        recorded = attrs.pop(PROVENANCE_ATTR, None)
        if recorded is not None:
            provenance["recorded"] = recorded
        others = _positions_in(f) if dataset == IMAGES_KEY and position is None else []
    if others:
        provenance["other_positions"] = others
        warn(f"{source}: read the stack {IMAGES_KEY!r} at the root; the file also holds {len(others)} "
             f"position(s) {others[:6]}: read those with xanes_lib.io.read_position(path, name).")
    return finish_stack(transmission, energies_eV, flat, dark, name=name, source=source, element=element,
                        file_element=file_element, edge=file_edge if file_edge is not None else "K",
                        attrs=attrs, bad_frames=bad_frames, pixel_size_nm=pixel_size_nm,
                        magnification=magnification, provenance=provenance)


def has_ground_truth(path) -> bool:
    """Tell whether a stack file holds a ``ground_truth/`` group (a simulated file).

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.

    Returns
    -------
    bool
    """
    source = os.fspath(path)
    with open_read(source) as f:
        return isinstance(f.get(GROUND_TRUTH_KEY), h5py.Group)


def read_ground_truth(path) -> GroundTruth:
    """Read the ground truth of a simulated stack file.

    For simulation, metrics and tests only: analysis code must not use the truth.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`write_stack` with ``ground_truth=``.

    Returns
    -------
    GroundTruth
        Arrays with the dtypes they were written with (``mask`` bool), ``references`` as a
        list of str, ``params`` from the group's attributes; ``foreign_mask`` (bool) when the
        file holds ``ground_truth/foreign_mask``, None otherwise (older files, stacks without
        a foreign phase); ``drift_px`` ((E, 2) float64, relative to image 0) and
        ``drift_origin_px`` (its attribute ``origin_px``) when the file holds
        ``ground_truth/drift_px``, None otherwise (files written before it existed).

    Raises
    ------
    ValueError
        If the file has no ``ground_truth`` group (not a simulated file), or a dataset or
        attribute of it is missing or has a shape that does not match ``img_xanes``.
    """
    source = os.fspath(path)
    with open_read(source) as f:
        if not isinstance(f.get(GROUND_TRUTH_KEY), h5py.Group):
            raise ValueError(f"{source} has no {GROUND_TRUTH_KEY!r} group: it is not a simulated file "
                             "(measured data has no ground truth). Use has_ground_truth(path) to check, "
                             "or read a file written by the simulator.")
        shape = _require_dataset(f, IMAGES_KEY, source).shape
        if len(shape) != 3:
            raise ValueError(f"{IMAGES_KEY} in {source} must be 3-D; got shape {shape}.")
        g = f[GROUND_TRUTH_KEY]
        data = {}
        for name in ("transmission", "background", "fractions", "oxidation_state", "mask",
                     "areal_density"):
            data[name] = read_dataset(_require_dataset(g, name, f"{source}:{GROUND_TRUTH_KEY}"), source)
        if "foreign_mask" in g:
            data["foreign_mask"] = read_dataset(_require_dataset(g, "foreign_mask",
                                                                 f"{source}:{GROUND_TRUTH_KEY}"), source)
        if DRIFT_KEY in g:
            ds = _require_dataset(g, DRIFT_KEY, f"{source}:{GROUND_TRUTH_KEY}")
            reference = to_python(ds.attrs.get("reference_index", 0))
            if reference != 0:
                raise ValueError(f"{GROUND_TRUTH_KEY}/{DRIFT_KEY} in {source} is relative to image "
                                 f"{reference!r}; the contract stores it relative to image 0: write the "
                                 "file again with write_stack.")
            data["drift_px"] = read_dataset(ds, source)
            origin = ds.attrs.get("origin_px")
            data["drift_origin_px"] = np.zeros(2) if origin is None else np.asarray(origin, np.float64)
        for ds_name, attr in (("fractions", "references"), ("areal_density", "unit")):
            if attr not in g[ds_name].attrs:
                raise ValueError(f"{GROUND_TRUTH_KEY}/{ds_name} in {source} lacks the attribute {attr!r}; "
                                 "the simulated file is incomplete: write it again with write_stack.")
        references = to_python(g["fractions"].attrs["references"])
        references = [references] if isinstance(references, str) else list(references)
        unit = to_python(g["areal_density"].attrs["unit"])
        params = read_attrs(g, source=source)
    truth = GroundTruth(references=references, areal_density_unit=unit, params=params, **data)
    _validate_ground_truth(truth, shape, source=source, prefix=GROUND_TRUTH_KEY)
    return truth


def stack_checksum(path) -> str:
    """Return the SHA-256 of a file's bytes (or of a folder's files), as 64 hex digits.

    Results files record it to name their input exactly. For a folder (of TIFF images, one
    per energy) it is the SHA-256 of each file's name and SHA-256 in name order: any file
    added, removed, renamed or changed changes it.

    Parameters
    ----------
    path : str or os.PathLike
        Any file, or a folder (its files, not its sub-folders).

    Returns
    -------
    str
    """
    source = os.fspath(path)
    if os.path.isdir(source):
        total = hashlib.sha256()
        for name in sorted(os.listdir(source)):
            full = os.path.join(source, name)
            if os.path.isfile(full):
                total.update(name.encode("utf-8", "surrogateescape") + b"\0")
                total.update(bytes.fromhex(stack_checksum(full)))
        return total.hexdigest()
    with open(source, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
