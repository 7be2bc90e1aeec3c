"""What the mapping fits are given: a Stack or an array, absorbance or transmission.

:func:`_resolve_input` checks the data and energies of :func:`~xanes_lib.mapping.fit_references`
and :func:`~xanes_lib.mapping.calibrate_energy_shift`. Transmission read as absorbance (or the
reverse) fits without complaint, with the sign of the edge step flipped: an absorbance
``-ln T`` steps *up* at the edge. :func:`_refuse_transmission_as_absorbance` and
:func:`_refuse_absorbance_as_transmission` refuse it.
"""

from __future__ import annotations

import numpy as np

from ..validate import check_energies, check_stack, mostly_negative

#: Most fitted pixels, evenly spaced, on which :func:`_refuse_wrong_kind` fits the edge step.
KIND_SAMPLE_PIXELS = 4096
#: Flat-field corrected transmission lies in (0, TRANSMISSION_MAX] but for noise.
TRANSMISSION_MAX = 1.5
#: Share of the sampled values in (0, TRANSMISSION_MAX] for an "absorbance" to look like transmission.
_TRANSMISSION_SHARE = 0.99
#: Least median of an "absorbance" that looks like transmission (an absorbing holder or membrane
#: in an empty field gives small positive absorbance).
MIN_MEDIAN_TRANSMISSION = 0.3
#: Absorbance passed as transmission: ``-ln A`` falls across the edge by ``ln(A_post / A_pre)``,
#: tenths or more for any sample (thin ones most), while a transmission stack's step is a few
#: hundredths at the least where noise or a beam residual gives either sign. The median step must
#: be below minus this to refuse.
MIN_ABSORBANCE_LOG_STEP = 0.1
#: A negative edge step must hold in this many more pixels than half of them, in units of the
#: binomial spread sqrt(n) / 2 of pixels with no edge (noise gives either sign).
_STEP_SIGN_Z = 5.0


def _resolve_input(stack_or_absorbance, energies_eV, input_kind):
    """Return the (E, Y, X) data, the checked energies and the kind ("absorbance" or "transmission")."""
    from ..io import Stack

    if isinstance(stack_or_absorbance, Stack):
        if input_kind not in (None, "transmission"):
            raise ValueError(f"a Stack holds transmission; input_kind={input_kind!r} does not apply "
                             "(leave it None).")
        data = stack_or_absorbance.transmission
        e_stack = check_energies(stack_or_absorbance.energies_eV, name="Stack.energies_eV")
        if energies_eV is None:
            e = e_stack
        else:
            e = check_energies(energies_eV, name="energies_eV")
            if e.shape != e_stack.shape or not np.allclose(e, e_stack, rtol=0, atol=1e-6):
                raise ValueError("energies_eV differ from the Stack's own energies; pass None to use "
                                 "stack.energies_eV, or the matching energies.")
        kind = "transmission"
    else:
        if energies_eV is None:
            raise ValueError("energies_eV is None; it may only be None for a xanes_lib.io.Stack. "
                             "Pass the (E,) energies in eV.")
        e = check_energies(energies_eV, name="energies_eV")
        data = stack_or_absorbance
        kind = "absorbance" if input_kind is None else input_kind
        if kind not in ("absorbance", "transmission"):
            raise ValueError(f"input_kind must be None, 'absorbance' or 'transmission'; got "
                             f"{input_kind!r}.")
    a = np.asarray(data)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"the {kind} stack must have a float dtype; got {a.dtype}. Convert it "
                         "(raw counts need flat-field correction first).")
    a = check_stack(a, name=kind, n_energies=e.size, allow_nonfinite=True)
    return a, e, kind


