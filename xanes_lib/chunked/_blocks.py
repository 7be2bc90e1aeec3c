"""Block helpers of the chunked stages: a function on each region of a grid with a halo, maps to Zarr.

Torch-free: shared by :mod:`.beam` and :mod:`.denoise`.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr

__all__ = ["chunk_regions", "map_regions", "to_zarr", "in_pieces", "assemble"]


def chunk_regions(chunks) -> list[tuple[int, int]]:
    """Return the ``(start, stop)`` of each chunk of one axis (``chunks``: its sizes, ``Array.chunks[i]``)."""
    stops = np.cumsum(chunks, dtype=int)
    return [(int(s - c), int(s)) for s, c in zip(stops, chunks, strict=True)]


def in_pieces(array: da.Array) -> list:
    """Return the chunks of a dask array as a list of delayed objects (C order), to compute.

    Computed with :func:`dask.compute`, each chunk comes back on its own; :func:`assemble`
    puts them together in the caller's memory. ``array.compute()`` would instead concatenate
    them in one task, on one worker of a ``dask.distributed`` cluster, which then holds the
    whole map: more than a worker's memory limit for maps of a large field.
    """
    return list(array.to_delayed().ravel())


def assemble(array: da.Array, pieces) -> np.ndarray:
    """Put the computed chunks of ``array`` (from :func:`in_pieces`) together into one array."""
    out = np.empty(array.shape, array.dtype)
    regions = [chunk_regions(c) for c in array.chunks]
    for index, piece in zip(np.ndindex(array.numblocks), pieces, strict=True):
        out[tuple(slice(*regions[k][i]) for k, i in enumerate(index))] = piece
    return out


def to_zarr(path: Path, array) -> da.Array:
    """Write an in-memory map to Zarr and return it as a dask array (keeps it out of the task graphs)."""
    zarr.create_array(store=str(path), data=np.ascontiguousarray(array), compressors=None)  # scratch: fast
    return da.from_zarr(str(path))


def map_regions(fn, sources, grid, halo: int, planes: int, dtype, **kwargs) -> da.Array:
    """(planes, Y, X) dask array of ``fn`` on each region of ``grid``, each seen with a ``halo``.

    ``grid`` is the (rows, columns) lists of ``(start, stop)`` of the regions; ``sources``
    are dask arrays (..., Y, X); ``fn(*windows, keep=, origin=, **kwargs)`` gets their
    windows (the region widened by ``halo``, clipped at the edges of the stack: no padding)
    and returns the region's (planes, y, x) block; ``keep`` slices the region out of the
    windows, ``origin`` is the window's first (row, column). The result's chunks are the
    regions.
    """
    ny, nx = sources[0].shape[-2:]
    rows = []
    for y0, y1 in grid[0]:
        ys, ye = max(y0 - halo, 0), min(y1 + halo, ny)
        row = []
        for x0, x1 in grid[1]:
            xs, xe = max(x0 - halo, 0), min(x1 + halo, nx)
            keep = (slice(y0 - ys, y1 - ys), slice(x0 - xs, x1 - xs))
            task = dask.delayed(fn, pure=False)(*(s[..., ys:ye, xs:xe] for s in sources), keep=keep,
                                                origin=(ys, xs), **kwargs)
            row.append(da.from_delayed(task, (planes, y1 - y0, x1 - x0), dtype=dtype))
        rows.append(row)
    return da.block(rows)
