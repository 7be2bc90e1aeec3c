"""Large simulated stacks for the chunked pipeline: one simulated field tiled, fresh noise per tile.

:func:`write_tiled_stack` simulates a ``tile`` x ``tile`` stack with the in-family simulator
(noise-free transmission and beam background), repeats it over the full field and draws new
Poisson counts in every tile (seeded by the tile's position), writing the stack to a Zarr
store chunk by chunk: a stack of any size is made without ever being held in memory. The
chemistry repeats from tile to tile; the noise does not. For scale tests and notebook 06,
not for accuracy claims beyond the tile's own statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .simulate import SimulationConfig, default_energy_grid, simulate_stack

__all__ = ["TiledTruth", "write_tiled_stack"]


@dataclass(frozen=True, eq=False)
class TiledTruth:
    """Truth of a tiled stack: the tile's maps and how many times they repeat.

    Attributes
    ----------
    oxidation_state, mask : numpy.ndarray
        (tile, tile) maps of the simulated tile (NaN / False outside the sample).
    reps : int
        Repetitions along Y and X.
    """

    oxidation_state: np.ndarray
    mask: np.ndarray
    reps: int

    def full(self, name: str) -> np.ndarray:
        """Return the (Y, X) map ``name`` over the whole field."""
        return np.tile(getattr(self, name), (self.reps, self.reps))


def _noisy_tile(block, dose, seed, block_info=None):
    """Poisson counts of one tile of the expected transmission, seeded by its position."""
    loc = block_info[0]["chunk-location"]
    rng = np.random.default_rng([seed, loc[1], loc[2]])
    return (rng.poisson(dose * block.astype(np.float64)) / dose).astype(np.float32)


def write_tiled_stack(path, *, n_energies: int = 100, size: int = 2048, tile: int = 512,
                      element: str = "Ni", dose: float = 2000.0, pixel_size_nm: float = 60.0,
                      chunks=None, seed: int = 0) -> TiledTruth:
    """Write a (n_energies, size, size) simulated stack to a Zarr store; return its truth.

    Parameters
    ----------
    path : str or os.PathLike
        Zarr store to write (``.zarr``); replaced if it exists.
    n_energies : int
        Energies spread along the element's default grid (interpolated between its points,
        so that it stays dense across the edge and coarse before and after).
    size, tile : int
        Field and tile edge in pixels; ``size`` must be a multiple of ``tile``.
    element : str
    dose : float
        Photons per pixel per energy.
    pixel_size_nm : float
    chunks : tuple of int, optional
        Stored chunks (every energy per chunk); None: the reader's default.
    seed : int
        Seed of the tile's simulation; the noise of tile (i, j) uses ``[seed, i, j]``.

    Returns
    -------
    TiledTruth
    """
    import dask.array as da

    from ..chunked import write_zarr_stack

    if size % tile:
        raise ValueError(f"size {size} must be a multiple of tile {tile}.")
    grid = default_energy_grid(element)
    # n energies spread along the default grid (dense across the edge, coarse before and after)
    e = np.interp(np.linspace(0, grid.size - 1, int(n_energies)), np.arange(grid.size), grid)
    cfg = SimulationConfig(element=element, dose=dose, energies_eV=tuple(e)).replace(
        phantom_shape=(tile, tile), phantom_pixel_size_nm=pixel_size_nm)
    _, truth = simulate_stack(cfg, seed=seed)
    expected = (truth.transmission * truth.background).astype(np.float32)
    reps = size // tile
    lazy = da.tile(da.from_array(expected, chunks=(e.size, tile, tile)), (1, reps, reps))
    noisy = lazy.map_blocks(_noisy_tile, dose, seed, dtype=np.float32)
    write_zarr_stack(path, noisy, e, element=element, pixel_size_nm=pixel_size_nm, chunks=chunks,
                     overwrite=True)
    return TiledTruth(truth.oxidation_state, truth.mask, reps)
