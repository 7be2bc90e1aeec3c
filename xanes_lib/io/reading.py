"""Reading stack files: validation on read, ground truth for simulation and tests only.

Files are opened read-only. ``ground_truth/`` is read only by :func:`read_ground_truth`,
which is meant for simulation, metrics and tests; :func:`read_stack` never opens it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings

import h5py
import numpy as np

from ..validate import (
    EV_MIN,
    EV_PER_KEV,
    KEV_MAX,
    RAW_COUNTS_MEDIAN,
    check_energies,
    check_stack,
    energies_to_ev,
    find_bad_frames,
    find_nonfinite,
    sampled_median,
)
from ._checks import (
    DamagedFileError,
    describe_frame,
    element_contradiction,
    read_dataset,
)
from ._hdf5 import read_attrs, to_python
from .stacks import (
    _RESERVED_ROOT_ATTRS,
    CANDIDATE_ELEMENTS,
    DARK_KEY,
    ENERGY_KEY,
    FLAT_KEY,
    GROUND_TRUTH_KEY,
    IMAGES_KEY,
    PIXEL_SIZE_KEY,
    GroundTruth,
    Stack,
    _check_frame,
    _check_label,
    _real_array,
    _validate_ground_truth,
    infer_element,
)

__all__ = [
    "read_stack", "has_ground_truth", "read_ground_truth", "stack_checksum", "DamagedFileError",
    "BAD_FRAMES_MODES",
]

#: What :func:`read_stack` does with frames that measure nothing (dead, saturated, no beam).
BAD_FRAMES_MODES = ("refuse", "drop", "keep")
_MIN_FRAMES_LEFT = 2
_LISTED_FRAMES = 10               # bad frames named one by one in a message


_ENERGY_DECIMALS_EV = 6           # keV -> eV round-off is removed by rounding to 1 micro-eV
_PIXEL_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6}
_PIXEL_SIZE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d]+)?\s*$")


def _open_read(source: str) -> h5py.File:
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist; check the path (relative paths start "
                                "from the current working directory).")
    try:
        return h5py.File(source, "r")
    except OSError as err:
        raise OSError(f"{source} could not be opened as an HDF5 file ({err}); is it a stack file "
                      "(.h5) and completely copied?") from err


def _require_dataset(f: h5py.File, key: str, source: str) -> h5py.Dataset:
    if key not in f:
        raise ValueError(f"{source} has no {key!r} dataset (keys present: {sorted(f.keys())}). A stack "
                         f"file needs {IMAGES_KEY!r} (E, Y, X) transmission and {ENERGY_KEY!r} (E,) "
                         "energies in keV (the FXI export layout); rename the datasets or re-export.")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{key!r} in {source} is a {type(obj).__name__}, not a dataset; "
                         "the stack layout expects a dataset there.")
    return obj


def _read_energies(ds: h5py.Dataset, source: str, energy_unit: str | None) -> np.ndarray:
    where = f"{ENERGY_KEY} in {source}"
    if ds.ndim != 1:
        raise ValueError(f"{where} must be 1-D (one energy per image); got shape {ds.shape}. "
                         "Flatten it (X_eng.ravel()) when it is a column.")
    raw = _real_array(read_dataset(ds, source), ENERGY_KEY).astype(np.float64)
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


def _parse_pixel_size(ds, source: str) -> float:
    where = f"{PIXEL_SIZE_KEY!r} in {source}"
    fix = "write it as a string such as '20.0 nm' (units nm, um or mm)."
    value = to_python(ds[()]) if isinstance(ds, h5py.Dataset) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"{where} is unparsable: {value!r} has no unit; {fix}")
    match = _PIXEL_SIZE_RE.match(value)
    unit = match.group(2) if match else None
    if match is None or unit is None or unit.lower() not in {u.lower() for u in _PIXEL_UNITS_NM}:
        raise ValueError(f"{where} is unparsable: {value!r}; {fix}")
    factor = next(f for u, f in _PIXEL_UNITS_NM.items() if u.lower() == unit.lower())
    size_nm = float(match.group(1)) * factor
    if not (math.isfinite(size_nm) and size_nm > 0):
        raise ValueError(f"{where} is {value!r}: a pixel size must be positive; {fix}")
    return size_nm


def _read_label(f: h5py.File, key: str, source: str) -> str | None:
    if key not in f.attrs:
        return None
    value = to_python(f.attrs[key])
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"attribute {key!r} of {source} must be a non-empty string; got {value!r}. "
                         "Rewrite it (e.g. 'Ni', 'K').")
    return value.strip()


def _check_raw_counts(transmission: np.ndarray, energies_eV: np.ndarray, source: str,
                      has_flat: bool, has_dark: bool) -> None:
    median = sampled_median(transmission)
    if not median > RAW_COUNTS_MEDIAN:
        return
    first = next((i for i, frame in enumerate(transmission) if sampled_median(frame) > RAW_COUNTS_MEDIAN), 0)
    present = [repr(k) for k, here in ((FLAT_KEY, has_flat), (DARK_KEY, has_dark)) if here]
    with_file = f" with this file's {' and '.join(present)}" if present else ""
    raise ValueError(f"{IMAGES_KEY} in {source} has a median of {median:.4g} (the first frame above "
                     f"{RAW_COUNTS_MEDIAN:g}: {describe_frame(first, energies_eV[first])}): these are raw "
                     "detector counts, "
                     "not transmission (I-dark)/(flat-dark), which lies at about 0-1.2. Flat-field correct "
                     f"them first: xanes_lib.io.flat_field_correct(images, flat, dark){with_file}, and write "
                     "the result with write_stack (transmission in percent: divide by 100).")


def _bad_frames(bad, transmission, energies_eV, flat, dark, attrs, source: str, mode: str):
    """Refuse, drop or keep (and record) the frames that measure nothing."""
    listed = "; ".join(f"{describe_frame(i, energies_eV[i])} is {why}" for i, why in bad[:_LISTED_FRAMES])
    if len(bad) > _LISTED_FRAMES:
        listed += f"; and {len(bad) - _LISTED_FRAMES} more"
    if mode == "refuse":
        raise ValueError(f"{IMAGES_KEY} in {source} has {len(bad)} frame(s) that measure no absorption: "
                         f"{listed}. Pass bad_frames='drop' to read the stack without them (their energies "
                         "go too, listed in Stack.attrs['dropped_frames']), or re-measure those energies.")
    record = [{"index": int(i), "energy_eV": float(energies_eV[i]), "reason": why} for i, why in bad]
    if mode == "keep":
        attrs["bad_frames"] = record
        return transmission, energies_eV, flat, dark
    keep = np.ones(energies_eV.size, bool)
    keep[[i for i, _ in bad]] = False
    if keep.sum() < _MIN_FRAMES_LEFT:
        raise ValueError(f"{IMAGES_KEY} in {source}: only {int(keep.sum())} of {keep.size} frames measure "
                         f"absorption ({listed}); nothing is left to analyse: re-measure the stack.")

    def per_energy(a):
        return a[keep] if a is not None and a.ndim == 3 else a

    previous = attrs.get("dropped_frames")
    attrs["dropped_frames"] = (previous if isinstance(previous, list) else []) + record
    warnings.warn(f"{source}: dropped {len(bad)} frame(s) of {IMAGES_KEY} that measure no absorption: "
                  f"{listed}.", stacklevel=3)
    return transmission[keep], energies_eV[keep], per_energy(flat), per_energy(dark)


def _resolve_element(element, file_element, edge: str, energies_eV, attrs: dict, source: str) -> str:
    """Return the given element, else the file's (checked against the energies), else infer it."""
    if element is not None:
        return element
    if file_element is not None:
        why = element_contradiction(file_element, edge, energies_eV, CANDIDATE_ELEMENTS)
        if why is not None:
            raise ValueError(f"the 'element' attribute of {source} {why}")
        return file_element
    try:
        element = infer_element(energies_eV)
    except ValueError as err:
        raise ValueError(f"{source} has no 'element' attribute and {err}") from None
    attrs["element_inferred"] = True
    return element


