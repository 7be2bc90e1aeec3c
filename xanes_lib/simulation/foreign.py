"""The foreign test family: stacks made by a separate phantom with its own assumptions.

Accuracy measured only on data from our own simulator (:mod:`.simulate`) can hide a pipeline
that learnt that simulator's habits. This module is a second, independent generator: it does
not call :mod:`.phantom`, :mod:`.simulate`, :mod:`.background` or
:mod:`xanes_lib.physics.materials`, and it is never used for training or to choose anything;
benchmarks report it separately (``docs/DESIGN.md``, "Numbers to hold").

Assumptions that differ from the in-family simulator:

- pixel size drawn log-uniformly in 30-150 nm (in-family: 100 nm, 70-150 in data sets), and
  particle sizes log-normal *relative to the field of view* (the user picks the magnification
  for the particles), particles placed with little overlap;
- particles are superellipsoids (in-plane exponent 1.7-4: rounded diamonds to rounded
  squares, any orientation, aspect 0.55-1) with chord ``2 c (1 - r^n)^(1/n)``, some hollow
  (a concentric void), not ellipsoids;
- primary grains are *columnar* in projection (2-D Voronoi cells through the whole thickness),
  so every pixel of a particle belongs to one grain and chemistry changes sharply at grain
  borders; no grain-boundary density dip, no cracks, no reduced surface layer;
- chemistry per grain: uniform, linear or radial (core-shell) patterns evaluated at the grain
  seed ("mixed"), smooth pixel-level gradients ("gradient"), two-phase domains split by a line
  or by grain ("sharp"), plus small hot spots of a few pixels with sharp edges;
- porosity: unresolved 15-30 % per particle and resolved pores from a thresholded smooth
  random field (irregular, connected), not spherical pores;
- absorption from the tables directly (``xraydb``): the edge element's pre-edge branch is a
  two-point power law through the Elam table, the edge jump is the tabulated jump ratio
  (``xray_edge().jump_ratio``) times that branch, and the other elements are ``mu_elam`` at
  each energy;
- the references are perturbed by this module (edge shift within +-0.5 eV, fine-structure
  amplitude within +-10 %) when the shipped ones are used, and the foreign phase is built
  here from any reference (shift by 2-4 eV, fine structure blended towards a featureless
  error-function step), so measured (tabulated) references work too;
- energies: 6 eV steps from -72 eV, a fine step of 0.75-1 eV from -15 to +45 eV, 15 eV steps
  to +138 eV, all offset by up to +-0.3 eV (in-family: 10/1/10 eV from -100 to +150 eV);
- beam: a Gaussian beam envelope (in flat and sample alike) and a background B made of
  Legendre surfaces with drifting coefficients, wide Gaussians whose centres drift with
  energy and a per-energy tilt; flat = average of a few (default 4) Poisson frames; no dark,
  no read noise;
- optional stage drift (``drift_px``, off by default): a smooth *thermal* drift in scan time
  (an exponential settling, a linear creep and a slow oscillation, each along its own random
  direction) plus independent per-image jitter of 2-6 % of its size, scaled so that the longest
  displacement from image 0 is ``drift_px`` (in-family: a Gaussian random walk scaled by its RMS);
  it moves the sample, i.e. the noise-free absorbance, by an exact band-limited (Fourier)
  shift on a frame padded with empty field (absorbance 0), so empty field enters at the edges
  and nothing wraps round (in-family: a cubic spline); image 0 is not moved, so the truth maps
  are in the frame of image 0 (``drift_origin_px`` = 0);
- optional detector blur (``blur_px``, off by default): a Gaussian PSF applied to the
  transmission, i.e. to the intensity under an illumination that is uniform on the PSF's scale
  (the beam envelope and B vary over tens of pixels), with empty field (transmission 1) outside
  the frame; the beam background B and the photon noise come after drift and blur.

The ground truth follows the contract of :class:`xanes_lib.io.GroundTruth` exactly as
:func:`.simulate_stack` fills it (``foreign_mask`` for the phase outside the references, NaN
oxidation state there and outside the sample), so evaluation code works on both families.
Independent ``numpy`` generators spawned from ``seed`` drive geometry, chemistry, references,
energies, beam, noise, the foreign particle and the drift, so one option does not reshuffle the
others: a drifting stack has the same phantom, references, energies and background B as the
still stack of the same seed, and with ``drift_px=0`` and ``blur_px=0`` (the defaults) the
stacks are those of the generator before drift and blur existed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import xraydb
from scipy import special

from .. import __version__
from ..config import Config
from ..io import GroundTruth, Stack
from ..spectra import default_references
from ._foreign_instrument import _beam, _moved_and_blurred, _thermal_drift
from ._foreign_phantom import _DENSITY_G_CM3, _phantom

__all__ = [
    "FOREIGN_KINDS", "FOREIGN_COMPOSITIONS", "FOREIGN_FAMILIES", "ForeignConfig", "foreign_energy_grid",
    "foreign_edge_attenuation", "simulate_foreign_stack", "simulate_foreign_family",
]

#: Version of the foreign generator, recorded with every stack.
_GENERATOR_VERSION = "1"

#: Chemistry kinds: "mixed" (grain-level patterns), "gradient" (smooth pixel-level gradients),
#: "sharp" (two-phase domains), "foreign_phase" ("mixed" with one particle outside the references).
FOREIGN_KINDS = ("mixed", "gradient", "sharp", "foreign_phase")

#: Atoms per formula unit of the cathode materials this generator knows.
FOREIGN_COMPOSITIONS = {
    "NMC811": {"Li": 1.0, "Ni": 0.8, "Mn": 0.1, "Co": 0.1, "O": 2.0},
    "NMC622": {"Li": 1.0, "Ni": 0.6, "Mn": 0.2, "Co": 0.2, "O": 2.0},
    "NMC111": {"Li": 1.0, "Ni": 1 / 3, "Mn": 1 / 3, "Co": 1 / 3, "O": 2.0},
    "LNO": {"Li": 1.0, "Ni": 1.0, "O": 2.0},
}

#: Named test stacks mirroring what users measure: keyword arguments of
#: :func:`simulate_foreign_stack` (seeds included). Run one with :func:`simulate_foreign_family`.
FOREIGN_FAMILIES = {
    "Ni_5000_bg1": {"kind": "mixed", "element": "Ni", "dose": 5000.0, "background": 0.01, "seed": 7101},
    "Ni_300_bg2": {"kind": "mixed", "element": "Ni", "dose": 300.0, "background": 0.02, "seed": 7102},
    "Ni_300_foreign_phase": {"kind": "foreign_phase", "element": "Ni", "dose": 300.0, "background": 0.01,
                             "seed": 7103},
    "Ni_300_sharp": {"kind": "sharp", "element": "Ni", "dose": 300.0, "background": 0.01, "seed": 7104},
    "Ni_1000_bg2": {"kind": "gradient", "element": "Ni", "dose": 1000.0, "background": 0.02, "seed": 7105},
    "Co_1000": {"kind": "mixed", "element": "Co", "composition": "NMC811", "dose": 1000.0,
                "background": 0.01, "seed": 7106},
    "Ni_1000_foreign_phase": {"kind": "foreign_phase", "element": "Ni", "dose": 1000.0, "background": 0.01,
                              "seed": 7107},
    "Co_300": {"kind": "mixed", "element": "Co", "composition": "NMC811", "dose": 300.0,
               "background": 0.01, "seed": 7108},
    "Co_5000": {"kind": "mixed", "element": "Co", "composition": "NMC811", "dose": 5000.0,
                "background": 0.01, "seed": 7109},
}

_FOREIGN_MIN_PIXELS = 150  # sample pixels a particle needs to be drawn as the foreign one
_DRIFT_MAX_PX = 64.0  # largest drift_px accepted (px)
_BLUR_MAX_PX = 8.0  # largest PSF sigma accepted (px)


@dataclass(frozen=True)
class ForeignConfig(Config):
    """Every setting of a foreign-family stack except the seed and the references.

    Attributes
    ----------
    kind : str
        Chemistry pattern, one of :data:`FOREIGN_KINDS`.
    element, edge, composition : str
        Imaged edge (Mn, Co or Ni of the composition; "K") and cathode material, a key of
        :data:`FOREIGN_COMPOSITIONS`.
    dose : float
        Mean flat-field photons per pixel per energy in one frame, in (0, 1e9].
    shape : tuple of int
        Image size (rows, columns), each in [16, 4096].
    pixel_size_nm, pixel_size_range_nm : float or None, tuple of float
        Pixel size (nm); None draws it log-uniformly in the range (within [5, 1000]).
    background : float
        RMS of the multiplicative background ``B - 1``, in [0, 0.1] (0.01 = 1 %).
    flat_frames : int
        Poisson frames averaged into the flat, in [1, 100].
    fine_step_eV : float or None
        Energy step across the edge, in [0.25, 2]; None draws it uniformly in [0.75, 1].
    coverage, max_particles : float, int
        Share of the field covered by particles, in [0.05, 0.8]; most particles, in [1, 200].
    radius_frac, radius_sigma : float
        Median mean semi-axis of the particles as a share of the shorter field side, in
        [0.02, 0.3], and the log-normal sigma of the size, in [0, 1].
    porosity, pore_share : tuple of float, float
        Range of the unresolved porosity per particle (within [0, 0.9]); share of the sample
        area in resolved pores, in [0, 0.5].
    hollow_probability, hot_spots : float
        Probability of a hollow core, in [0, 1]; mean hot spots per particle, in [0, 10].
    perturb_references : bool or None
        Perturb the references before simulating (edge shift +-0.5 eV, fine structure
        +-10 %); None perturbs the shipped library's references and uses given ones as they are.
    foreign_phase : bool or None
        Put one particle in a phase outside the references; None: only for kind "foreign_phase".
    mask_min_thickness_um : float
        Solid-equivalent thickness (um) from which a pixel is sample (ground-truth mask), >= 0.
    save_flat : bool
        Keep the averaged flat (E, Y, X) in ``Stack.flat`` (written as ``img_bkg``).
    drift_px : float
        Stage drift: the longest displacement (px, Euclidean) of any image from image 0, in
        [0, 64] and at most a quarter of the shorter image side; 0 (default): no drift. The
        path is a smooth thermal drift plus per-image jitter (module docstring).
    blur_px : float
        Sigma (px) of the Gaussian detector PSF, in [0, 8]; 0 (default): no blur.
    """

    kind: str = "mixed"
    element: str = "Ni"
    edge: str = "K"
    composition: str = "NMC811"
    dose: float = 1000.0
    shape: tuple[int, int] = (128, 128)
    pixel_size_nm: float | None = None
    pixel_size_range_nm: tuple[float, float] = (30.0, 150.0)
    background: float = 0.01
    flat_frames: int = 4
    fine_step_eV: float | None = None
    coverage: float = 0.4
    max_particles: int = 25
    radius_frac: float = 0.11
    radius_sigma: float = 0.35
    porosity: tuple[float, float] = (0.15, 0.3)
    pore_share: float = 0.08
    hollow_probability: float = 0.25
    hot_spots: float = 0.8
    perturb_references: bool | None = None
    foreign_phase: bool | None = None
    mask_min_thickness_um: float = 0.2
    save_flat: bool = False
    drift_px: float = 0.0
    blur_px: float = 0.0

    def _check(self) -> None:
        self._require(self.kind in FOREIGN_KINDS, "kind", f"one of {FOREIGN_KINDS}")
        self._require(self.composition in FOREIGN_COMPOSITIONS, "composition",
                      f"one of {sorted(FOREIGN_COMPOSITIONS)}")
        metals = sorted(set(FOREIGN_COMPOSITIONS[self.composition]) & {"Mn", "Co", "Ni"})
        self._require(self.element in metals, "element", f"an edge metal of {self.composition}: {metals}")
        self._require(self.edge == "K", "edge", "'K' (the only edge this generator models)")
        self._finite("dose", 0.0, 1e9, open_lo=True)
        sh = self.shape
        ok = isinstance(sh, tuple) and len(sh) == 2 and all(_int_in(n, 16, 4096) for n in sh)
        self._require(ok, "shape", "a pair of integers (rows, columns) in [16, 4096]")
        if self.pixel_size_nm is not None:
            self._finite("pixel_size_nm", 5.0, 1000.0)
        self._range("pixel_size_range_nm", 5.0, 1000.0)
        self._finite("background", 0.0, 0.1)
        for name, hi in (("flat_frames", 100), ("max_particles", 200)):
            self._require(_int_in(getattr(self, name), 1, hi), name, f"an integer in [1, {hi}]")
        if self.fine_step_eV is not None:
            self._finite("fine_step_eV", 0.25, 2.0)
        for name, lo, hi in (("coverage", 0.05, 0.8), ("radius_frac", 0.02, 0.3), ("radius_sigma", 0, 1),
                             ("pore_share", 0, 0.5), ("hollow_probability", 0, 1), ("hot_spots", 0, 10)):
            self._finite(name, lo, hi)
        self._range("porosity", 0.0, 0.9)
        self._finite("mask_min_thickness_um", 0.0)
        for name in ("perturb_references", "foreign_phase"):
            self._require(getattr(self, name) in (None, True, False), name, "True, False or None")
        self._require(isinstance(self.save_flat, bool), "save_flat", "True or False")
        self._finite("drift_px", 0.0, _DRIFT_MAX_PX)
        side = min(self.shape)
        self._require(self.drift_px <= side / 4, "drift_px",
                      f"at most a quarter of the shorter image side ({side / 4:g} px for shape "
                      f"{self.shape}); lower drift_px or enlarge shape")
        self._finite("blur_px", 0.0, _BLUR_MAX_PX)


def _int_in(v, lo: int, hi: int) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= v <= hi


def foreign_energy_grid(element: str, *, fine_step_eV: float = 0.8, offset_eV: float = 0.0,
                        edge: str = "K") -> np.ndarray:
    """Energies (eV) of a foreign-family scan.

    Offsets from the tabulated edge: 6 eV steps from -72 to -18 eV, ``fine_step_eV`` from
    -15 to +45 eV, 15 eV steps from +48 to +138 eV; everything moved by ``offset_eV``.

    Parameters
    ----------
    element, edge : str
        Edge element and edge, e.g. "Ni", "K".
    fine_step_eV, offset_eV : float
        Step across the edge (eV), in [0.25, 2]; shift of the whole grid (eV), finite.

    Returns
    -------
    numpy.ndarray
        Strictly increasing energies in eV (77-97 points for steps of 0.75-1 eV).

    Examples
    --------
    >>> e = foreign_energy_grid("Ni", fine_step_eV=1.0)
    >>> e.size, float(e[1] - e[0]), float(e[0])
    (77, 6.0, 8261.0)
    """
    if not (isinstance(fine_step_eV, numbers.Real) and 0.25 <= fine_step_eV <= 2.0):
        raise ValueError(f"fine_step_eV must be a number in [0.25, 2] eV; got {fine_step_eV!r}.")
    if not (isinstance(offset_eV, numbers.Real) and math.isfinite(offset_eV)):
        raise ValueError(f"offset_eV must be a finite number of eV; got {offset_eV!r}.")
    e0 = _edge_energy(element, edge)
    fine = np.arange(-15.0, 45.0 - 1e-9, float(fine_step_eV))
    rel = np.concatenate([np.arange(-72.0, -17.0, 6.0), fine, np.arange(48.0, 139.0, 15.0)])
    return np.round(e0 + rel + float(offset_eV), 6)


def _edge_energy(element: str, edge: str = "K") -> float:
    try:
        return float(xraydb.xray_edge(element, edge).energy)
    except Exception as exc:  # xraydb raises several types for unknown names
        raise ValueError(f"no tabulated {edge} edge for element {element!r}: {exc}") from exc


def foreign_edge_attenuation(element: str, energies_eV, *, edge: str = "K") -> tuple[np.ndarray, np.ndarray]:
    """Non-resonant attenuation and edge jump of the edge element, from the tables.

    The pre-edge branch is the power law through the Elam table (``xraydb.mu_elam``) at 80
    and 3 eV below the edge; the jump is ``(jump_ratio - 1)`` times that branch, with the
    tabulated jump ratio of ``xraydb.xray_edge``. The element in a state with normalised
    spectrum ``s(E)`` then attenuates ``mu_below + s * jump`` (cm^2/g).

    Parameters
    ----------
    element, edge : str
        Edge element and edge, e.g. "Ni", "K".
    energies_eV : array_like
        Energies (eV).

    Returns
    -------
    mu_below, jump : numpy.ndarray
        Mass attenuation below the edge (extended across it) and the edge jump, cm^2/g.

    Examples
    --------
    >>> below, jump = foreign_edge_attenuation("Ni", [8300.0, 8400.0])
    >>> bool(np.all(jump > 5 * below))
    True
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    lo, hi = _edge_energy(element, edge) - 80.0, _edge_energy(element, edge) - 3.0
    mu_lo, mu_hi = (float(xraydb.mu_elam(element, x)) for x in (lo, hi))
    slope = math.log(mu_hi / mu_lo) / math.log(hi / lo)
    below = mu_hi * (e / hi) ** slope
    ratio = float(xraydb.xray_edge(element, edge).jump_ratio)
    return below, (ratio - 1.0) * below


