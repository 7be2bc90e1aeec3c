"""NMC secondary-particle phantoms: projected mass and oxidation-state maps.

Each secondary particle is an ellipsoid (semi-axes a, b in the image plane, c along the beam)
whose projected thickness is ``2 c sqrt(1 - u^2)`` with ``u`` the normalised in-plane radius.
Inside it: primary grains (Voronoi cells with their own density and state), grain boundaries,
resolved pores (spheres that remove their chord), cracks (lines that remove part of the
thickness) and unresolved porosity (a density factor). Particles may overlap; their projected
masses add, and the state of a pixel is the mass-weighted mix of the particles it crosses.

Oxidation-state patterns per particle: a particle-to-particle offset, a core-shell gradient
(a state-of-charge front), hot spots, per-grain scatter, and a reduced surface layer (e.g.
rock-salt Ni2+) whose projected share follows the chord through a shell of given thickness.

Lengths in um unless named otherwise; areal densities in g/cm^2.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..config import Config

__all__ = [
    "PhantomConfig", "PhantomMaps", "state_to_fractions", "make_phantom",
]


@dataclass(frozen=True)
class PhantomConfig(Config):
    """Geometry and chemistry of a phantom. Every length has its unit in its name.

    Attributes
    ----------
    shape : tuple of int
        Image size (rows, columns) in pixels.
    pixel_size_nm : float
        Pixel size in the sample plane (nm).
    fill_fraction : float
        Particles are added until this share of the field is covered (or ``max_particles``).
    radius_um : tuple of float
        Range of the mean in-plane semi-axis of secondary particles (um).
    aspect : tuple of float
        Range of the ratio of the short to the long in-plane semi-axis.
    max_particles : int
        Upper bound on the number of particles.
    porosity : float
        Unresolved volume porosity of the secondary particles (0-1): density factor 1 - p.
    grain_size_um : float
        Mean size of the primary grains (um).
    texture_sigma : float
        Relative scatter of the density from grain to grain.
    grain_boundary_um : float
        Width of the grain boundaries (um).
    grain_boundary_depth : float
        Share of the density missing on grain boundaries (0-1).
    pores_per_um3 : float
        Resolved pores per um^3 of particle volume.
    pore_radius_um : tuple of float
        Range of pore radii (um).
    cracks_per_particle : float
        Mean number of cracks per particle (Poisson).
    crack_width_um : float
        Crack width (um).
    crack_depth : tuple of float
        Range of the share of the thickness a crack removes.
    mean_state : float or None
        Mean oxidation state; None places it at ``mean_state_frac`` of the reference range.
    mean_state_frac : float
        Position (0-1) of the mean state between the lowest and highest reference state,
        used when ``mean_state`` is None.
    particle_state_sigma : float
        Particle-to-particle scatter of the state.
    core_shell_delta : float
        Largest state difference between shell and core (sign drawn per particle).
    core_radius_frac : tuple of float
        Range of the normalised radius of the state-of-charge front.
    hot_spots_per_particle : float
        Mean number of hot spots per particle (Poisson).
    hot_spot_delta : float
        Largest state change in a hot spot (sign drawn per spot).
    hot_spot_radius_um : tuple of float
        Range of hot-spot radii (um).
    grain_state_sigma : float
        Grain-to-grain scatter of the state.
    surface_layer_nm : float
        Thickness of the reduced surface layer (nm); 0 disables it.
    surface_state : float or None
        State of the surface layer; None uses the lowest reference state.
    """

    shape: tuple[int, int] = (256, 256)
    pixel_size_nm: float = 100.0
    fill_fraction: float = 0.35
    radius_um: tuple[float, float] = (1.5, 5.0)
    aspect: tuple[float, float] = (0.75, 1.0)
    max_particles: int = 40
    porosity: float = 0.1
    grain_size_um: float = 0.5
    texture_sigma: float = 0.05
    grain_boundary_um: float = 0.06
    grain_boundary_depth: float = 0.3
    pores_per_um3: float = 0.03
    pore_radius_um: tuple[float, float] = (0.06, 0.25)
    cracks_per_particle: float = 1.0
    crack_width_um: float = 0.1
    crack_depth: tuple[float, float] = (0.3, 0.9)
    mean_state: float | None = None
    mean_state_frac: float = 0.6
    particle_state_sigma: float = 0.12
    core_shell_delta: float = 0.3
    core_radius_frac: tuple[float, float] = (0.4, 0.8)
    hot_spots_per_particle: float = 0.7
    hot_spot_delta: float = 0.3
    hot_spot_radius_um: tuple[float, float] = (0.3, 1.0)
    grain_state_sigma: float = 0.03
    surface_layer_nm: float = 80.0
    surface_state: float | None = None

    def _check(self) -> None:
        self._require(isinstance(self.shape, tuple) and len(self.shape) == 2
                      and all(isinstance(n, numbers.Integral) and n >= 1 for n in self.shape),
                      "shape", "a pair of integers (rows, columns) >= 1")
        self._finite("pixel_size_nm", 0.0, open_lo=True)
        self._positive_ints("max_particles", minimum=0)
        for name in ("fill_fraction", "grain_boundary_depth", "mean_state_frac"):
            self._finite(name, 0.0, 1.0)
        self._finite("porosity", 0.0, 1.0, open_hi=True)
        self._finite("grain_size_um", 0.0, open_lo=True)
        for name in ("texture_sigma", "grain_boundary_um", "pores_per_um3", "cracks_per_particle",
                     "crack_width_um", "particle_state_sigma", "core_shell_delta", "hot_spots_per_particle",
                     "hot_spot_delta", "grain_state_sigma", "surface_layer_nm"):
            self._finite(name, 0.0)
        for name in ("radius_um", "pore_radius_um", "hot_spot_radius_um"):
            self._range(name, 0.0)
        for name in ("aspect", "crack_depth", "core_radius_frac"):
            self._range(name, 0.0, 1.0)
        for name in ("mean_state", "surface_state"):
            if getattr(self, name) is not None:
                self._finite(name)


@dataclass
class PhantomMaps:
    """Projected maps of a phantom.

    Attributes
    ----------
    areal_density : numpy.ndarray
        (Y, X) projected mass of cathode material (g/cm^2).
    state_fractions : numpy.ndarray
        (K, Y, X) fraction of the edge element in each reference state (sum 1 where there
        is material, 0 elsewhere).
    thickness_um : numpy.ndarray
        (Y, X) projected thickness of solid material (um), after pores and cracks.
    labels : numpy.ndarray
        (Y, X) int: index of the particle with most mass at each pixel, -1 for none.
    n_particles : int
        Number of particles placed.
    """

    areal_density: np.ndarray
    state_fractions: np.ndarray
    thickness_um: np.ndarray
    labels: np.ndarray
    n_particles: int


def state_to_fractions(state, oxidation_states) -> np.ndarray:
    """Split oxidation states into fractions of the two bracketing reference states.

    Parameters
    ----------
    state : array_like
        Oxidation states (any shape), clipped to the references' range.
    oxidation_states : sequence of float
        Strictly increasing oxidation states of the K references.

    Returns
    -------
    numpy.ndarray
        (K, ...) fractions, summing to 1, whose weighted mean of states is ``state``.

    Examples
    --------
    >>> state_to_fractions([2.25], [2.0, 3.0]).ravel().tolist()
    [0.75, 0.25]
    """
    ox = np.asarray(oxidation_states, dtype=np.float64)
    if ox.ndim != 1 or ox.size < 2 or np.any(np.diff(ox) <= 0):
        raise ValueError(f"oxidation_states must be >= 2 strictly increasing values; got {ox.tolist()}.")
    s = np.clip(np.asarray(state, dtype=np.float64), ox[0], ox[-1])
    out = np.zeros((ox.size,) + s.shape)
    seg = np.clip(np.searchsorted(ox, s, side="right") - 1, 0, ox.size - 2)
    t = (s - ox[seg]) / (ox[seg + 1] - ox[seg])
    for k in range(ox.size - 1):
        here = seg == k
        out[k][here] += 1.0 - t[here]
        out[k + 1][here] += t[here]
    return out


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _place_particles(cfg: PhantomConfig, rng: np.random.Generator) -> list[dict]:
    """Draw particle centres, semi-axes and angles until the field is covered enough."""
    ny, nx = cfg.shape
    px_um = cfg.pixel_size_nm / 1000.0
    covered = np.zeros(cfg.shape, bool)
    yy, xx = np.mgrid[0:ny, 0:nx]
    parts = []
    for _ in range(cfg.max_particles):
        if covered.mean() >= cfg.fill_fraction:
            break
        r = rng.uniform(*cfg.radius_um)
        asp = rng.uniform(*cfg.aspect)
        a, b = r / np.sqrt(asp), r * np.sqrt(asp)  # in-plane semi-axes, same area as r
        c = rng.uniform(b, a)
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        ang = rng.uniform(0, np.pi)
        p = dict(center_px=(cy, cx), semi_axes_um=(a, b, c), angle=ang)
        u2 = _normalized_radius2(p, yy, xx, px_um)
        covered |= u2 < 1.0
        parts.append(p)
    return parts


def _normalized_radius2(p: dict, yy, xx, px_um: float):
    """Squared normalised in-plane radius of pixel coordinates for particle ``p``."""
    cy, cx = p["center_px"]
    a, b, _ = p["semi_axes_um"]
    dy, dx = (yy - cy) * px_um, (xx - cx) * px_um
    ca, sa = np.cos(p["angle"]), np.sin(p["angle"])
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    return (u / a) ** 2 + (v / b) ** 2


def _particle_maps(p: dict, cfg: PhantomConfig, ox: np.ndarray, base_state: float,
                   rng: np.random.Generator):
    """Draw the maps of one particle inside its bounding box: slices, thickness, density, state."""
    ny, nx = cfg.shape
    px_um = cfg.pixel_size_nm / 1000.0
    a, b, c = p["semi_axes_um"]
    cy, cx = p["center_px"]
    half = int(np.ceil(max(a, b) / px_um)) + 1
    y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, ny)
    x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, nx)
    if y1 <= y0 or x1 <= x0:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    u2 = _normalized_radius2(p, yy, xx, px_um)
    inside = u2 < 1.0
    if not inside.any():
        return None
    u = np.sqrt(np.minimum(u2, 1.0))
    thick = np.where(inside, 2.0 * c * np.sqrt(np.clip(1.0 - u2, 0.0, None)), 0.0)
    dy_um, dx_um = (yy - cy) * px_um, (xx - cx) * px_um

    # Primary grains: Voronoi cells seeded inside the particle's in-plane footprint.
    n_grains = max(int(np.pi * a * b / cfg.grain_size_um ** 2), 1)
    rr = np.sqrt(rng.uniform(0, 1, n_grains))
    th = rng.uniform(0, 2 * np.pi, n_grains)
    ca, sa = np.cos(p["angle"]), np.sin(p["angle"])
    gu, gv = a * rr * np.cos(th), b * rr * np.sin(th)
    seeds = np.column_stack([gu * sa + gv * ca, gu * ca - gv * sa])  # (dy, dx) in um
    k = min(2, n_grains)
    dist, idx = cKDTree(seeds).query(np.column_stack([dy_um.ravel(), dx_um.ravel()]), k=k)
    dist, idx = dist.reshape(dy_um.shape + (k,)), idx.reshape(dy_um.shape + (k,))
    grain = idx[..., 0]
    density = 1.0 + cfg.texture_sigma * rng.standard_normal(n_grains)[grain]
    if k == 2:  # grain boundaries: nearly equidistant from two seeds
        boundary = (dist[..., 1] - dist[..., 0]) < cfg.grain_boundary_um
        density = density * np.where(boundary, 1.0 - cfg.grain_boundary_depth, 1.0)

    # Resolved pores: spheres inside the particle remove their chord from the thickness.
    volume = 4.0 / 3.0 * np.pi * a * b * c
    for _ in range(rng.poisson(cfg.pores_per_um3 * volume)):
        rp = rng.uniform(*cfg.pore_radius_um)
        rr, th = np.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
        gu, gv = a * rr * np.cos(th), b * rr * np.sin(th)
        py, pxx = gu * sa + gv * ca, gu * ca - gv * sa
        d2 = (dy_um - py) ** 2 + (dx_um - pxx) ** 2
        thick = thick - 2.0 * np.sqrt(np.clip(rp ** 2 - d2, 0.0, None))
    thick = np.clip(thick, 0.0, None)

    # Cracks: segments from near the centre outwards that remove part of the thickness.
    for _ in range(rng.poisson(cfg.cracks_per_particle)):
        ang = rng.uniform(0, 2 * np.pi)
        start = rng.uniform(0.0, 0.3) * min(a, b)
        length = rng.uniform(0.5, 1.2) * max(a, b)
        oy, ox0 = start * np.sin(ang), start * np.cos(ang)
        ty, tx = np.sin(ang), np.cos(ang)
        along = (dy_um - oy) * ty + (dx_um - ox0) * tx
        across = np.abs(-(dy_um - oy) * tx + (dx_um - ox0) * ty)
        on = (across < cfg.crack_width_um / 2) & (along > 0) & (along < length)
        thick = np.where(on, thick * (1.0 - rng.uniform(*cfg.crack_depth)), thick)

    # Oxidation state: particle offset, core-shell front, hot spots, grain scatter.
    state = np.full(u.shape, base_state + cfg.particle_state_sigma * rng.standard_normal())
    front = rng.uniform(*cfg.core_radius_frac)
    state += rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.0) * cfg.core_shell_delta * \
        _smoothstep((u - front) / max(1.0 - front, 1e-3))
    for _ in range(rng.poisson(cfg.hot_spots_per_particle)):
        rh = rng.uniform(*cfg.hot_spot_radius_um)
        rr, th = np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
        gu, gv = a * rr * np.cos(th), b * rr * np.sin(th)
        d2 = (dy_um - (gu * sa + gv * ca)) ** 2 + (dx_um - (gu * ca - gv * sa)) ** 2
        state += rng.choice([-1.0, 1.0]) * cfg.hot_spot_delta * np.exp(-d2 / (2 * rh ** 2))
    state += cfg.grain_state_sigma * rng.standard_normal(n_grains)[grain]
    state = np.clip(state, ox[0], ox[-1])
    if cfg.surface_layer_nm > 0:
        # Share of the chord that lies in a surface shell of relative thickness delta.
        delta = min(cfg.surface_layer_nm / 1000.0 / ((a + b + c) / 3.0), 1.0)
        inner = np.sqrt(np.clip((1.0 - delta) ** 2 - u2, 0.0, None))
        outer = np.sqrt(np.clip(1.0 - u2, 1e-12, None))
        shell = np.clip(1.0 - inner / outer, 0.0, 1.0)
        s_surf = ox[0] if cfg.surface_state is None else cfg.surface_state
        state = (1.0 - shell) * state + shell * s_surf
    return (slice(y0, y1), slice(x0, x1)), thick, np.clip(density, 0.0, None), state


def make_phantom(cfg: PhantomConfig, density_g_cm3: float, oxidation_states, rng) -> PhantomMaps:
    """Draw a phantom and project it.

    Parameters
    ----------
    cfg : PhantomConfig
        Geometry and chemistry settings.
    density_g_cm3 : float
        Crystallographic density of the cathode material (g/cm^3).
    oxidation_states : sequence of float
        Strictly increasing oxidation states of the references, in the order of the
        fractions returned.
    rng : numpy.random.Generator, int or None
        Random source.

    Returns
    -------
    PhantomMaps
    """
    rng = np.random.default_rng(rng)
    ox = np.asarray(oxidation_states, dtype=np.float64)
    if np.any(np.diff(ox) <= 0):
        raise ValueError(f"oxidation_states must increase strictly; got {ox.tolist()}. "
                         "Order the references from the lowest to the highest state.")
    mean_state = ox[0] + cfg.mean_state_frac * (ox[-1] - ox[0]) if cfg.mean_state is None else cfg.mean_state
    mass = np.zeros(cfg.shape)
    weighted = np.zeros((ox.size,) + cfg.shape)
    thickness = np.zeros(cfg.shape)
    best = np.zeros(cfg.shape)
    labels = np.full(cfg.shape, -1, dtype=np.int32)
    particles = _place_particles(cfg, rng)
    rho = density_g_cm3 * (1.0 - cfg.porosity)
    for i, p in enumerate(particles):
        out = _particle_maps(p, cfg, ox, mean_state, rng)
        if out is None:
            continue
        sl, thick, dens, state = out
        m = rho * dens * thick * 1e-4  # um -> cm: areal density in g/cm^2
        mass[sl] += m
        weighted[(slice(None),) + sl] += m * state_to_fractions(state, ox)
        thickness[sl] += thick
        top = m > best[sl]
        labels[sl][top] = i
        best[sl] = np.where(top, m, best[sl])
    fractions = np.divide(weighted, mass, out=np.zeros_like(weighted), where=mass > 0)
    return PhantomMaps(mass, fractions, thickness, labels, len(particles))