def read_stack(path, *, load_flat_dark: bool = True, energy_unit: str | None = None,
               element: str | None = None, allow_nonfinite: bool = False,
               bad_frames: str = "refuse") -> Stack:
    """Read a stack file (FXI export or xanes_lib file), checking it against the contract.

    The file is opened read-only and ``ground_truth/`` is never opened, so analysis code
    cannot see the truth of a simulated file.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    load_flat_dark : bool
        Read ``img_bkg`` and ``img_dark`` when present (False skips them, and their checks).
    energy_unit : {None, "keV", "eV"}
        Unit of ``X_eng``. None means keV (the FXI convention) and raises when the values
        look like eV (> 200).
    element : str, optional
        Absorbing element. None takes the ``element`` attribute of the file (refused when its
        tabulated edge lies outside the scanned energies), or when it is missing (plain FXI
        exports) infers it with :func:`infer_element` and records
        ``attrs["element_inferred"] = True``. A given element is taken as it is.
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

    Returns
    -------
    Stack
        ``transmission`` as float32, ``energies_eV`` in eV (float64, rounded to 1 micro-eV
        to remove the keV -> eV round-off), ``edge`` from the file or "K" by default,
        ``attrs`` with the other root attributes, ``source`` = ``path``.

    Raises
    ------
    ValueError
        Naming the file and the key: a missing ``img_xanes`` or ``X_eng`` (the keys present
        are listed), ``img_xanes`` not 3-D or of integer dtype (raw counts), a length mismatch
        between ``img_xanes`` and ``X_eng``, NaN/inf in ``img_xanes`` (count and first index),
        a median above 5 (raw counts: flat-field correct first), bad frames (index, energy in
        keV and eV), an ``element`` attribute whose edge lies outside the energies (the
        element whose edge lies inside is named), energies not strictly increasing or looking
        like eV, ``img_bkg``/``img_dark`` of the wrong shape, an unparsable ``Pixel Size``,
        or an element that cannot be inferred.
    DamagedFileError
        (an ``OSError`` and a ``ValueError``) if a dataset cannot be read (corrupted chunk,
        truncated copy), naming the file and the dataset.
    FileNotFoundError, OSError
        If the file does not exist or is not HDF5.
    """
    source = os.fspath(path)
    if energy_unit not in (None, "keV", "eV"):
        raise ValueError(f"energy_unit must be None (keV, the FXI convention), 'keV' or 'eV'; "
                         f"got {energy_unit!r}.")
    if bad_frames not in BAD_FRAMES_MODES:
        raise ValueError(f"bad_frames must be one of {BAD_FRAMES_MODES}; got {bad_frames!r}.")
    element = _check_label(element, "element")
    with _open_read(source) as f:
        images_ds = _require_dataset(f, IMAGES_KEY, source)
        energies_ds = _require_dataset(f, ENERGY_KEY, source)
        energies_eV = _read_energies(energies_ds, source, energy_unit)
        if images_ds.ndim != 3:
            raise ValueError(f"{IMAGES_KEY} in {source} must be 3-D (energies, rows, columns); got shape "
                             f"{images_ds.shape}. A single image needs a leading energy axis.")
        if images_ds.shape[0] != energies_eV.size:
            raise ValueError(f"{IMAGES_KEY} in {source} has {images_ds.shape[0]} images but {ENERGY_KEY} "
                             f"has {energies_eV.size} energies; they must match one to one (is the "
                             "stack transposed, or the export incomplete?).")
        dtype = images_ds.dtype
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"{IMAGES_KEY} in {source} has dtype {dtype}, not float: it looks like raw "
                             "detector counts, while the contract stores transmission (I-dark)/(flat-dark). "
                             "Correct it with xanes_lib.io.flatfield.flat_field_correct(images, flat, dark) "
                             "and write the result with write_stack.")
        transmission = read_dataset(images_ds, source).astype(np.float32, copy=False)
        check_stack(transmission, name=IMAGES_KEY, source=source, n_energies=energies_eV.size,
                    allow_nonfinite=True)
        if not allow_nonfinite:
            count, first = find_nonfinite(transmission)
            if count:
                raise ValueError(f"{IMAGES_KEY} in {source} holds {count} NaN or inf value(s), first at "
                                 f"index {first}; repair or mask them, or pass allow_nonfinite=True to "
                                 "read them as they are.")
        _check_raw_counts(transmission, energies_eV, source, FLAT_KEY in f, DARK_KEY in f)
        flat = dark = None
        if load_flat_dark:
            fix = "Pass load_flat_dark=False to read the stack without them."
            if FLAT_KEY in f:
                flat = _check_frame(read_dataset(_require_dataset(f, FLAT_KEY, source), source), FLAT_KEY,
                                    transmission.shape, source=source, fix=fix)
            if DARK_KEY in f:
                dark = _check_frame(read_dataset(_require_dataset(f, DARK_KEY, source), source), DARK_KEY,
                                    transmission.shape, source=source, fix=fix)
        pixel_size_nm = _parse_pixel_size(f[PIXEL_SIZE_KEY], source) if PIXEL_SIZE_KEY in f else None
        file_element = _read_label(f, "element", source)
        file_edge = _read_label(f, "edge", source)
        attrs = read_attrs(f, source=source, exclude=_RESERVED_ROOT_ATTRS)
    edge = file_edge if file_edge is not None else "K"
    element = _resolve_element(element, file_element, edge, energies_eV, attrs, source)
    bad = find_bad_frames(transmission)
    if bad:
        transmission, energies_eV, flat, dark = _bad_frames(bad, transmission, energies_eV, flat, dark,
                                                            attrs, source, bad_frames)
    return Stack(transmission=transmission, energies_eV=energies_eV, element=element,
                 edge=edge, pixel_size_nm=pixel_size_nm,
                 flat=flat, dark=dark, attrs=attrs, source=source)


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
    with _open_read(source) as f:
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
        a foreign phase).

    Raises
    ------
    ValueError
        If the file has no ``ground_truth`` group (not a simulated file), or a dataset or
        attribute of it is missing or has a shape that does not match ``img_xanes``.
    """
    source = os.fspath(path)
    with _open_read(source) as f:
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
    """Return the SHA-256 of a file's bytes, as 64 hex digits.

    Results files record it to name their input exactly.

    Parameters
    ----------
    path : str or os.PathLike
        Any file.

    Returns
    -------
    str
    """
    source = os.fspath(path)
    with open(source, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