def _mass_fractions(composition: str) -> dict[str, float]:
    masses = {el: n * xraydb.atomic_mass(el) for el, n in FOREIGN_COMPOSITIONS[composition].items()}
    total = sum(masses.values())
    return {el: m / total for el, m in masses.items()}


@dataclass(frozen=True, eq=False)
class _ShapedReference:
    """A reference moved by ``shift_eV`` with its fine structure scaled by ``factor``.

    ``spectrum(E) = step(E') + factor * (s(E') - step(E'))`` with ``E' = E - shift_eV``, ``s``
    the base spectrum and ``step`` an error-function edge at the base's half step with its
    20-80 % rise; ``factor`` < 1 damps the white line (and every other feature).
    """

    name: str
    element: str | None
    edge: str
    oxidation_state: float
    base: object
    shift_eV: float
    factor: float
    centre_eV: float
    sigma_eV: float

    def spectrum(self, energies_eV) -> np.ndarray:
        e = np.asarray(energies_eV, dtype=np.float64) - self.shift_eV
        step = 0.5 * (1.0 + special.erf((e - self.centre_eV) / (math.sqrt(2.0) * self.sigma_eV)))
        return step + self.factor * (np.asarray(self.base.spectrum(e), dtype=np.float64) - step)

    def describe(self) -> dict:
        state = float(self.oxidation_state)
        return {"name": self.name, "oxidation_state": state if math.isfinite(state) else None,
                "base": getattr(self.base, "name", str(self.base)), "type": type(self.base).__name__,
                "source": str(getattr(self.base, "source", "")),
                "shift_eV": self.shift_eV, "fine_structure_factor": self.factor,
                "step_centre_eV": self.centre_eV, "step_sigma_eV": self.sigma_eV}