def _sampled_values(data: np.ndarray, idx: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(E, n) values at the energies ``idx`` of up to KIND_SAMPLE_PIXELS of ``pixels``, evenly spaced."""
    flat = np.flatnonzero(pixels)
    pick = flat[np.unique(np.linspace(0, flat.size - 1, min(flat.size, KIND_SAMPLE_PIXELS)).astype(int))]
    ys, xs = np.unravel_index(pick, pixels.shape)
    return np.asarray(data[idx[:, None], ys[None, :], xs[None, :]], dtype=np.float64)


def _sampled_steps(data: np.ndarray, idx: np.ndarray, fitted: np.ndarray, model, k: int, *,
                   transmission: bool) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares edge steps ``sum_k c_k`` and values (E, n) of up to KIND_SAMPLE_PIXELS fitted pixels."""
    values = _sampled_values(data, idx, fitted)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = -np.log(values) if transmission else values
    steps = (model.pinv @ a)[:k].sum(axis=0)
    return steps[np.isfinite(steps)], values


def _negative_step(steps: np.ndarray) -> bool:
    """Whether the edge step is negative in significantly more than half of the pixels."""
    return mostly_negative(steps, z=_STEP_SIGN_Z)


def _step_said(steps: np.ndarray) -> str:
    return (f"median {np.median(steps):.3g}, negative in {np.mean(steps < 0):.0%} of {steps.size} sampled "
            "pixels")


def _transmission_like(steps: np.ndarray, values: np.ndarray) -> tuple[float, float] | None:
    """(share of ``values`` in (0, 1.5], their median) when they look like transmission, else None.

    Transmission: edge ``steps`` negative in significantly more than half of the pixels, at
    least 99 % of the finite values in (0, :data:`TRANSMISSION_MAX`] and a median of at least
    :data:`MIN_MEDIAN_TRANSMISSION` (an empty field, or a sample without the element, gives
    steps of either sign).
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0 or not _negative_step(steps[np.isfinite(steps)]):
        return None
    inside = float(np.mean((finite > 0) & (finite <= TRANSMISSION_MAX)))
    median = float(np.median(finite))
    return None if inside < _TRANSMISSION_SHARE or median < MIN_MEDIAN_TRANSMISSION else (inside, median)


def _refuse_transmission_as_absorbance(data: np.ndarray, idx: np.ndarray, fitted: np.ndarray, model,
                                       k: int) -> None:
    """Refuse an array read as absorbance by default that looks like transmission.

    Transmission: at least 99 % of the values in (0, 1.5], a median of at least
    :data:`MIN_MEDIAN_TRANSMISSION`, and an edge step that is negative in significantly more
    than half of the fitted pixels (an empty field, or a sample without the element, gives
    either sign).
    """
    if not fitted.any():
        return
    steps, values = _sampled_steps(data, idx, fitted, model, k, transmission=False)
    found = _transmission_like(steps, values)
    if found is None:
        return
    inside, median = found
    raise ValueError(f"the stack was read as absorbance (input_kind=None), but it looks like transmission: "
                     f"{inside:.0%} of its sampled values lie in (0, {TRANSMISSION_MAX:g}] (median "
                     f"{median:.3g}) and its fitted edge step is negative ({_step_said(steps)}), whereas "
                     "absorbance -ln T steps up at the edge. Pass input_kind='transmission' (or "
                     "-np.log(transmission)); if it really is absorbance, pass input_kind='absorbance'.")


def _refuse_absorbance_as_transmission(data: np.ndarray, idx: np.ndarray, fitted: np.ndarray, model,
                                       k: int) -> None:
    """Refuse a "transmission" whose ``-ln`` steps down at the edge in most fitted pixels: absorbance.

    The median step must also be below ``-MIN_ABSORBANCE_LOG_STEP`` (empty field and faint
    sample give small steps of either sign).
    """
    if not fitted.any():
        return
    refuse_falling_log_steps(_sampled_steps(data, idx, fitted, model, k, transmission=True)[0])


def refuse_falling_log_steps(steps: np.ndarray) -> None:
    """Refuse edge steps of ``-ln(transmission)`` that fall in most pixels: absorbance was given.

    Negative in significantly more than half of the (finite) ``steps``, with a median below
    ``-MIN_ABSORBANCE_LOG_STEP`` (empty field and faint sample give small steps of either sign).
    """
    steps = np.asarray(steps, dtype=np.float64).ravel()
    steps = steps[np.isfinite(steps)]
    if _negative_step(steps) and float(np.median(steps)) < -MIN_ABSORBANCE_LOG_STEP:
        raise ValueError(f"the transmission given has an edge step of -ln(transmission) that is negative "
                         f"({_step_said(steps)}): it looks like absorbance -ln T, whose step is positive. "
                         "Pass the transmission (np.exp(-absorbance)), or check that the references are "
                         "those of the stack's element.")


def _frames_without_values(data: np.ndarray, idx: np.ndarray, pixels: np.ndarray,
                           transmission: bool) -> list[int]:
    """Return the fitted frames (indices into ``data``) that a dead or missing frame would be.

    Those non-finite (or <= 0 in transmission) in at least half of the sampled ``pixels``
    (a (Y, X) bool map).
    """
    values = _sampled_values(data, idx, pixels)
    with np.errstate(invalid="ignore"):
        unusable = ~np.isfinite(values) | ((values <= 0) if transmission else False)
    return [int(i) for i, share in zip(idx, unusable.mean(axis=1), strict=True) if share >= 0.5]


def _refuse_nothing_fitted(data: np.ndarray, e_all: np.ndarray, idx: np.ndarray, asked: np.ndarray,
                           fitted: np.ndarray, transmission: bool) -> None:
    """Refuse a fit in which none of the ``asked`` pixels could be fitted (non-finite or <= 0 values).

    A single dead frame (NaN, zeros) leaves every pixel out and every map NaN; the message names
    such frames by index and energy, or says that every pixel holds some unusable value.
    """
    if not asked.any() or fitted.any():
        return
    frames = _frames_without_values(data, idx, asked, transmission)
    bad = "non-finite or <= 0" if transmission else "non-finite"
    if frames:
        listed = ", ".join(f"{i} ({e_all[i]:.2f} eV)" for i in frames[:10])
        listed += " ..." if len(frames) > 10 else ""
        why = f"frame(s) {listed} are {bad} in most pixels"
        fix = ("Drop those frames with their energies (e.g. read_stack(..., bad_frames='drop')), or fit "
               "without them (energy_window_eV)")
    else:
        why = f"every pixel holds at least one {bad} value"
        fix = "Check the stack (flat-field correction, NaN outside an aligned field)"
    raise ValueError(f"none of the {int(asked.sum())} pixels could be fitted: {why}, so every map would "
                     f"be NaN. {fix}.")

