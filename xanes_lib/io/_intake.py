"""Private steps shared by the stack readers (HDF5 and TIFF), from images as read to a Stack.

- intensity: are the images transmission or raw detector counts, and the flat-field
  correction of counts on reading (:func:`to_transmission`);
- NaN/inf, frames that measure nothing (refuse, drop, keep), the absorbing element (given,
  labelled or inferred): :func:`finish_stack`;
- pixel sizes written as text (``"21.7 nm"``, ``"21.666nm"``, ``"0.0217 um"``) or numbers.

Every decision is said: in the error when refused, else in ``Stack.provenance`` (intensity,
pixel size) or ``Stack.attrs`` (dropped or kept bad frames, an inferred element).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import warnings

import numpy as np

from ..validate import RAW_COUNTS_MEDIAN, find_bad_frames, find_nonfinite, mostly_negative, sampled_median
from ._checks import describe_frame, element_contradiction
from .flatfield import flat_field_correct
from .stacks import CANDIDATE_ELEMENTS, Stack, infer_element

#: What a reader does with frames that measure nothing (dead, saturated, no beam).
BAD_FRAMES_MODES = ("refuse", "drop", "keep")
#: What :func:`xanes_lib.io.read_stack` does with raw detector counts in ``img_xanes``: "auto"
#: corrects them with the file's flat field and warns, "correct" corrects them silently (logged),
#: "refuse" raises. Counts without a flat field are refused in every mode.
RAW_COUNTS_MODES = ("auto", "refuse", "correct")
#: ``Stack.provenance["intensity"]``: the images were transmission as stored, or raw counts
#: flat-field corrected on reading.
TRANSMISSION, CORRECTED = "transmission", "raw counts, flat-field corrected on reading"

_MIN_FRAMES_LEFT = 2
_LISTED_FRAMES = 10               # bad frames named one by one in a message
_PIXEL_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6}
_PIXEL_SIZE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d]+)?\s*$")
#: Plausible TXM pixel sizes (nm); a number without a unit is read as nm. Below 5 nm (no hard
#: X-ray microscope resolves that) a bare number is more likely um than nm, so it is refused.
BARE_PIXEL_SIZE_NM = (5.0, 1.0e5)

_LOG = logging.getLogger("xanes_lib.io")
#: Largest median of flat-field corrected images: transmission I / I0 is about 1 in the empty
#: field and below in the sample; a beam that drifts between flat and images moves it by tens of
#: per cent, a flat of another exposure or repeat by a factor.
CORRECTED_MEDIAN_MAX = 1.5
#: Least median of flat-field corrected images: below it the "flat" is not these images' flat
#: (the images were normalised already: per cent, or dark-subtracted twice).
CORRECTED_MEDIAN_MIN = 0.01
#: Frames (eV relative to the edge) compared by :func:`_refuse_stored_absorbance`: just below the
#: edge, and past the white line.
_PRE_EDGE_EV, _POST_EDGE_EV = (-40.0, -5.0), (15.0, 60.0)
#: A change across the edge must hold in this many more sampled pixels than half of them, in
#: units of the binomial spread sqrt(n) / 2 (noise and an empty field give either sign).
_SIGN_Z = 5.0
#: Images stored as "transmission" with a median below this and rising across the edge are
#: absorbance: an empty field of transmission sits at about 1.
_ABSORBANCE_MEDIAN_MAX = 0.5
_HERE = os.path.dirname(os.path.abspath(__file__))

#: FXI multi-position file names: ``<scan>_repeat_<RR>_pos_<PP>`` and ``<scan>_pos_<P>``.
REPEAT_POS_RE = re.compile(r"^(?:(?P<scan>.*?)_)?repeat_?(?P<repeat>\d+)_pos_?(?P<pos>\d+)$", re.IGNORECASE)
POS_RE = re.compile(r"^(?:(?P<scan>.*?)_)?pos_?(?P<pos>\d+)$", re.IGNORECASE)


def warn(message: str) -> None:
    """``warnings.warn`` pointing at the first caller outside ``xanes_lib.io``."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


# ---------------------------------------------------------------------------- intensity