def _shaped(ref, energies, *, shift_eV=0.0, factor=1.0, name=None, state=None) -> _ShapedReference:
    """Wrap ``ref``; the edge step is measured on a fine grid inside ``energies``."""
    fine = np.linspace(energies[0] + 5.0, energies[-1] - 5.0, 4000)
    s = np.asarray(ref.spectrum(fine), dtype=np.float64)
    crossing = []
    for level in (0.2, 0.5, 0.8):
        i = int(np.argmax(s >= level))
        if s[i] < level or i == 0:
            raise ValueError(f"reference {ref.name!r} does not rise through {level} inside "
                             f"{fine[0]:.1f}-{fine[-1]:.1f} eV; give normalised edge spectra (pre-edge 0, "
                             "post-edge 1) that cover the scan.")
        crossing.append(fine[i - 1] + (level - s[i - 1]) / (s[i] - s[i - 1]) * (fine[i] - fine[i - 1]))
    sigma = float(np.clip((crossing[2] - crossing[0]) / 1.683, 1.0, 8.0))
    return _ShapedReference(name=ref.name if name is None else name, element=getattr(ref, "element", None),
                            edge=getattr(ref, "edge", "K"),
                            oxidation_state=float(ref.oxidation_state if state is None else state),
                            base=ref, shift_eV=float(shift_eV), factor=float(factor),
                            centre_eV=float(crossing[1]), sigma_eV=sigma)


