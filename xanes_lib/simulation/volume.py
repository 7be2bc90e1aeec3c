"""A small simulated 3-D XANES stack (E, Z, Y, X) with ground truth, for the chunked pipeline's tests.

3-D XANES is a tomogram at every energy. Here each voxel is treated as a thin sample of
its own: its transmission through one voxel of cathode, ``exp(-sum_k mu_k(E) rho d f_k)``,
measured with Poisson noise at an effective dose. Particles are balls with a core-shell
gradient of the oxidation state (reduced core, oxidised shell, or the reverse) on a
random centre state. What it leaves out, stated: the noise of a reconstruction (correlated
between voxels, streaks, ring artefacts) and a beam background (removed by the
reconstruction's normalisation). It checks the data flow and the contract of 3-D results,
not the accuracy of tomographic XANES.

The store follows the stack contract with a Z axis after E: ``img_xanes`` (E, Z, Y, X),
``X_eng`` (keV), and ``ground_truth/`` with ``oxidation_state`` (Z, Y, X; NaN outside the
sample), ``mask`` (Z, Y, X) and ``fractions`` (K, Z, Y, X) (attr ``references``).
"""

from __future__ import annotations

import os

import numpy as np

from .. import __version__
from ..physics.materials import DENSITIES_G_CM3
from ..spectra import default_references
from .phantom import state_to_fractions
from .simulate import SimulationConfig, absorbance_basis, default_energy_grid

__all__ = ["simulate_volume", "write_volume", "read_volume_truth"]


def simulate_volume(shape=(8, 64, 64), *, voxel_size_nm: float = 1000.0, element: str = "Ni",
                    composition: str = "NMC811", dose: float = 5000.0, n_particles: int = 4,
                    n_energies: int | None = None, seed: int = 0) -> dict:
    """Simulate a small noisy 3-D XANES stack and its truth.

    Parameters
    ----------
    shape : (int, int, int)
        (Z, Y, X) voxels.
    voxel_size_nm : float
        Voxel edge (the path through one voxel).
    element, composition : str
        Edge element and cathode composition.
    dose : float
        Effective photons per voxel per energy.
    n_particles : int
        Balls placed at random (overlaps allowed; the later one wins).
    n_energies : int, optional
        Take this many energies of the default grid (evenly spaced indices); None: all.
    seed : int

    Returns
    -------
    dict
        ``transmission`` (E, Z, Y, X) float32, ``energies_eV``, ``element``, ``oxidation_state``,
        ``mask``, ``fractions``, ``references`` (names), ``params``.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = (int(v) for v in shape)
    cfg = SimulationConfig(element=element, composition=composition)
    energies = default_energy_grid(element)
    if n_energies is not None:
        energies = energies[np.unique(np.linspace(0, energies.size - 1, n_energies).round().astype(int))]
    refs = sorted(default_references(element), key=lambda r: r.oxidation_state)
    ox = [float(r.oxidation_state) for r in refs]
    basis, names = absorbance_basis(cfg, energies, refs)             # (K + 1, E), cm^2/g
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    state = np.full(shape, np.nan)
    radius_frac = np.full(shape, np.nan)
    for _ in range(n_particles):
        r = rng.uniform(0.15, 0.3) * min(ny, nx)
        c = (rng.uniform(0, nz), rng.uniform(r, ny - r), rng.uniform(r, nx - r))
        d = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / r
        inside = d <= 1.0
        radius_frac[inside] = d[inside]
        centre_state, gradient = rng.uniform(ox[0] + 0.2, ox[-1] - 0.2), rng.uniform(-0.5, 0.5)
        state[inside] = np.clip(centre_state + gradient * d[inside] ** 2, ox[0], ox[-1])
    mask = np.isfinite(state)
    fractions = np.where(mask, state_to_fractions(np.where(mask, state, ox[0]), ox), 0.0)
    density = DENSITIES_G_CM3[composition] * voxel_size_nm * 1e-7 * mask       # g/cm^2 through one voxel
    coeffs = np.concatenate([density * fractions, density[None]])
    absorb = np.tensordot(basis, coeffs, axes=(0, 0))                          # (E, Z, Y, X)
    counts = rng.poisson(dose * np.exp(-absorb))
    transmission = (np.maximum(counts, 0.5) / dose).astype(np.float32)
    params = {"seed": int(seed), "dose": float(dose), "voxel_size_nm": float(voxel_size_nm),
              "composition": composition, "n_particles": int(n_particles), "version": __version__}
    return {"transmission": transmission, "energies_eV": energies, "element": element,
            "oxidation_state": state.astype(np.float32), "mask": mask,
            "fractions": fractions.astype(np.float32), "references": names[:-1], "params": params}


def write_volume(path, volume: dict, *, chunks=None, overwrite: bool = False) -> str:
    """Write :func:`simulate_volume`'s output to a Zarr store with its ``ground_truth/`` group."""
    import zarr

    from ..chunked import write_zarr_stack

    target = write_zarr_stack(path, volume["transmission"], volume["energies_eV"], element=volume["element"],
                              pixel_size_nm=volume["params"]["voxel_size_nm"], chunks=chunks,
                              overwrite=overwrite)
    root = zarr.open_group(target, mode="a")
    truth = root.create_group("ground_truth")
    for key in ("oxidation_state", "mask", "fractions"):
        truth.create_array(key, data=volume[key])
    truth.attrs.update(references=list(volume["references"]), **volume["params"])
    return target


def read_volume_truth(path) -> dict:
    """Read ``ground_truth/`` of a simulated 3-D store (simulation, metrics and tests only)."""
    import zarr

    if not os.path.isdir(os.fspath(path)):
        raise FileNotFoundError(f"{path} is not a Zarr store (a directory).")
    truth = zarr.open_group(os.fspath(path), mode="r")["ground_truth"]
    out = {key: truth[key][...] for key in ("oxidation_state", "mask", "fractions")}
    out["references"] = list(truth.attrs["references"])
    return out
