"""Phantom of the foreign test family: particles, their pixels, grains and chemistry patterns.

Private to :mod:`xanes_lib.simulation.foreign` (split out for length); its own assumptions,
independent of the in-family :mod:`xanes_lib.simulation.phantom`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

if TYPE_CHECKING:
    from .foreign import ForeignConfig

__all__: list[str] = []

_DENSITY_G_CM3 = 4.75  # one crystal density for all (in-family: per composition)


def _place_particles(cfg: ForeignConfig, px_um: float, rng) -> list[dict]:
    """Superellipsoids with log-normal sizes, placed with little overlap until the coverage."""
    h, w = cfg.shape[0] * px_um, cfg.shape[1] * px_um
    fov = min(h, w)
    parts, covered = [], 0.0
    for _ in range(30 * cfg.max_particles):
        if len(parts) >= cfg.max_particles or covered >= cfg.coverage * h * w:
            break
        r = float(np.clip(fov * cfg.radius_frac * math.exp(rng.normal(0.0, cfg.radius_sigma)),
                          3 * px_um, 0.35 * fov))
        aspect = rng.uniform(0.55, 1.0)
        a, b, n = r / math.sqrt(aspect), r * math.sqrt(aspect), rng.uniform(1.7, 4.0)
        bound = max(a, b) * 2.0 ** max(0.0, 0.5 - 1.0 / n)
        cy, cx = rng.uniform(-0.2 * r, h + 0.2 * r), rng.uniform(-0.2 * r, w + 0.2 * r)
        if any(math.hypot(cy - p["cy"], cx - p["cx"]) < 0.85 * (bound + p["bound"]) for p in parts):
            continue
        hollow = rng.uniform(0.3, 0.5) if rng.random() < cfg.hollow_probability else 0.0
        parts.append({"cy": cy, "cx": cx, "a": a, "b": b, "n": n, "angle": rng.uniform(0.0, math.pi),
                      "c": math.sqrt(a * b) * rng.uniform(0.8, 1.2), "bound": bound, "hollow": hollow,
                      "porosity": rng.uniform(*cfg.porosity)})
        covered += math.pi * a * b
    return parts


def _particle_pixels(p: dict, shape, px_um: float):
    """Pixels inside particle ``p``: indices, frame coordinates (u, v), norm r and chord (um)."""
    (y0, y1), (x0, x1) = ((max(int((c - p["bound"]) / px_um), 0),
                           min(int((c + p["bound"]) / px_um) + 2, size))
                          for c, size in ((p["cy"], shape[0]), (p["cx"], shape[1])))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = (yy + 0.5) * px_um - p["cy"], (xx + 0.5) * px_um - p["cx"]
    cos, sin = math.cos(p["angle"]), math.sin(p["angle"])
    u, v = (dx * cos + dy * sin) / p["a"], (-dx * sin + dy * cos) / p["b"]
    rn = np.abs(u) ** p["n"] + np.abs(v) ** p["n"]
    inside = rn < 1.0
    rn = rn[inside]
    chord = 2.0 * p["c"] * (1.0 - rn) ** (1.0 / p["n"])
    if p["hollow"] > 0:
        q = np.clip(1.0 - rn / p["hollow"] ** p["n"], 0.0, 1.0)  # a concentric void, scaled by `hollow`
        chord = chord - 2.0 * p["c"] * p["hollow"] * q ** (1.0 / p["n"])
    return yy[inside], xx[inside], u[inside], v[inside], rn ** (1.0 / p["n"]), chord


def _grains(p: dict, u, v, rng):
    """Columnar Voronoi grains: grain index per pixel and the seeds (u, v)."""
    n_grains = int(rng.integers(6, 31))
    cand = rng.uniform(-1.0, 1.0, size=(6 * n_grains, 2))
    seeds = cand[(np.abs(cand) ** p["n"]).sum(axis=1) < 1.0][:n_grains]
    scale = np.array([p["a"], p["b"]])
    _, grain = cKDTree(seeds * scale).query(np.column_stack([u, v]) * scale)
    return grain, seeds


def _chemistry(kind: str, u, v, r, grain, seeds, rng) -> tuple[np.ndarray, str]:
    """State per pixel as a share (0-1) of the reference range, and the pattern's name."""
    m = rng.uniform(0.15, 0.85)
    if kind == "sharp":
        lo, hi = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
        if rng.random() < 0.5:
            d = rng.normal(size=2)
            high = (seeds @ (d / np.linalg.norm(d))) > rng.uniform(-0.4, 0.4)
            pattern = "split"
        else:
            high = rng.random(len(seeds)) < rng.uniform(0.3, 0.7)
            pattern = "bimodal"
        per_grain = np.where(high, hi, lo) + rng.normal(0.0, 0.02, len(seeds))
        return per_grain[grain], pattern
    pattern = str(rng.choice(["linear", "radial"] if kind == "gradient" else ["uniform", "linear", "radial"]))
    gain = rng.uniform(0.15, 0.35) * (1.6 if kind == "gradient" else 1.0)
    d = rng.normal(size=2)
    d /= np.linalg.norm(d)
    sign = rng.choice([-1.0, 1.0])
    if kind == "gradient":  # smooth, pixel level
        field = {"linear": u * d[0] + v * d[1], "radial": sign * (r ** 2 - 0.5)}[pattern]
        return m + gain * field + rng.normal(0.0, 0.02, len(seeds))[grain], pattern
    sr = np.sqrt((seeds ** 2).sum(axis=1))
    field = {"uniform": np.zeros(len(seeds)), "linear": seeds @ d, "radial": sign * (sr ** 2 - 0.5)}[pattern]
    return (m + gain * field + rng.normal(0.0, 0.06, len(seeds)))[grain], pattern