def _resolve_references(cfg: ForeignConfig, references, energies, rng) -> tuple[list, bool]:
    """Check the references, sort them by state and perturb them as configured."""
    shipped = references is None
    refs = default_references(cfg.element) if shipped else list(references)
    if len(refs) < 2:
        raise ValueError(f"references must hold at least 2 spectra (lowest and highest state); "
                         f"got {len(refs)}.")
    for r in refs:
        if not (hasattr(r, "name") and callable(getattr(r, "spectrum", None))):
            raise ValueError(f"references must be reference objects with .name, .oxidation_state and "
                             f".spectrum(energies_eV); got {type(r).__name__}.")
        state = getattr(r, "oxidation_state", None)
        if state is None or not math.isfinite(float(state)):
            raise ValueError(f"reference {r.name!r} has no oxidation state ({state!r}); give one, e.g. "
                             "load_measured_reference(path, element='Ni', oxidation_state=2).")
        el = getattr(r, "element", None)
        if el is not None and el != cfg.element:
            raise ValueError(f"reference {r.name!r} is a {el} spectrum but the element is {cfg.element!r}.")
    refs = sorted(refs, key=lambda r: float(r.oxidation_state))
    states = [float(r.oxidation_state) for r in refs]
    if len(set(states)) != len(states):
        raise ValueError(f"references need distinct oxidation states; got {states}.")
    perturb = shipped if cfg.perturb_references is None else bool(cfg.perturb_references)
    out = []
    for r in refs:
        shift, factor = (rng.uniform(-0.5, 0.5), rng.uniform(0.9, 1.1)) if perturb else (0.0, 1.0)
        out.append(_shaped(r, energies, shift_eV=shift, factor=factor))
    return out, perturb


