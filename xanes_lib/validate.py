"""Input checks shared by every module: energies, stacks, units.

Every check returns a clean copy (never modifies its input) or raises a ``ValueError``
that names the bad value, what is allowed and how to fix it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "KEV_MAX", "EV_MIN", "EV_PER_KEV", "check_energies", "detect_energy_unit", "energies_to_ev",
    "check_stack", "nonfinite_message", "find_nonfinite", "RAW_COUNTS_MEDIAN", "DETECTOR_CEILINGS",
    "SATURATED_SHARE", "EDGE_TOLERANCE_EV",
    "sampled_median", "mostly_negative", "find_bad_frames", "check_transmission_frames", "check_image_mask",
    "refuse_kev",
]

#: Hard X-ray absorption edges used with TXM lie between ~4 and ~30 keV. Energies in keV
#: are therefore below this bound and energies in eV above ``EV_MIN``.
KEV_MAX = 200.0
#: The eV/keV threshold: absolute energies below it are not eV (keV, or offsets from an edge).
EV_MIN = 1000.0
#: Unit conversion factor: eV per keV.
EV_PER_KEV = 1000.0
#: An element's (or reference's) edge may lie this far (eV) outside a scan's energies
#: (calibration offsets, a scan that starts just above the edge).
EDGE_TOLERANCE_EV = 50.0


def _where(source: str) -> str:
    return f" in {source}" if source else ""


def check_energies(energies, *, name: str = "energies", unit: str = "eV", source: str = "",
                   min_points: int = 2) -> np.ndarray:
    """Return ``energies`` as a new 1-D float64 array after checking it.

    Parameters
    ----------
    energies : array_like
        Energies, strictly increasing.
    name : str
        Name used in error messages.
    unit : str
        Unit used in error messages ("eV" or "keV"); no conversion is done.
    source : str
        File or key the values came from, for error messages.
    min_points : int
        Fewest energies allowed.

    Returns
    -------
    numpy.ndarray
        A float64 copy.

    Raises
    ------
    ValueError
        If not 1-D, too short, not finite or not strictly increasing.

    Examples
    --------
    >>> check_energies([8330.0, 8331.0, 8332.5])
    array([8330. , 8331. , 8332.5])
    """
    e = np.array(energies, dtype=np.float64, copy=True)
    where = _where(source)
    if e.ndim != 1:
        raise ValueError(f"{name}{where} must be 1-D; got shape {e.shape}. Pass one energy per image.")
    if e.size < min_points:
        raise ValueError(f"{name}{where} needs at least {min_points} values; got {e.size}.")
    bad = np.flatnonzero(~np.isfinite(e))
    if bad.size:
        raise ValueError(f"{name}{where} must be finite; got {e[bad[0]]} at index {bad[0]}. "
                         "Remove or repair that energy (and its image).")
    step = np.diff(e)
    drops = np.flatnonzero(step <= 0)
    if drops.size:
        i = drops[0]
        raise ValueError(f"{name}{where} must increase strictly; got a drop at index {i + 1} "
                         f"({e[i]:.4f} -> {e[i + 1]:.4f} {unit}). Sort the energies together with "
                         "their images and remove duplicates.")
    return e


def detect_energy_unit(energies, *, source: str = "") -> str:
    """Tell whether energies are in eV or keV from their magnitude.

    Parameters
    ----------
    energies : array_like
        Photon energies of a hard X-ray absorption edge.
    source : str
        Where they came from, for the error message.

    Returns
    -------
    str
        ``"eV"`` or ``"keV"``.

    Raises
    ------
    ValueError
        When the magnitude is ambiguous (between 200 and 1000) or mixed.

    Examples
    --------
    >>> detect_energy_unit([8.33, 8.34]), detect_energy_unit([8330.0, 8340.0])
    ('keV', 'eV')
    """
    e = np.asarray(energies, dtype=np.float64)
    lo, hi = float(np.nanmin(e)), float(np.nanmax(e))
    if hi < KEV_MAX and lo > 0:
        return "keV"
    if lo > EV_MIN:
        return "eV"
    raise ValueError(f"cannot tell whether the energies{_where(source)} are in eV or keV: they span "
                     f"{lo:g} to {hi:g}. Hard X-ray edges lie at 1-200 keV (1000-200000 eV); "
                     "pass unit='eV' or unit='keV' explicitly, or fix the energy column.")


def energies_to_ev(energies, *, unit: str | None = None, source: str = "") -> tuple[np.ndarray, str]:
    """Convert energies to eV, detecting the unit when ``unit`` is None.

    Parameters
    ----------
    energies : array_like
        Energies in eV or keV.
    unit : {"eV", "keV", None}
        The unit of ``energies``; None detects it with :func:`detect_energy_unit`.
    source : str
        Where they came from, for error messages.

    Returns
    -------
    energies_eV : numpy.ndarray
        A new float64 array in eV.
    unit : str
        The unit that was used (detected or given).

    Raises
    ------
    ValueError
        For an unknown unit or an undetectable one.
    """
    if unit is None:
        unit = detect_energy_unit(energies, source=source)
    if unit not in ("eV", "keV"):
        raise ValueError(f"unit must be 'eV', 'keV' or None (detect); got {unit!r}.")
    e = np.array(energies, dtype=np.float64, copy=True)
    return (e * EV_PER_KEV if unit == "keV" else e), unit


def check_stack(stack, *, name: str = "stack", source: str = "", n_energies: int | None = None,
                allow_nonfinite: bool = False) -> np.ndarray:
    """Check an (E, Y, X) image stack and return it as an array (not copied if already one).

    Parameters
    ----------
    stack : array_like
        Image stack, energies first.
    name, source : str
        For error messages.
    n_energies : int, optional
        Required length of the first axis (the number of energies).
    allow_nonfinite : bool
        If False, NaN or inf anywhere raises.

    Returns
    -------
    numpy.ndarray
        The stack as an array.

    Raises
    ------
    ValueError
        Wrong number of dimensions, energy count mismatch, empty images, NaN/inf.
    """
    a = np.asarray(stack)
    where = _where(source)
    if a.ndim != 3:
        raise ValueError(f"{name}{where} must be 3-D (energies, rows, columns); got shape {a.shape}. "
                         "A single image needs a leading energy axis: stack[None].")
    if min(a.shape) < 1:
        raise ValueError(f"{name}{where} is empty: shape {a.shape}.")
    if n_energies is not None and a.shape[0] != n_energies:
        raise ValueError(f"{name}{where} has {a.shape[0]} images but there are {n_energies} energies; "
                         "they must match one to one (is the stack transposed?).")
    if not allow_nonfinite and not np.isfinite(a).all():
        raise ValueError(nonfinite_message(f"{name}{where}", np.argwhere(~np.isfinite(a))[0]))
    return a


def nonfinite_message(name: str, first) -> str:
    """Return :func:`check_stack`'s message for a stack ``name`` whose first NaN or inf is at ``first``."""
    return (f"{name} holds NaN or inf, first at index {tuple(int(i) for i in first)}; repair or mask "
            "those pixels before use (e.g. zero flat-field pixels).")


