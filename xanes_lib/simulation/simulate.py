"""Simulate full-field TXM-XANES stacks of NMC cathode particles, with ground truth.

The chain, per energy E and pixel (y, x):

1. phantom (:mod:`xanes_lib.simulation.phantom`): projected mass ``m`` (g/cm^2) of cathode material and
   the fraction ``f_k`` of the edge element in each reference state k;
2. Beer-Lambert: ``A = w_el m sum_k f_k mu_k(E) + m mu_matrix(E)`` where ``mu_k`` is the
   edge element's mass attenuation in state k (tabulated branches joined by the reference
   spectrum, :mod:`xanes_lib.physics.materials`) and ``mu_matrix`` that of all other elements;
   ``T = exp(-A)``, optionally shifted (sample drift: a random walk of the absorbance, before
   any noise is drawn, stored as ``GroundTruth.drift_px``) and blurred (detector PSF);
3. beam and detector: flat-field photons ``dose`` per pixel per energy, an illumination
   profile P, the multiplicative background B (:mod:`xanes_lib.simulation.background`), Poisson counts
   for the sample (``dose P B T``) and the averaged flat (``dose P``), a dark offset with
   Gaussian read noise; then ``T_measured = (I - dark) / (flat - dark)``.

Optionally (``foreign_particles > 0``) the edge element of a few particles is in a "foreign
phase" whose spectrum (:func:`xanes_lib.spectra.foreign_reference`: shifted edge, damped
white line) is no mix of the references; the ground truth marks it (``foreign_mask``).

One ``numpy.random.Generator`` seeded from ``seed`` drives every random draw, so the same
seed and configuration give the same arrays (and, through :func:`xanes_lib.io.write_stack`,
the same file byte for byte). The foreign particles are drawn from a separate generator
(``default_rng([seed, 7])``), so that stacks without them are unchanged by the option.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .. import __version__
from ..config import Config
from ..io import GroundTruth, Stack
from ..io.flatfield import flat_field_correct
from ..physics.materials import (
    DENSITIES_G_CM3,
    check_composition,
    edge_branches,
    mass_fractions,
    matrix_mass_attenuation,
    tabulated_edge_energy,
)
from ..spectra import default_references, foreign_reference, jitter_reference, load_reference_library
from ..validate import check_energies, refuse_kev
from .background import PATTERNS, beam_background, illumination_profile
from .phantom import PhantomConfig, make_phantom

__all__ = [
    "default_energy_grid", "SimulationConfig", "check_config", "resolve_references", "absorbance_basis",
    "FOREIGN_MIN_PIXELS", "choose_foreign_particles", "detector_counts", "simulate_stack",
]


def default_energy_grid(element: str, edge: str = "K", *, start_eV: float = -100.0,
                        fine_from_eV: float = -10.0, fine_to_eV: float = 36.0,
                        stop_eV: float = 150.0, coarse_step_eV: float = 10.0,
                        fine_step_eV: float = 1.0) -> np.ndarray:
    """Energies (eV) for a XANES scan: coarse before and after the edge, fine across it.

    Offsets are relative to the tabulated edge energy of ``element``.

    Examples
    --------
    >>> e = default_energy_grid("Ni")
    >>> 50 <= e.size <= 100, float(e[1] - e[0]), float(np.min(np.diff(e)))
    (True, 10.0, 1.0)
    """
    e0 = tabulated_edge_energy(element, edge)
    pre = np.arange(start_eV, fine_from_eV, coarse_step_eV)
    fine = np.arange(fine_from_eV, fine_to_eV, fine_step_eV)
    post = np.arange(fine_to_eV, stop_eV + 1e-9, coarse_step_eV)
    return e0 + np.concatenate([pre, fine, post])


@dataclass(frozen=True)
class SimulationConfig(Config):
    """Everything that defines a simulated stack except the seed.

    Attributes
    ----------
    element, edge : str
        Imaged absorption edge, e.g. "Ni", "K".
    composition : str
        "NMC111", "NMC622" or "NMC811".
    references : tuple of str or None
        Names of the reference states in the shipped library (lowest state first); None
        uses :func:`xanes_lib.spectra.default_references` of the element.
    reference_jitter : float
        0 uses the library spectra as they are; 1 perturbs each one (edge position by
        ~0.3 eV, white-line and oscillation amplitudes by ~10 %) so that no two stacks share
        exactly the same references; values in between scale the perturbation.
    energies_eV : tuple of float or None
        Energies (eV); None uses :func:`default_energy_grid`.
    phantom : PhantomConfig
        Geometry and chemistry of the sample.
    dose : float
        Mean photons per pixel per energy in one flat-field frame.
    flat_frames, dark_frames : int
        Frames averaged into the flat and the dark.
    read_noise : float
        Detector read noise, RMS, in photon-equivalent counts per frame.
    dark_offset : float
        Mean dark level in counts.
    blur_px : float
        Detector/optics PSF, Gaussian sigma in pixels (0: none).
    drift_px : float
        Size of the sample drift, in pixels (0: none): the images follow a 2-D Gaussian
        random walk (one step per energy), scaled so that its RMS displacement about its
        mean position is ``drift_px``; sub-pixel to several pixels (the largest
        displacement from image 0 is typically 2-3 x ``drift_px``). The walk moves the
        absorbance (cubic-spline shift, so that the stored drift is the translation of the
        image content to well below 0.01 px; negative undershoot at sharp edges clipped;
        empty beam entering at the field edges) before the detector PSF and the photon
        noise; the truth is ``GroundTruth.drift_px`` (relative to image 0) and
        ``GroundTruth.drift_origin_px``.
    background_amplitude : float
        RMS of the multiplicative background ``B - 1`` (0.02 = 2 %).
    background_patterns : tuple of str
        Patterns of B, from :data:`xanes_lib.simulation.background.PATTERNS`.
    background_energy_correlation : float
        Correlation of B between neighbouring energies.
    beam_falloff : float
        Relative drop of the illumination towards the field corners.
    mask_min_thickness_um : float
        Pixels with at least this projected solid thickness form the ground-truth mask.
    save_flat_dark : bool
        Store the averaged flat (``img_bkg``) and dark (``img_dark``) in the file.
    foreign_particles : int
        Number of particles whose edge element is in a foreign phase, a spectrum outside the
        references (0: none). They are drawn among the particles covering at least
        :data:`FOREIGN_MIN_PIXELS` sample pixels (the largest ones if fewer qualify).
    foreign_edge_shift_eV : float
        Edge shift (eV) of the foreign spectrum against its base reference, see
        :func:`xanes_lib.spectra.foreign_reference`.
    foreign_white_line_damping : float
        Relative reduction of the foreign spectrum's white line, in [0, 1].
    """

    element: str = "Ni"
    edge: str = "K"
    composition: str = "NMC811"
    references: tuple[str, ...] | None = None
    reference_jitter: float = 0.0
    energies_eV: tuple[float, ...] | None = None
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
    dose: float = 1000.0
    flat_frames: int = 10
    dark_frames: int = 10
    read_noise: float = 2.0
    dark_offset: float = 100.0
    blur_px: float = 0.0
    drift_px: float = 0.0
    background_amplitude: float = 0.02
    background_patterns: tuple[str, ...] = ("gradient", "blobs")
    background_energy_correlation: float = 0.8
    beam_falloff: float = 0.2
    mask_min_thickness_um: float = 0.5
    save_flat_dark: bool = False
    foreign_particles: int = 0
    foreign_edge_shift_eV: float = 3.0
    foreign_white_line_damping: float = 0.6

    def _check(self) -> None:
        check_config(self)

    def replace(self, **changes) -> SimulationConfig:
        """Return a copy with some fields changed; ``phantom_<name>`` keys change phantom fields."""
        ph = {k[len("phantom_"):]: changes.pop(k) for k in list(changes) if k.startswith("phantom_")}
        if ph:
            changes["phantom"] = changes.get("phantom", self.phantom).replace(**ph)
        return super().replace(**changes)

    def to_attrs(self) -> dict:
        """Flat JSON-able dict of every parameter (phantom fields prefixed ``phantom_``).

        The form stored as attributes of ``ground_truth/`` in simulated files.
        """
        d = self.to_dict()
        d.update({f"phantom_{k}": v for k, v in d.pop("phantom").items()})
        return d


def check_config(cfg: SimulationConfig) -> None:
    """Raise a clear ``ValueError`` for a physically meaningless configuration."""
    check_composition(cfg.composition)
    if cfg.element not in mass_fractions(cfg.composition):
        raise ValueError(f"element {cfg.element!r} is not in {cfg.composition}; "
                         f"choose one of {sorted(mass_fractions(cfg.composition))}.")
    if not (cfg.dose > 0 and math.isfinite(cfg.dose)):
        raise ValueError(f"dose must be a finite number > 0 of photons per pixel per energy; got {cfg.dose}.")
    _check_beam_and_grid(cfg)
    for name in ("flat_frames", "dark_frames"):
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(cfg, name)}.")
    for name in ("read_noise", "dark_offset", "blur_px", "drift_px", "mask_min_thickness_um"):
        if not getattr(cfg, name) >= 0 or not math.isfinite(getattr(cfg, name)):
            raise ValueError(f"{name} must be finite and >= 0; got {getattr(cfg, name)}.")
    bad = [p for p in cfg.background_patterns if p not in PATTERNS]
    if bad:
        raise ValueError(f"unknown background pattern(s) {bad}; choose from {PATTERNS}.")
    if isinstance(cfg.foreign_particles, bool) or int(cfg.foreign_particles) != cfg.foreign_particles \
            or cfg.foreign_particles < 0:
        raise ValueError(f"foreign_particles must be an integer >= 0 (number of particles in a "
                         f"foreign phase); got {cfg.foreign_particles!r}.")
    if not math.isfinite(cfg.foreign_edge_shift_eV):
        raise ValueError(f"foreign_edge_shift_eV must be finite (eV); got {cfg.foreign_edge_shift_eV}.")
    if not 0.0 <= cfg.foreign_white_line_damping <= 1.0:
        raise ValueError(f"foreign_white_line_damping must lie in [0, 1]; "
                         f"got {cfg.foreign_white_line_damping}.")
    if min(cfg.phantom.shape) < 8:
        raise ValueError(f"phantom.shape must be at least 8 x 8 pixels; got {cfg.phantom.shape}.")


def _check_beam_and_grid(cfg: SimulationConfig) -> None:
    """Refuse a beam falloff outside [0, 1), a negative reference jitter, energies without the edge."""
    if not 0.0 <= cfg.beam_falloff < 1.0:
        raise ValueError(f"beam_falloff must lie in [0, 1) (the beam's intensity drop towards the field's "
                         f"edge, as a share); got {cfg.beam_falloff}.")
    if not (cfg.reference_jitter >= 0 and math.isfinite(cfg.reference_jitter)):
        raise ValueError(f"reference_jitter must be finite and >= 0; got {cfg.reference_jitter}.")
    if cfg.energies_eV is None:
        return
    e = check_energies(cfg.energies_eV, name="energies_eV")
    refuse_kev(e, name="energies_eV")
    e0 = tabulated_edge_energy(cfg.element, cfg.edge)
    if not e[0] < e0 < e[-1]:
        raise ValueError(f"energies_eV span {e[0]:.1f}-{e[-1]:.1f} eV but the {cfg.element} {cfg.edge} edge "
                         f"is at {e0:.1f} eV: a stack must span its element's edge (or energies_eV=None for "
                         "the default grid).")


def resolve_references(cfg: SimulationConfig, rng: np.random.Generator, references=None) -> list:
    """Return the reference objects of a simulation (library or given), jittered as configured."""
    if references is None:
        if cfg.references is None:
            references = default_references(cfg.element)
        else:
            library = load_reference_library()
            missing = [n for n in cfg.references if n not in library]
            if missing:
                raise ValueError(f"references {missing} are not in the shipped library "
                                 f"{sorted(library)}; pass reference objects instead.")
            references = [library[n] for n in cfg.references]
    other = [r.name for r in references if getattr(r, "element", None) not in (None, cfg.element)]
    if other:
        raise ValueError(f"references {other} are not {cfg.element} spectra, the element simulated; give "
                         f"references of {cfg.element} (or references=None for the shipped ones).")
    references = sorted(references, key=lambda r: r.oxidation_state)
    if cfg.reference_jitter > 0:
        j = cfg.reference_jitter
        references = [jitter_reference(r, rng, shift_eV=0.3 * j, amplitude_frac=0.1 * j)
                      for r in references]
    return references


def absorbance_basis(cfg: SimulationConfig, energies_eV, references) -> tuple[np.ndarray, list[str]]:
    """Spectra whose linear combination is the absorbance of a pixel.

    Returns
    -------
    basis : numpy.ndarray
        (K + 1, E): rows 0..K-1 are ``w_el * mu_k(E)``, the attenuation (cm^2 per g of
        cathode) of the edge element in reference state k; row K is ``mu_matrix(E)``, the
        attenuation of all other elements (cm^2 per g of cathode). The coefficients are
        ``m f_k`` and ``m`` (g/cm^2).
    names : list of str
        Reference names and "matrix".
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    w_el = mass_fractions(cfg.composition)[cfg.element]
    branches = edge_branches(cfg.element, cfg.edge)
    rows = [w_el * branches.mu(e, r.spectrum(e)) for r in references]
    rows.append(matrix_mass_attenuation(cfg.composition, cfg.element, e))
    return np.stack(rows), [r.name for r in references] + ["matrix"]