def _hot_spots(frac, iy, ix, mean_rate: float, rng) -> int:
    """Small discs (radius 1.5-3.5 px) of a distinct state, set in place; returns their number."""
    n = int(rng.poisson(mean_rate))
    for _ in range(n):
        k = int(rng.integers(iy.size))
        radius = rng.uniform(1.5, 3.5)
        disc = (iy - iy[k]) ** 2 + (ix - ix[k]) ** 2 <= radius ** 2
        base = float(np.mean(frac[disc]))
        frac[disc] = base + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.5)
    return n


def _bracket_fractions(state: np.ndarray, states) -> np.ndarray:
    """(K, N) fractions of the two references whose states bracket each value of ``state``."""
    s = np.asarray(states, dtype=np.float64)
    x = np.clip(state, s[0], s[-1])
    j = np.clip(np.searchsorted(s, x, side="right") - 1, 0, s.size - 2)
    t = (x - s[j]) / (s[j + 1] - s[j])
    out = np.zeros((s.size, x.size))
    cols = np.arange(x.size)
    out[j, cols] = 1.0 - t
    out[j + 1, cols] += t
    return out


def _phantom(cfg: ForeignConfig, px_um: float, states, rng_geo, rng_chem):
    """Projected mass (g/cm^2), mass-weighted fractions, dominant-particle labels, particle records."""
    shape = cfg.shape
    mass, best = np.zeros(shape), np.zeros(shape)
    weighted = np.zeros((len(states), *shape))
    labels = np.full(shape, -1, dtype=np.int64)
    kind = "mixed" if cfg.kind == "foreign_phase" else cfg.kind
    parts = _place_particles(cfg, px_um, rng_geo)
    records = []
    for label, p in enumerate(parts):
        iy, ix, u, v, r, chord = _particle_pixels(p, shape, px_um)
        if iy.size == 0:
            continue
        grain, seeds = _grains(p, u, v, rng_geo)
        texture = 1.0 + rng_geo.normal(0.0, 0.04, len(seeds))  # grain-to-grain density
        density = _DENSITY_G_CM3 * (1.0 - p["porosity"]) * texture[grain]
        m = np.clip(chord, 0.0, None) * 1e-4 * density
        frac, pattern = _chemistry(kind, u, v, r, grain, seeds, rng_chem)
        spots = _hot_spots(frac, iy, ix, cfg.hot_spots, rng_chem)
        state = states[0] + np.clip(frac, 0.0, 1.0) * (states[-1] - states[0])
        mass[iy, ix] += m
        weighted[:, iy, ix] += m * _bracket_fractions(state, states)
        top = m > best[iy, ix]
        best[iy[top], ix[top]], labels[iy[top], ix[top]] = m[top], label
        records.append({"label": label, "centre_um": [round(p["cy"], 3), round(p["cx"], 3)],
                        "semi_axes_um": [round(p["a"], 3), round(p["b"], 3), round(p["c"], 3)],
                        "exponent": round(p["n"], 3), "angle_rad": round(p["angle"], 3),
                        "hollow": round(p["hollow"], 3), "porosity": round(p["porosity"], 3),
                        "grains": len(seeds), "pattern": pattern, "hot_spots": spots})
    fractions = np.divide(weighted, mass, out=np.zeros_like(weighted), where=mass > 0)
    if cfg.pore_share > 0:  # resolved pores: a thresholded smooth random field removes mass
        g = ndimage.gaussian_filter(rng_geo.standard_normal(shape), max(0.7, 0.1 / px_um), mode="wrap")
        thr = np.quantile(g, 1.0 - cfg.pore_share)
        mass *= 1.0 - 0.85 * np.clip((g - thr) / (0.5 * g.std()), 0.0, 1.0)
    return mass, fractions, labels, records