def find_nonfinite(values) -> tuple[int, tuple[int, ...] | None]:
    """Count the NaN and inf values of an array and locate the first one.

    Works one leading slice at a time, so a large stack needs no full-size boolean
    temporary.

    Parameters
    ----------
    values : array_like
        Any numeric array; integer and boolean arrays have no non-finite values.

    Returns
    -------
    count : int
        How many values are NaN or +/-inf.
    first : tuple of int or None
        Index of the first one in C order, None when there is none.

    Examples
    --------
    >>> find_nonfinite([[1.0, float("nan")], [float("inf"), 2.0]])
    (2, (0, 1))
    >>> find_nonfinite([1, 2, 3])
    (0, None)
    """
    a = np.asarray(values)
    if not np.issubdtype(a.dtype, np.inexact):
        return 0, None
    if a.ndim < 2:
        bad = ~np.isfinite(a)
        count = int(np.count_nonzero(bad))
        if count == 0:
            return 0, None
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
        return count, first
    count, first = 0, None
    for i in range(a.shape[0]):
        bad = ~np.isfinite(a[i])
        n = int(np.count_nonzero(bad))
        if n:
            count += n
            if first is None:
                first = (i,) + tuple(int(j) for j in np.unravel_index(int(np.argmax(bad)), bad.shape))
    return count, first


#: A transmission stack whose median exceeds this is raw detector counts, not ``I / I0``.
RAW_COUNTS_MEDIAN = 5.0
#: Full-scale values of integer detectors (8 to 32 bits, also as rounded to float32): a frame
#: stuck there is saturated.
DETECTOR_CEILINGS = frozenset(f(2 ** bits - 1) for bits in (8, 10, 12, 14, 16, 20, 24, 32)
                              for f in (float, lambda v: float(np.float32(v))))