def _choose_foreign(labels, mask, rng) -> int:
    """Label of the foreign particle: at random among those with enough sample pixels, else the largest."""
    ids, counts = np.unique(labels[mask & (labels >= 0)], return_counts=True)
    if ids.size == 0:
        raise ValueError("the phantom has no sample pixels to put a foreign phase in; lower "
                         "mask_min_thickness_um or raise coverage.")
    big = ids[counts >= _FOREIGN_MIN_PIXELS]
    return int(rng.choice(big)) if big.size else int(ids[np.argmax(counts)])


def simulate_foreign_stack(kind: str, *, element: str = "Ni", dose: float = 1000.0, seed: int = 0,
                           references=None, shape=(128, 128), **overrides) -> tuple[Stack, GroundTruth]:
    """Simulate one stack of the foreign test family, with its ground truth.

    Parameters
    ----------
    kind : str
        Chemistry pattern, one of :data:`FOREIGN_KINDS`.
    element : str
        Edge element ("Ni" or "Co"; any element of the composition with references).
    dose : float
        Mean flat-field photons per pixel per energy in one frame, > 0.
    seed : int
        Seed (>= 0) of every random draw; recorded in the ground truth and the stack attrs.
    references : sequence of reference objects, optional
        Spectra with ``.name``, ``.oxidation_state`` (required) and ``.spectrum(energies_eV)``,
        e.g. :func:`xanes_lib.spectra.default_references` or
        :func:`xanes_lib.spectra.load_measured_reference`; they must cover the scan
        (:func:`foreign_energy_grid`, +-4 eV). None uses the shipped library's references for
        the element, perturbed (see ``perturb_references``).
    shape : tuple of int
        Image size (rows, columns).
    **overrides
        Further fields of :class:`ForeignConfig` (``background``, ``composition``,
        ``pixel_size_nm``, ``foreign_phase``, ``save_flat``, ``drift_px``, ``blur_px``, ...).

    Returns
    -------
    stack : xanes_lib.io.Stack
        ``(sample counts) / (averaged flat counts)``, energies, element, pixel size; the flat
        in ``stack.flat`` when ``save_flat``.
    truth : xanes_lib.io.GroundTruth
        Noise- and background-free transmission (drifted and blurred like the images),
        background B (it stays with the detector), fractions of the references, oxidation
        state (NaN outside the mask and in the foreign phase), mask, areal density of the edge
        element (ug/cm^2), ``foreign_mask`` (None without a foreign phase), every parameter
        and draw in ``params`` (the drift's in ``params["drift"]``). The maps are in the frame
        of image 0. With ``drift_px`` > 0: ``drift_px`` (E, 2), the displacement (dy, dx) of
        image e from image 0 (a feature at (y, x) in image 0 is at (y + dy, x + dx) in image
        e), and ``drift_origin_px`` = (0, 0); both None without drift.

    Raises
    ------
    ValueError
        For an unknown kind or setting, a value out of range (named with its allowed range),
        a bad seed, or unusable references.

    Examples
    --------
    >>> stack, truth = simulate_foreign_stack("sharp", dose=500.0, seed=3, shape=(32, 32))
    >>> stack.transmission.shape == truth.transmission.shape, truth.params["kind"]
    (True, 'sharp')
    """
    names = [f for f in ForeignConfig.__dataclass_fields__ if f not in ("kind", "element", "dose", "shape")]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} of simulate_foreign_stack; allowed: {names}.")
    if not _int_in(seed, 0, 2 ** 63 - 1):
        raise ValueError(f"seed must be an integer in [0, 2**63); got {seed!r}.")
    if not isinstance(kind, str) or kind not in FOREIGN_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {FOREIGN_KINDS}.")
    shape = tuple(shape) if isinstance(shape, list | tuple) else shape
    cfg = ForeignConfig(kind=kind, element=element, dose=dose, shape=shape, **overrides)
    # the 8th generator (drift) came last: the first 7 give the stacks they gave before it existed
    g_geo, g_chem, g_ref, g_grid, g_beam, g_noise, g_foreign, g_drift = (
        np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(8))

    lo_px, hi_px = cfg.pixel_size_range_nm
    px_nm = cfg.pixel_size_nm if cfg.pixel_size_nm is not None \
        else round(math.exp(g_geo.uniform(math.log(lo_px), math.log(hi_px))), 3)
    step = cfg.fine_step_eV if cfg.fine_step_eV is not None else round(g_grid.uniform(0.75, 1.0), 2)
    offset = round(g_grid.uniform(-0.3, 0.3), 2)  # energies to 0.01 eV, as a monochromator logs them
    energies = foreign_energy_grid(cfg.element, fine_step_eV=step, offset_eV=offset, edge=cfg.edge)
    refs, perturbed = _resolve_references(cfg, references, energies, g_ref)
    states = [r.oxidation_state for r in refs]

    mass, fractions, labels, records = _phantom(cfg, px_nm / 1000.0, states, g_geo, g_chem)
    mask = mass / _DENSITY_G_CM3 * 1e4 >= max(cfg.mask_min_thickness_um, 1e-9)
    use_foreign = cfg.kind == "foreign_phase" if cfg.foreign_phase is None else cfg.foreign_phase
    region, foreign = np.zeros(cfg.shape, dtype=bool), None
    if use_foreign:
        chosen = _choose_foreign(labels, mask, g_foreign)
        region = labels == chosen
        mid = refs[(len(refs) - 1) // 2]
        foreign = _shaped(mid.base, energies, shift_eV=mid.shift_eV + float(g_foreign.uniform(2.0, 4.0)),
                          factor=1.0 - float(g_foreign.uniform(0.4, 0.7)), name="foreign", state=float("nan"))
        fractions = np.where(region[None], 0.0, fractions)

    w = _mass_fractions(cfg.composition)
    m_el = w[cfg.element] * mass
    below, jump = foreign_edge_attenuation(cfg.element, energies, edge=cfg.edge)
    matrix = sum(f * xraydb.mu_elam(el, energies) for el, f in w.items() if el != cfg.element)
    spectra = [r.spectrum(energies) for r in refs] + ([foreign.spectrum(energies)] if foreign else [])
    basis = np.stack([jump * s for s in spectra] + [below, matrix])
    coeffs = np.concatenate([m_el * fractions] + ([(m_el * region)[None]] if foreign else [])
                            + [m_el[None], mass[None]])
    absorb = np.tensordot(basis, coeffs, axes=(0, 0))  # Beer-Lambert, (E, Y, X), frame of image 0
    path, drift_draws = (None, None)
    if cfg.drift_px > 0:
        path, drift_draws = _thermal_drift(energies.size, cfg.drift_px, g_drift)
    trans = _moved_and_blurred(absorb, path, cfg.blur_px)

    bkg, profile = _beam(cfg.shape, energies.size, cfg.background, g_beam)
    n = cfg.flat_frames
    flat = g_noise.poisson(np.broadcast_to(n * cfg.dose * profile, trans.shape)) / n
    sample = g_noise.poisson(cfg.dose * profile * bkg * trans).astype(np.float64)
    measured = sample / np.maximum(flat, 0.5 / n)

    state = np.tensordot(np.asarray(states), fractions, axes=1)
    state = np.where(mask & (mass > 0) & ~region, state, np.nan)
    params = cfg.to_dict()  # the settings, then what was drawn from the seed (None settings resolved)
    params.update(generator="xanes_lib.simulation.foreign", generator_version=_GENERATOR_VERSION,
                  version=__version__, family="foreign", seed=int(seed), dose=float(cfg.dose),
                  pixel_size_drawn=cfg.pixel_size_nm is None, pixel_size_nm=px_nm, fine_step_eV=step,
                  energy_offset_eV=offset, perturb_references=perturbed,
                  references_from="shipped library" if references is None else "given",
                  energies_eV=energies.tolist(), mass_fractions=w, density_g_cm3=_DENSITY_G_CM3,
                  edge_jump_ratio=float(xraydb.xray_edge(cfg.element, cfg.edge).jump_ratio),
                  reference_spectra=[r.describe() for r in refs],
                  reference_oxidation_states=states, n_particles=len(records), particles=records,
                  foreign_phase=bool(use_foreign),
                  foreign_spectrum=None if foreign is None else foreign.describe(),
                  foreign_labels=[] if foreign is None else [chosen], drift=drift_draws)
    stack = Stack(transmission=measured.astype(np.float32), energies_eV=energies, element=cfg.element,
                  edge=cfg.edge, pixel_size_nm=px_nm,
                  flat=flat.astype(np.float32) if cfg.save_flat else None,
                  attrs={"simulated": True, "simulator": "xanes_lib.simulation.foreign",
                         "simulator_version": __version__, "seed": int(seed), "foreign_kind": cfg.kind})
    truth = GroundTruth(transmission=trans.astype(np.float32), background=bkg.astype(np.float32),
                        fractions=fractions.astype(np.float32), references=[r.name for r in refs],
                        oxidation_state=state.astype(np.float32), mask=mask,
                        areal_density=(m_el * 1e6).astype(np.float32), areal_density_unit="ug/cm^2",
                        params=params, foreign_mask=(region & mask) if foreign is not None else None,
                        drift_px=path, drift_origin_px=None if path is None else np.zeros(2))
    return stack, truth


def simulate_foreign_family(name: str, **changes) -> tuple[Stack, GroundTruth]:
    """Simulate the named stack of :data:`FOREIGN_FAMILIES` (``changes`` override its settings).

    The family name is recorded as ``params["foreign_family"]`` and ``attrs["foreign_family"]``.

    Examples
    --------
    >>> stack, truth = simulate_foreign_family("Co_1000", shape=(32, 32))
    >>> truth.params["foreign_family"], truth.params["seed"]
    ('Co_1000', 7106)
    """
    if name not in FOREIGN_FAMILIES:
        raise ValueError(f"unknown foreign family {name!r}; choose one of {sorted(FOREIGN_FAMILIES)}.")
    stack, truth = simulate_foreign_stack(**{**FOREIGN_FAMILIES[name], **changes})
    stack.attrs["foreign_family"] = name
    truth.params["foreign_family"] = name
    return stack, truth