#: Sample pixels a particle must cover to be drawn as a foreign particle.
FOREIGN_MIN_PIXELS = 200


def choose_foreign_particles(labels, mask, n: int, rng, *, min_pixels: int = FOREIGN_MIN_PIXELS) -> list[int]:
    """Labels of ``n`` particles to put in a foreign phase.

    Parameters
    ----------
    labels : numpy.ndarray
        (Y, X) int: particle with most mass per pixel, -1 for none (``PhantomMaps.labels``).
    mask : numpy.ndarray
        (Y, X) bool sample mask; a particle's size is the number of its pixels in the mask.
    n : int
        Number of particles wanted (>= 0).
    rng : numpy.random.Generator, int or None
        Random source of the draw.
    min_pixels : int
        Particles covering at least this many sample pixels qualify; they are drawn at
        random. If fewer than ``n`` qualify, the ``n`` largest particles are taken; if the
        phantom has fewer than ``n`` particles with sample pixels, all of them are (with a
        warning).

    Returns
    -------
    list of int
        Sorted particle labels.

    Examples
    --------
    >>> labels = np.array([[0, 0, 1], [0, 0, 1], [-1, 2, 2]])  # sizes 4, 2, 2 pixels
    >>> choose_foreign_particles(labels, labels >= 0, 1, 0, min_pixels=3)
    [0]
    >>> choose_foreign_particles(labels, labels >= 0, 2, 0, min_pixels=3)  # the largest
    [0, 1]
    """
    lab = np.asarray(labels)
    inside = lab[np.asarray(mask, dtype=bool) & (lab >= 0)]
    ids, counts = np.unique(inside, return_counts=True)
    n = int(n)
    if n <= 0:
        return []
    if ids.size < n:
        warnings.warn(f"{n} foreign particles asked for but only {ids.size} particle(s) cover sample "
                      "pixels; all of them are foreign.", stacklevel=2)
        return sorted(int(i) for i in ids)
    big = ids[counts >= min_pixels]
    if big.size >= n:
        chosen = np.random.default_rng(rng).choice(big, size=n, replace=False)
    else:
        order = np.lexsort((ids, -counts))  # largest first, ties by label
        chosen = ids[order[:n]]
    return sorted(int(i) for i in chosen)


