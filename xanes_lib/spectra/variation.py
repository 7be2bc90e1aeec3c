"""Perturbed references: random jitter for training variety, foreign phases for tests.

:func:`jitter_reference` perturbs a reference (edge shift, peak amplitudes);
:func:`foreign_reference` makes a spectrum outside the references (shifted edge, damped
white line), for simulated phases that the references cannot explain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .references import ParametricReference

__all__ = [
    "jitter_reference", "foreign_reference",
]


_JITTER_AMPS = ("wl_amp", "peak2_amp", "peak3_amp", "osc1_amp", "osc2_amp", "osc3_amp")


def jitter_reference(ref: ParametricReference, rng=None, *, shift_eV: float = 0.3,
                     amplitude_frac: float = 0.1) -> ParametricReference:
    """Return a randomly perturbed copy of a parametric reference, for training-data variety.

    The whole spectrum moves by ``N(0, shift_eV)`` eV (``e0``), and the white-line, post-edge
    peak and oscillation amplitudes are each multiplied by ``1 + N(0, amplitude_frac)``
    (clipped at 0).

    Parameters
    ----------
    ref : ParametricReference
        The reference to perturb.
    rng : numpy.random.Generator, int or None
        Random source (``np.random.default_rng(rng)``).
    shift_eV : float
        Standard deviation of the edge shift (eV), >= 0.
    amplitude_frac : float
        Relative standard deviation of the amplitudes, >= 0.

    Returns
    -------
    ParametricReference
        Same name, element and oxidation state; ``provenance["jitter"]`` records the drawn
        shift and factors.

    Raises
    ------
    ValueError
        For negative or non-finite ``shift_eV`` / ``amplitude_frac``.
    """
    if not isinstance(ref, ParametricReference):
        raise TypeError(f"jitter_reference needs a ParametricReference; got {type(ref).__name__}.")
    for label, v in (("shift_eV", shift_eV), ("amplitude_frac", amplitude_frac)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{label} must be finite and >= 0; got {v}.")
    gen = np.random.default_rng(rng)
    shift = float(gen.normal(0.0, shift_eV)) if shift_eV > 0 else 0.0
    factors = gen.normal(1.0, amplitude_frac, size=len(_JITTER_AMPS)) if amplitude_frac > 0 \
        else np.ones(len(_JITTER_AMPS))
    factors = np.clip(factors, 0.0, None)
    record = {"shift_eV": shift,
              "amplitude_factors": dict(zip(_JITTER_AMPS, map(float, factors), strict=True)),
              "shift_sd_eV": float(shift_eV), "amplitude_sd": float(amplitude_frac)}
    return _perturbed_reference(ref, shift_eV=shift,
                                amplitude_factors=dict(zip(_JITTER_AMPS, factors, strict=True)),
                                record_key="jitter", record=record)


def _perturbed_reference(ref: ParametricReference, *, shift_eV: float,
                         amplitude_factors: Mapping[str, float], record_key: str, record: dict,
                         **fields) -> ParametricReference:
    """Return a copy of ``ref`` with ``e0`` moved by ``shift_eV`` and amplitudes scaled.

    ``amplitude_factors`` maps :class:`EdgeParams` names to multiplicative factors;
    ``record`` is stored as ``provenance[record_key]``; ``fields`` replace further
    attributes of the reference (name, oxidation state).
    """
    p = ref.params
    changes = {"e0": p.e0 + shift_eV}
    changes.update({n: getattr(p, n) * float(f) for n, f in amplitude_factors.items()})
    prov = dict(ref.provenance)
    prov[record_key] = record
    return dataclasses.replace(ref, params=p.replace(**changes), provenance=prov, **fields)


def foreign_reference(references: Sequence[ParametricReference], *, edge_shift_eV: float = 3.0,
                      white_line_damping: float = 0.6, name: str = "foreign") -> ParametricReference:
    """Build a spectrum outside the span of the references: shifted edge, damped white line.

    Simulates a phase of the edge element that the references do not describe (a
    "foreign phase"), so that no linear combination of the references fits it.

    The base is the reference with the median oxidation state (the lower of the two middle
    ones for an even count, e.g. Ni2+ of the default Ni2+/Ni3+, Ni3+ of Ni2+/Ni3+/Ni4+,
    Co3+ of Co3+/Co4+): a real shape of the element, not an average of shapes. Its whole
    spectrum moves by ``edge_shift_eV`` (``e0``) and its white-line amplitude ``wl_amp`` is
    multiplied by ``1 - white_line_damping``; everything else is kept. The perturbation
    goes through the same code as :func:`jitter_reference`.

    The half-step energy moves by exactly ``edge_shift_eV`` without damping; with damping it
    moves a little further (by ~0.07 eV for Ni, ~0.26 eV for Co at the default 0.6), since the
    rising flank of the white line contributes to the 0.5 crossing.

    Parameters
    ----------
    references : sequence of ParametricReference
        The references of the simulation (any order, non-empty, one element).
    edge_shift_eV : float
        Shift of the edge in eV (finite; positive: to higher energy).
    white_line_damping : float
        Relative reduction of the white-line amplitude, in [0, 1] (0: unchanged, 1: no
        white line).
    name : str
        Name of the new reference (non-empty).

    Returns
    -------
    ParametricReference
        Element and edge of the base; ``oxidation_state`` NaN (the phase has no state on the
        references' scale); ``provenance["foreign"]`` records the base, the shift and the
        damping (the base's own provenance is kept alongside).

    Raises
    ------
    ValueError
        For no references, non-finite ``edge_shift_eV`` or ``white_line_damping``, a
        damping outside [0, 1], an empty name, or references of several elements/edges.
    TypeError
        If a reference is not a :class:`ParametricReference`.

    Examples
    --------
    >>> from xanes_lib.spectra import default_references
    >>> refs = default_references("Ni")  # Ni2+, Ni3+: the base is Ni2+
    >>> f = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.6)
    >>> f.provenance["foreign"]["base"], math.isnan(f.oxidation_state)
    ('Ni2+', True)
    >>> round(f.params.e0 - refs[0].params.e0, 6), round(f.params.wl_amp / refs[0].params.wl_amp, 6)
    (3.0, 0.4)
    >>> undamped = foreign_reference(refs, edge_shift_eV=3.0, white_line_damping=0.0)
    >>> round(undamped.edge_energy() - refs[0].edge_energy(), 3)
    3.0
    """
    refs = list(references)
    if not refs:
        raise ValueError("foreign_reference needs at least one reference to start from; got none.")
    bad = [type(r).__name__ for r in refs if not isinstance(r, ParametricReference)]
    if bad:
        raise TypeError(f"foreign_reference needs ParametricReference objects; got {bad}. "
                        "Use parametric references (e.g. default_references(element)).")
    kinds = sorted({(r.element, r.edge) for r in refs})
    if len(kinds) > 1:
        raise ValueError(f"references mix elements/edges {kinds}; give those of one edge.")
    for label, v in (("edge_shift_eV", edge_shift_eV), ("white_line_damping", white_line_damping)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"{label} must be a finite number; got {v!r}.")
    if not 0.0 <= white_line_damping <= 1.0:
        raise ValueError(f"white_line_damping must lie in [0, 1] (share of the white line removed); "
                         f"got {white_line_damping}.")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}.")
    ordered = sorted(refs, key=lambda r: r.oxidation_state)
    base = ordered[(len(ordered) - 1) // 2]
    factor = 1.0 - float(white_line_damping)
    record = {"base": base.name, "base_oxidation_state": base.oxidation_state,
              "edge_shift_eV": float(edge_shift_eV), "white_line_damping": float(white_line_damping),
              "wl_amp_factor": factor,
              "note": "a phase outside the references: oxidation_state is NaN (not on their scale)"}
    return _perturbed_reference(base, shift_eV=float(edge_shift_eV), amplitude_factors={"wl_amp": factor},
                                record_key="foreign", record=record, name=name,
                                oxidation_state=float("nan"))