#: Share of a frame's pixels at a detector ceiling that makes it saturated.
SATURATED_SHARE = 0.5
_SAMPLE_PIXELS = 65_536           # pixels per frame used for a median


def _subgrid(frame: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(np.sqrt(frame.size / _SAMPLE_PIXELS))))
    return frame[..., ::step, ::step]


def mostly_negative(values, *, z: float = 5.0) -> bool:
    """Whether ``values`` are negative in significantly more than half of them, with a negative median.

    Significantly: the count of negative values exceeds half of them by ``z`` times the
    binomial spread ``sqrt(n) / 2`` of values that take either sign at random (noise, an empty
    field). False for no values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    return n > 0 and float(np.median(v)) < 0 and (v < 0).sum() - n / 2 >= z * np.sqrt(n) / 2


def sampled_median(a: np.ndarray) -> float:
    """Median of the finite values on a sub-grid of pixels (nan if none)."""
    sample = _subgrid(a)
    sample = sample[np.isfinite(sample)]
    return float(np.median(sample)) if sample.size else float("nan")


def find_bad_frames(transmission: np.ndarray) -> list[tuple[int, str]]:
    """Frames that measure nothing, as (index, reason).

    - saturated: at least :data:`SATURATED_SHARE` of the pixels sit at a detector full scale
      (:data:`DETECTOR_CEILINGS`);
    - dead: every finite pixel has the same value (zeros: a detector drop-out), in a stack
      whose other frames vary (a stack of constant frames only is synthetic and passes);
    - no beam: the median transmission is <= 0 (shutter closed, or a drop-out after dark
      subtraction).

    Frames without finite values are left to the NaN/inf check.
    """
    ranges = [_finite_range(frame) for frame in transmission]   # no copies: two reductions a frame
    constant = [r is not None and r[0] == r[1] for r in ranges]
    all_constant = all(c for c, r in zip(constant, ranges, strict=True) if r is not None)
    bad = []
    for i, r in enumerate(ranges):
        if r is None:
            continue
        lo, hi = r
        frame = transmission[i]
        if hi in DETECTOR_CEILINGS:
            share = float(np.count_nonzero(frame == hi)) / max(1, np.count_nonzero(np.isfinite(frame)))
            if share >= SATURATED_SHARE:
                bad.append((i, f"saturated ({share:.0%} of the pixels at the detector full scale {hi:g})"))
                continue
        if constant[i]:
            if not all_constant:
                what = "a detector drop-out" if lo == 0 else "a dead or stuck read-out"
                bad.append((i, f"constant (every pixel {lo:g}: {what})"))
            continue
        if lo <= 0:
            median = sampled_median(frame)
            if median <= 0:
                bad.append((i, f"without beam (median transmission {median:.3g} <= 0: shutter closed "
                               "or a detector drop-out after dark subtraction)"))
    return bad


def _finite_range(frame: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values of a frame; None if it has none."""
    lo, hi = float(np.fmin.reduce(frame, axis=None)), float(np.fmax.reduce(frame, axis=None))
    if math.isfinite(lo) and math.isfinite(hi):       # NaN is skipped by fmin/fmax
        return lo, hi
    finite = frame[np.isfinite(frame)]                # inf present (allow_nonfinite=True): rare
    return (float(finite.min()), float(finite.max())) if finite.size else None


def check_transmission_frames(transmission, energies_eV=None, *, name: str = "transmission",
                              source: str = "") -> None:
    """Refuse frames that measure nothing and raw counts in an (E, Y, X) transmission stack.

    Bad frames are those of :func:`find_bad_frames` (saturated, constant: a detector
    drop-out or stuck read-out, or without beam); a stack whose median is above
    :data:`RAW_COUNTS_MEDIAN` holds counts, not transmission.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) stack, energies first.
    energies_eV : array_like, optional
        (E,) energies, to name a bad frame by its energy too.
    name, source : str
        For error messages.

    Raises
    ------
    ValueError
        Naming every bad frame (index, energy, why) or the median, and the fix.

    Examples
    --------
    >>> t = np.random.default_rng(0).uniform(0.4, 0.6, (3, 4, 4)); t[1] = 0.0
    >>> check_transmission_frames(t, [8300.0, 8340.0, 8400.0])
    Traceback (most recent call last):
    ...
    ValueError: transmission: frame 1 (8340.00 eV) constant (every pixel 0: a detector drop-out) ...
    """
    a = np.asarray(transmission)
    where = _where(source)
    bad = find_bad_frames(a)
    if bad:
        listed = "; ".join(f"frame {i}" + (f" ({float(energies_eV[i]):.2f} eV)" if energies_eV is not None
                                           else "") + f" {why}" for i, why in bad)
        raise ValueError(f"{name}{where}: {listed} measures nothing. Drop such frames with their energies "
                         "(e.g. xanes_lib.io.read_stack(..., bad_frames='drop')) or re-measure them.")
    median = sampled_median(a)
    if median > RAW_COUNTS_MEDIAN:
        raise ValueError(f"{name}{where} has a median of {median:.4g}: these are raw detector counts, not "
                         "transmission I / I0 (about 0-1.2). Flat-field correct them first "
                         "(xanes_lib.io.flat_field_correct(images, flat, dark)).")