def describe_intensity(images: np.ndarray) -> tuple[bool, str, float]:
    """(raw counts?, why, median): integers or a median above ``RAW_COUNTS_MEDIAN`` are counts."""
    median = sampled_median(images)
    dtype = images.dtype
    if not np.issubdtype(dtype, np.floating):
        return True, f"dtype {dtype}, not float (median {median:.4g})", median
    if median > RAW_COUNTS_MEDIAN:
        return True, f"a median of {median:.4g} (above {RAW_COUNTS_MEDIAN:g})", median
    return False, f"dtype {dtype} and a median of {median:.4g} (at most {RAW_COUNTS_MEDIAN:g})", median


def _refuse_stored_absorbance(images: np.ndarray, energies_eV: np.ndarray, *, name: str,
                              source: str) -> None:
    """Refuse images stored as transmission that are absorbance ``-ln T``.

    Transmission falls across an absorption edge in the sample and sits at about 1 in the
    empty field; absorbance rises across it and sits at about 0. Refused when the median is
    below :data:`_ABSORBANCE_MEDIAN_MAX` and the mean of the frames past the edge exceeds that
    of the frames below it in significantly more than half of the sampled pixels. Stacks
    without a tabulated edge inside their energies, or without frames on both sides, pass.
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    try:
        import xraydb

        e0 = float(xraydb.xray_edge(infer_element(e), "K").energy)
    except (ValueError, TypeError, AttributeError):
        return
    pre = np.flatnonzero((e >= e0 + _PRE_EDGE_EV[0]) & (e <= e0 + _PRE_EDGE_EV[1]))
    post = np.flatnonzero((e >= e0 + _POST_EDGE_EV[0]) & (e <= e0 + _POST_EDGE_EV[1]))
    if pre.size == 0 or post.size == 0:
        return
    step = max(1, int(math.sqrt(images.shape[1] * images.shape[2] / 4096.0)))
    with np.errstate(invalid="ignore"):
        change = (np.asarray(images[post, ::step, ::step], dtype=np.float64).mean(axis=0)
                  - np.asarray(images[pre, ::step, ::step], dtype=np.float64).mean(axis=0)).ravel()
    change = change[np.isfinite(change)]
    n = change.size
    median = sampled_median(images)
    if mostly_negative(-change, z=_SIGN_Z) and median < _ABSORBANCE_MEDIAN_MAX:
        raise ValueError(f"{name} in {source} looks like absorbance -ln(T), not transmission: its median "
                         f"is {median:.3g} (an empty field of transmission sits at about 1) and it rises "
                         f"across the edge at {e0:.0f} eV in {np.mean(change > 0):.0%} of {n} sampled pixels "
                         "(transmission falls there). Store the transmission (np.exp(-absorbance)) with "
                         "write_stack.")


def to_transmission(images: np.ndarray, energies_eV: np.ndarray, flat, dark, *, name: str, source: str,
                    mode: str, flat_name: str, dark_name: str, refused_fix: str, no_flat_fix: str,
                    has_flat: bool | None = None) -> tuple[np.ndarray, dict]:
    """Return float32 transmission and what was decided; refuse raw counts that cannot be corrected.

    ``images`` holding transmission (float, median <= ``RAW_COUNTS_MEDIAN``) are returned as
    they are. Raw counts are corrected as ``(images - dark) / (flat - dark)`` when ``mode`` is
    "auto" or "correct" and a flat field is given (a missing dark is taken as 0, with a
    warning; "auto" also warns that the counts were corrected, "correct" only logs it), and
    refused otherwise, the message ending with ``refused_fix`` (a flat exists: ``has_flat``,
    by default ``flat is not None``) or ``no_flat_fix`` (none does). The provenance says which
    mode decided (``raw_counts_mode``).
    """
    has_flat = flat is not None if has_flat is None else has_flat
    counts, why, median = describe_intensity(images)
    if not counts:
        if median > CORRECTED_MEDIAN_MAX:
            raise ValueError(f"{name} in {source} has {why}: above {CORRECTED_MEDIAN_MAX:g}, so it is "
                             "not transmission (I-dark)/(flat-dark) (about 0-1.2), nor clearly raw counts. "
                             + (f"{flat_name} of the file is not applied to images stored as float: "
                                if has_flat else "")
                             + "divide the images by their flat field (xanes_lib.io.flat_field_correct("
                             "images, flat, dark)) and write the result with write_stack, or store the raw "
                             "counts as integers.")
        _refuse_stored_absorbance(images, energies_eV, name=name, source=source)
        note = f"{name} has {why}: taken as transmission (I-dark)/(flat-dark), as stored"
        return images.astype(np.float32, copy=False), {"intensity": TRANSMISSION, "intensity_note": note}
    if np.issubdtype(images.dtype, np.floating):
        first = next((i for i, frame in enumerate(images) if sampled_median(frame) > RAW_COUNTS_MEDIAN), 0)
        why = f"{why[:why.index(' (')]} (the first frame above {RAW_COUNTS_MEDIAN:g}: " \
              f"{describe_frame(first, energies_eV[first])})"
    said = (f"{name} in {source} has {why}: these are raw detector counts, not transmission "
            "(I-dark)/(flat-dark), which lies at about 0-1.2.")
    if not has_flat:
        raise ValueError(f"{said} {no_flat_fix}")
    if mode == "refuse" or flat is None:
        raise ValueError(f"{said} {refused_fix}")
    flat_median = sampled_median(np.asarray(flat))
    dark_median = 0.0 if dark is None else sampled_median(np.asarray(dark))
    if not (flat_median > RAW_COUNTS_MEDIAN and flat_median > dark_median):
        raise ValueError(f"{said} But {flat_name} in {source} has a median of {flat_median:.4g}"
                         + (f" (dark {dark_median:.4g})" if dark is not None else "")
                         + ": it is no flat field of raw counts (an FXI '_img_only' export writes ones "
                         "there, with the images dark-subtracted only), so the images cannot be corrected "
                         f"with it. Divide {name} by the flat field of the same scan yourself "
                         "(xanes_lib.io.flat_field_correct(images, flat, dark)) and write the result with "
                         "write_stack.")
    if dark is None:
        warn(f"{source}: {name} holds raw counts and there is no {dark_name}: corrected with a dark level of "
             "0, so the transmission is biased by the detector offset; give the dark frame of the scan if "
             "there is one.")
    try:
        transmission = flat_field_correct(images, flat, dark)
    except ValueError as err:
        raise ValueError(f"{said} They cannot be corrected with {flat_name}"
                         + ("" if dark is None else f" and {dark_name}") + f" of {source}: {err}") from None
    after = sampled_median(transmission)
    if after < CORRECTED_MEDIAN_MIN:
        raise ValueError(f"{said} Corrected with {flat_name} of {source}, their median is {after:.4g}: "
                         f"about 0, so {flat_name} is not the flat field of these images (were they already "
                         "normalised, e.g. transmission in per cent, or dark-subtracted twice?). Give "
                         "transmission as float (I-dark)/(flat-dark), or the raw counts with their own flat "
                         "and dark frames.")
    if not after <= CORRECTED_MEDIAN_MAX:
        raise ValueError(f"{said} Corrected with {flat_name} of {source}, their median is {after:.4g} "
                         f"(at most {CORRECTED_MEDIAN_MAX:g} for transmission I / I0, about 1 in the empty "
                         f"field): {flat_name} is not the flat field of these images (another scan or "
                         "repeat, another exposure, or binned differently?). Correct them with the right "
                         "flat and dark frames (xanes_lib.io.flat_field_correct(images, flat, dark)).")
    dark_said = dark_name if dark is not None else "0 (no dark frame)"
    note = (f"{name} had {why}: raw detector counts, corrected on reading as ({name} - {dark_said}) / "
            f"({flat_name} - {dark_said}); transmission median {after:.4g}")
    _LOG.info("%s: %s", source, note)
    if mode == "auto":
        warn(f"{source}: {note} (raw_counts='auto'; pass raw_counts='refuse' to refuse raw counts instead, "
             "or 'correct' to correct them without this warning).")
    return transmission, {"intensity": CORRECTED, "intensity_note": note, "raw_counts_mode": mode}


# ---------------------------------------------------------------------------- checks and Stack

def refuse_nonfinite(images: np.ndarray, *, name: str, source: str) -> None:
    count, first = find_nonfinite(images)
    if count:
        raise ValueError(f"{name} in {source} holds {count} NaN or inf value(s), first at index {first}; "
                         "repair or mask them, or pass allow_nonfinite=True to read them as they are.")


def _bad_frames(bad, transmission, energies_eV, flat, dark, attrs, source: str, mode: str, name: str):
    """Refuse, drop or keep (and record) the frames that measure nothing."""
    listed = "; ".join(f"{describe_frame(i, energies_eV[i])} is {why}" for i, why in bad[:_LISTED_FRAMES])
    if len(bad) > _LISTED_FRAMES:
        listed += f"; and {len(bad) - _LISTED_FRAMES} more"
    if mode == "refuse":
        raise ValueError(f"{name} in {source} has {len(bad)} frame(s) that measure no absorption: "
                         f"{listed}. Pass bad_frames='drop' to read the stack without them (their energies "
                         "go too, listed in Stack.attrs['dropped_frames']), or re-measure those energies.")
    record = [{"index": int(i), "energy_eV": float(energies_eV[i]), "reason": why} for i, why in bad]
    if mode == "keep":
        attrs["bad_frames"] = record
        return transmission, energies_eV, flat, dark
    keep = np.ones(energies_eV.size, bool)
    keep[[i for i, _ in bad]] = False
    if keep.sum() < _MIN_FRAMES_LEFT:
        raise ValueError(f"{name} in {source}: only {int(keep.sum())} of {keep.size} frames measure "
                         f"absorption ({listed}); nothing is left to analyse: re-measure the stack.")

    def per_energy(a):
        return a[keep] if a is not None and a.ndim == 3 else a

    previous = attrs.get("dropped_frames")
    attrs["dropped_frames"] = (previous if isinstance(previous, list) else []) + record
    warn(f"{source}: dropped {len(bad)} frame(s) of {name} that measure no absorption: {listed}.")
    return transmission[keep], energies_eV[keep], per_energy(flat), per_energy(dark)


def resolve_element(element, file_element, edge: str, energies_eV, attrs: dict, source: str,
                     missing: str, energies_name: str = "X_eng") -> str:
    """Return the given element, else the file's, else infer it; a given or labelled one is checked.

    A given or labelled element whose tabulated edge lies outside the energies
    (:func:`element_contradiction`) is refused.
    """
    if element is not None:
        why = element_contradiction(element, edge, energies_eV, CANDIDATE_ELEMENTS, given=True,
                                    energies_name=energies_name)
        if why is not None:
            raise ValueError(f"{source} {why}")
        return element
    if file_element is not None:
        why = element_contradiction(file_element, edge, energies_eV, CANDIDATE_ELEMENTS)
        if why is not None:
            raise ValueError(f"the 'element' attribute of {source} {why}")
        return file_element
    try:
        element = infer_element(energies_eV)
    except ValueError as err:
        raise ValueError(f"{source} {missing} and {err}") from None
    attrs["element_inferred"] = True
    return element


def finish_stack(transmission, energies_eV, flat, dark, *, name: str, source: str, element, file_element,
                 edge: str, attrs: dict, bad_frames: str, missing_element: str = "has no 'element' attribute",
                 energies_name: str = "X_eng", **fields) -> Stack:
    """Resolve the element, handle bad frames and build the :class:`Stack` (``fields`` pass on)."""
    element = resolve_element(element, file_element, edge, energies_eV, attrs, source, missing_element,
                              energies_name)
    bad = find_bad_frames(transmission)
    if bad:
        transmission, energies_eV, flat, dark = _bad_frames(bad, transmission, energies_eV, flat, dark,
                                                            attrs, source, bad_frames, name)
    return Stack(transmission=transmission, energies_eV=energies_eV, element=element, edge=edge,
                 flat=flat, dark=dark, attrs=attrs, source=source, **fields)


# ---------------------------------------------------------------------------- pixel size

def parse_pixel_size(value, where: str) -> tuple[float | None, str]:
    """Pixel size in nm (None when the file says 0: unknown) and a note of how it was read.

    Accepts a string with a unit (``"21.7 nm"``, ``"21.666nm"``, ``"0.0217 um"``, bytes
    too) or a number, read as nm. Either must lie in :data:`BARE_PIXEL_SIZE_NM` (a
    ``"21.7 mm"`` typo is refused).
    """
    fix = "write it as a string such as '20.0 nm' (units nm, um or mm), or a number of nm."
    raw = value
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where} is unparsable: {raw!r} is neither a number nor text; {fix}")
    if isinstance(value, str):
        match = _PIXEL_SIZE_RE.match(value)
        if match is None:
            raise ValueError(f"{where} is unparsable: {value!r}; {fix}")
        number, unit = float(match.group(1)), match.group(2)
    else:
        number, unit = float(value), None
    if unit is not None and unit.lower() not in {u.lower() for u in _PIXEL_UNITS_NM}:
        raise ValueError(f"{where} is unparsable: {value!r} (unknown unit {unit!r}); {fix}")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{where} is {value!r}: a pixel size must be positive; {fix}")
    if number == 0:
        return None, f"{where} is {value!r}: unknown (0), left as None"
    if unit is None:
        lo, hi = BARE_PIXEL_SIZE_NM
        if not lo <= number <= hi:
            raise ValueError(f"{where} is {value!r} without a unit, and {number:g} nm is no TXM pixel size "
                             f"({lo:g}-{hi:g} nm); {fix}")
        return number, f"{where} is {value!r} without a unit: read as {number:g} nm"
    factor = next(f for u, f in _PIXEL_UNITS_NM.items() if u.lower() == unit.lower())
    size_nm = number * factor
    lo, hi = BARE_PIXEL_SIZE_NM
    if not lo <= size_nm <= hi:
        raise ValueError(f"{where} is {value!r}: {size_nm:g} nm is no TXM pixel size ({lo:g}-{hi:g} nm); "
                         f"check the number and its unit, or {fix}")
    return size_nm, f"{where} is {value!r}: {size_nm:g} nm"


# ---------------------------------------------------------------------------- file names

_NUMBER_RE = re.compile(r"([+-]?)(\d+(?:\.\d+)?)")


def numeric_order(names: list[str]) -> tuple[list[str], str]:
    """Order file names by the numbers they carry, decimal points and signs included.

    :func:`natural_key` compares digit runs as integers, which puts ``E_8.33keV`` before
    ``E_8.233keV`` and ``E-20eV`` after ``E-10eV``. Here a number with a decimal point is
    compared by its value; a sign counts only when some name carries a ``+`` (otherwise ``-``
    is taken for a separator, as in ``scan-01``).

    Returns
    -------
    names : list of str
        In order.
    how : str
        How they were ordered, for the provenance.

    Examples
    --------
    >>> numeric_order(["E_8.33keV.tif", "E_8.233keV.tif", "E_8.3keV.tif"])[0]
    ['E_8.233keV.tif', 'E_8.3keV.tif', 'E_8.33keV.tif']
    >>> numeric_order(["E+5eV.tif", "E-10eV.tif", "E-20eV.tif"])[0]
    ['E-20eV.tif', 'E-10eV.tif', 'E+5eV.tif']
    """
    signed = any(sign == "+" for n in names for sign, _ in _NUMBER_RE.findall(n))

    def key(name: str) -> tuple:
        parts, last = [], 0
        for m in _NUMBER_RE.finditer(name):
            sign, digits = m.groups()
            text = name[last:m.start()] + ("" if signed or not sign else sign)
            value = float(digits) * (-1.0 if signed and sign == "-" else 1.0)
            parts += [(1, 0.0, text.lower()), (0, value, "")]
            last = m.end()
        return tuple(parts + [(1, 0.0, name[last:].lower())])

    ordered = sorted(names, key=key)
    natural = sorted(names, key=natural_key)
    if ordered == natural:
        return ordered, "natural order of their names"
    return ordered, ("order of the numbers in their names (decimal points" + (" and signs" if signed else "")
                     + " included)")


def natural_key(name: str) -> tuple:
    """Sort key that orders digits by value: ``img_2.tif`` before ``img_10.tif``.

    Examples
    --------
    >>> sorted(["img_10.tif", "img_2.tif", "img_1.tif"], key=natural_key)
    ['img_1.tif', 'img_2.tif', 'img_10.tif']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", name) if part)