def _drift_and_blur(absorb: np.ndarray, cfg: SimulationConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Transmission with sample drift (shift of the absorbance) and detector blur, and the drift.

    Returns the transmission (E, Y, X) and the path (E, 2): ``path[e] = (dy, dx)`` is the
    displacement of image e relative to the (undrifted) phantom, the convention of
    ``ndimage.shift``: a feature at (y, x) of the phantom is at (y + dy, x + dx) in image e.
    """
    path = np.zeros((absorb.shape[0], 2))
    if cfg.drift_px > 0:
        steps = rng.standard_normal((absorb.shape[0], 2))
        path = np.cumsum(steps, axis=0)
        path -= path.mean(axis=0)
        path *= cfg.drift_px / max(np.sqrt(np.mean(path ** 2)), 1e-12)
        absorb = np.stack([ndimage.shift(a, s, order=3, mode="grid-constant", cval=0.0)
                           for a, s in zip(absorb, path, strict=True)])
        np.maximum(absorb, 0.0, out=absorb)   # the spline's undershoot at sharp edges (~0.05 % of the mass)
    trans = np.exp(-absorb)
    if cfg.blur_px > 0:
        trans = ndimage.gaussian_filter(trans, sigma=(0, cfg.blur_px, cfg.blur_px), mode="nearest")
    return trans, path


def detector_counts(expected, rng, *, read_noise: float = 0.0, offset: float = 0.0,
                    frames: int = 1) -> np.ndarray:
    """Draw the counts of a photon-counting-equivalent detector, averaged over ``frames`` frames.

    Poisson photon noise on ``expected`` photons per frame, plus ``offset`` and Gaussian read
    noise (RMS ``read_noise`` per frame), averaged over the frames.
    """
    rng = np.random.default_rng(rng)
    lam = np.asarray(expected, dtype=np.float64) * frames
    counts = rng.poisson(lam).astype(np.float64)
    if read_noise > 0:
        counts += rng.normal(0.0, read_noise * np.sqrt(frames), size=counts.shape)
    return counts / frames + offset


def simulate_stack(cfg: SimulationConfig = SimulationConfig(), *, seed: int = 0,
                   references=None) -> tuple[Stack, GroundTruth]:
    """Simulate one noisy stack and its ground truth.

    Parameters
    ----------
    cfg : SimulationConfig
        All physical parameters.
    seed : int
        Seed of the single random generator; recorded in the ground truth.
    references : list of reference objects, optional
        Spectra with ``.name``, ``.oxidation_state`` and ``.spectrum(energies_eV)``; None
        takes them from the shipped library per ``cfg.references``.

    Returns
    -------
    stack : xanes_lib.io.Stack
        What an instrument would export (transmission after flat/dark correction).
    truth : xanes_lib.io.GroundTruth
        Noise- and background-free transmission (drifted and blurred like the images),
        background, fractions, oxidation state (NaN wherever ``mask`` is False, and in a
        foreign phase), mask, areal density of the edge element (maps in the undrifted frame
        of the phantom), every parameter, and the true drift: ``drift_px`` (E, 2), the
        displacement (dy, dx) of image e relative to image 0 (zeros without drift), and
        ``drift_origin_px``, that of image 0 relative to the maps.

    Examples
    --------
    >>> cfg = SimulationConfig().replace(phantom_shape=(32, 32), energies_eV=None)
    >>> stack, truth = simulate_stack(cfg, seed=1)
    >>> stack.transmission.shape == truth.background.shape
    True
    """
    check_config(cfg)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}.")
    rng = np.random.default_rng(seed)
    energies = (default_energy_grid(cfg.element, cfg.edge) if cfg.energies_eV is None
                else check_energies(cfg.energies_eV, name="energies_eV"))
    refs = resolve_references(cfg, rng, references)
    ox = [float(r.oxidation_state) for r in refs]
    basis, names = absorbance_basis(cfg, energies, refs)

    ph = make_phantom(cfg.phantom, DENSITIES_G_CM3[cfg.composition], ox, rng)
    mask = ph.thickness_um >= cfg.mask_min_thickness_um
    fractions = ph.state_fractions
    foreign = foreign_region = None
    if cfg.foreign_particles > 0:
        foreign, foreign_labels, foreign_region, basis, fractions = _foreign_phase(
            cfg, energies, refs, ph, mask, seed)
        coeffs = np.concatenate([ph.areal_density * fractions, (ph.areal_density * foreign_region)[None],
                                 ph.areal_density[None]])
    else:
        coeffs = np.concatenate([ph.areal_density * fractions, ph.areal_density[None]])
    absorb = np.tensordot(basis, coeffs, axes=(0, 0))  # (E, Y, X) = -ln T
    trans, path = _drift_and_blur(absorb, cfg, rng)

    shape = cfg.phantom.shape
    bkg = beam_background(shape, energies.size, rng, amplitude=cfg.background_amplitude,
                          patterns=cfg.background_patterns,
                          energy_correlation=cfg.background_energy_correlation)
    profile = illumination_profile(shape, rng, falloff=cfg.beam_falloff)
    dark = detector_counts(np.zeros(shape), rng, read_noise=cfg.read_noise,
                           offset=cfg.dark_offset, frames=cfg.dark_frames)
    flat = detector_counts(cfg.dose * np.broadcast_to(profile, trans.shape), rng,
                           read_noise=cfg.read_noise, offset=cfg.dark_offset, frames=cfg.flat_frames)
    sample = detector_counts(cfg.dose * profile * bkg * trans, rng, read_noise=cfg.read_noise,
                             offset=cfg.dark_offset)
    measured = flat_field_correct(sample, flat, dark)

    state = np.tensordot(np.asarray(ox), fractions, axes=1)
    state = np.where(mask & (ph.areal_density > 0), state, np.nan)  # NaN outside the sample (contract)
    if foreign_region is not None:
        state = np.where(foreign_region, np.nan, state)  # no state on the references' scale
    w_el = mass_fractions(cfg.composition)[cfg.element]
    params = cfg.to_attrs()
    params.update(seed=int(seed), version=__version__, n_particles=ph.n_particles,
                  energies_eV=energies.tolist(), reference_oxidation_states=ox,
                  reference_spectra=json.dumps([_describe(r) for r in refs]))
    if foreign is not None:
        params.update(foreign_spectrum=json.dumps(_describe(foreign)), foreign_labels=foreign_labels)
    stack = Stack(transmission=measured.astype(np.float32), energies_eV=energies,
                  element=cfg.element, edge=cfg.edge, pixel_size_nm=cfg.phantom.pixel_size_nm,
                  flat=flat.astype(np.float32) if cfg.save_flat_dark else None,
                  dark=dark.astype(np.float32) if cfg.save_flat_dark else None,
                  attrs={"simulated": True, "simulator_version": __version__, "seed": int(seed)})
    truth = GroundTruth(transmission=trans.astype(np.float32), background=bkg.astype(np.float32),
                        fractions=fractions.astype(np.float32), references=names[:-1],
                        oxidation_state=state.astype(np.float32), mask=mask,
                        areal_density=(w_el * ph.areal_density * 1e6).astype(np.float32),
                        areal_density_unit="ug/cm^2", params=params,
                        foreign_mask=None if foreign_region is None else foreign_region & mask,
                        drift_px=path - path[0], drift_origin_px=path[0].copy())
    return stack, truth


def _foreign_phase(cfg: SimulationConfig, energies, refs, ph, mask, seed):
    """Put the edge element of ``cfg.foreign_particles`` particles in a foreign phase.

    The particles are drawn with ``default_rng([seed, 7])`` (the main generator is left
    alone). Their region is the pixels where they hold most mass (``ph.labels``); there all
    of the edge element (overlapping particles included) takes the foreign spectrum.

    Returns
    -------
    foreign : ParametricReference
    labels : list of int
    region : numpy.ndarray
        (Y, X) bool.
    basis : numpy.ndarray
        (K + 2, E): the references, the foreign spectrum (row K), the matrix.
    fractions : numpy.ndarray
        (K, Y, X) reference fractions, 0 in the region.
    """
    try:
        foreign = foreign_reference(refs, edge_shift_eV=cfg.foreign_edge_shift_eV,
                                    white_line_damping=cfg.foreign_white_line_damping)
    except TypeError as exc:
        raise TypeError(f"foreign_particles > 0 needs parametric references: {exc}") from exc
    labels = choose_foreign_particles(ph.labels, mask, cfg.foreign_particles,
                                      np.random.default_rng([int(seed), 7]))
    region = np.isin(ph.labels, labels)
    basis, _ = absorbance_basis(cfg, energies, [*refs, foreign])  # references, foreign, matrix
    fractions = np.where(region[None], 0.0, ph.state_fractions)
    return foreign, labels, region, basis, fractions


def _describe(ref) -> dict:
    """JSON-able description of a reference used in a simulation."""
    state = float(ref.oxidation_state)
    d = {"name": ref.name, "oxidation_state": state if math.isfinite(state) else None}
    params = getattr(ref, "params", None)
    if params is not None and hasattr(params, "to_dict"):
        d["params"] = params.to_dict()
    record = getattr(ref, "provenance", {}).get("foreign")
    if record is not None:
        d["foreign"] = record
    return d