def check_image_mask(mask, shape, *, name: str = "mask", hint: str = "", allow_empty: bool = True,
                     required: bool = False):
    """Return ``mask`` as a (Y, X) bool array of the images' ``shape`` (None stays None).

    The one check of every boolean map over an image's pixels: a sample mask, flags, the field
    that every image of an aligned stack covers (``AlignedStack.common_mask``).

    Parameters
    ----------
    mask : array_like of bool or None
    shape : tuple of int
        (Y, X) of the images.
    name : str
        The argument's name, for the message.
    hint : str
        Appended to the message (where such a map comes from).
    allow_empty : bool
        False refuses a map that selects no pixel.
    required : bool
        True refuses None (the map is needed, e.g. the sample pixels of a calibration).

    Raises
    ------
    ValueError
        Not boolean, not of the images' shape, (``allow_empty`` False) no pixel set, or
        (``required``) None.
    """
    if mask is None:
        if required:
            raise ValueError(f"{name} is required here: a boolean (Y, X) = {tuple(shape)} array, not "
                             f"None.{hint}")
        return None
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != tuple(shape):
        raise ValueError(f"{name} must be a boolean (Y, X) = {tuple(shape)} array; got {m.dtype} {m.shape}."
                         f"{hint}")
    if not allow_empty and not m.any():
        raise ValueError(f"{name} selects no pixel.{hint}")
    return m


def refuse_kev(energies, *, name: str, context: str = "", absolute: bool = False) -> None:
    """Raise if energies that should be eV look like keV (a user passed keV).

    The rule is that of :func:`detect_energy_unit`: all energies positive and below
    :data:`KEV_MAX`. Energies whose unit it cannot tell (ambiguous or mixed, e.g. offsets
    from the edge) are refused only with ``absolute``; otherwise the caller's other checks
    judge them.

    Parameters
    ----------
    energies : array_like
        Energies expected in eV, any shape; finite (NaN and inf are ignored).
    name : str
        The argument's name, for the message.
    context : str
        An optional sentence appended to the message (why eV matter to the caller).
    absolute : bool
        Also refuse energies that are not absolute eV (any value <= :data:`EV_MIN`): a caller
        that needs the edge's position in eV (a model of the edge, a file on disk).

    Raises
    ------
    ValueError
        Naming ``name``, its first and last values, and the fix (multiply by 1000).

    Examples
    --------
    >>> refuse_kev([8330.0, 8340.0], name="energies_eV")
    >>> refuse_kev([8.33, 8.34], name="energies_eV")
    Traceback (most recent call last):
    ...
    ValueError: energies_eV look like keV (8.33 ... 8.34); energies are eV in memory: multiply by 1000 ...
    """
    e = np.asarray(energies, dtype=np.float64).ravel()
    if not np.isfinite(e).any():
        return
    try:
        unit = detect_energy_unit(e)
    except ValueError:                                  # unit undecidable: not keV
        if absolute:
            raise ValueError(f"{name} must be absolute energies in eV (above {EV_MIN:g}); got "
                             f"{e[0]:g} ... {e[-1]:g}: offsets from the edge, or another unit? Give the "
                             "photon energies in eV." + (f" {context}" if context else "")) from None
        return
    if unit == "keV":
        raise ValueError(f"{name} look like keV ({e[0]:g} ... {e[-1]:g}); energies are eV in memory: "
                         "multiply by 1000 (or use xanes_lib.validate.energies_to_ev(values, unit='keV'))."
                         + (f" {context}" if context else ""))
