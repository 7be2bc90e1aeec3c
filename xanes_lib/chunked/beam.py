"""The low-rank beam background of a stack that does not fit in memory, block by block (no torch).

The stages of :func:`xanes_lib.denoising.beam.estimate_background` on an (E, Y, X) dask
array, each calling the same function as the in-memory path:

1. the smoothed absorbance (:func:`~xanes_lib.denoising.beam.smoothed_absorbance`, on windows
   with the Gaussian's reach as halo, so each kept pixel equals the whole stack's) goes to
   Zarr, with its (Y, X) mean level map;
2. the empty pixels are found in memory from that map; the energy profiles come from the
   E x E Gram matrix of the empty pixels, summed over the blocks (a tree of sums);
3. the per-pixel coefficients are computed block by block, their smoothing into the (R, Y, X)
   maps runs in memory;
4. the stack is divided by its background ``exp(-profiles @ maps)`` block by block, lazily.

A drifting stack given as measured (``shifts_px``) gets its background in the detector frame,
as :func:`xanes_lib.denoising.estimate_background` with ``shifts_px`` does: the stack is also
aligned lazily (linear interpolation) and smoothed to Zarr; its mean level finds the sample,
moved back onto the detector (:func:`~xanes_lib.denoising.beam.detector_empty_pixels`); the
sample pixels' coefficients come from the aligned spectra, moved by the median drift.

:func:`divide_beam_background_chunked` is the chunked twin of
:func:`xanes_lib.denoising.divide_beam_background`; :func:`xanes_lib.chunked.denoise_chunked`
runs the same stages on the stack with its invalid pixels filled in.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ..alignment import checked_shifts
from ..denoising.beam import (
    BackgroundEstimate,
    beam_background,
    beam_maps,
    beam_note,
    beam_pixel_maps,
    beam_profiles,
    detector_empty_pixels,
    empty_gram,
    empty_level,
    empty_pixels,
    shifted_model,
    smoothed_absorbance,
    smoothing_halo,
    to_detector,
)
from ..mapping import check_reference_edges
from ..validate import check_energies, check_stack, find_nonfinite, nonfinite_message
from ._blocks import assemble, chunk_regions, in_pieces, map_regions, to_zarr

__all__ = ["divide_beam_background_chunked"]

#: Gaussian sigma (pixels) of the smoothed absorbance: ``estimate_background``'s default ``smooth_px``.
_SMOOTH_PX = 3.0


def divide_beam_background_chunked(transmission, energies_eV, references, *, shift_eV: float = 0.0,
                                   shifts_px=None, workdir) -> tuple[da.Array, str]:
    """Return a dask stack divided by its low-rank beam background, and a note of what was done.

    The chunked twin of :func:`xanes_lib.denoising.divide_beam_background`, with the same
    result (to float rounding: the Gram matrix of the empty pixels is summed block by block)
    and the same notes. Nothing of size (E, Y, X) is held in memory: the smoothed absorbance
    goes to Zarr under ``workdir``; the (R, Y, X) maps of the background are computed in memory.

    Parameters
    ----------
    transmission : dask.array.Array
        (E, Y, X) transmission, chunked in any way (the work runs on every energy per chunk
        and the largest spatial chunks); not modified.
    energies_eV : array_like
        (E,) energies.
    references : sequence
        Reference spectra (``.spectrum(energies)``), calibrated by ``shift_eV``.
    shift_eV : float
        Energy shift applied to the references.
    shifts_px : array_like or xanes_lib.alignment.Alignment, optional
        (E, 2) drift of a stack given as measured, to be aligned afterwards (as
        :func:`xanes_lib.denoising.divide_beam_background`): the background is estimated in
        the detector frame. None or all zero: the stack does not drift.
    workdir : str or path-like
        Existing folder for the temporary Zarr stores (a new sub-folder per call, about twice
        the size of the stack in float32 while the background is estimated). The lazy result
        reads the maps of the background kept there: compute or store it before deleting
        ``workdir``.

    Returns
    -------
    corrected : dask.array.Array
        (E, Y, X) ``transmission / B``, lazy, with the chunks of ``transmission`` and the
        dtype of the in-memory division; or ``transmission`` itself when the background is
        left in.
    note : str
        "beam background divided out (rank r)" or "beam background left in: <reason>" (as
        the in-memory function: NaN or inf in the stack, no empty field).

    Raises
    ------
    ValueError
        Bad energies, a stack whose shape does not match them, references of another edge.
    """
    e = check_energies(energies_eV, name="energies_eV")
    x = da.asarray(transmission)
    # The shape checks of ``check_stack`` on a stand-in of no size (NaN and inf: block by block).
    check_stack(np.broadcast_to(np.float32(1.0), x.shape), name="transmission", n_energies=e.size,
                allow_nonfinite=True)
    references = list(references)
    check_reference_edges(references, e, float(shift_eV))
    model = shifted_model(e, references, shift_eV)
    work = Path(tempfile.mkdtemp(prefix="beam-", dir=workdir))
    try:
        # A regular grid (Zarr stores regular chunks): the largest chunk of each axis.
        x = x.rechunk({0: -1, 1: max(x.chunks[1]), 2: max(x.chunks[2])})
        grid = (chunk_regions(x.chunks[1]), chunk_regions(x.chunks[2]))
        drift = None if shifts_px is None else checked_shifts(shifts_px, e.size, x.shape[1:])
        beam = _estimate_beam(_windows_of(x, grid, e.size), grid, model, work / "estimate",
                              contextlib.nullcontext, check=(_first_nonfinite(x, grid), _refuse_nonfinite),
                              drift=_drifting(x, grid, drift))
    except ValueError as exc:  # no empty field to learn it from
        shutil.rmtree(work, ignore_errors=True)
        return transmission, beam_note(reason=exc)
    shutil.rmtree(work / "estimate")
    note = beam_note(rank=beam.rank)
    dtype = np.result_type(x.dtype, np.float32)
    if not beam.rank:  # a background of ones
        shutil.rmtree(work)
        return da.asarray(transmission).astype(dtype), note
    maps = to_zarr(work / "beam_maps.zarr", beam.maps)
    corrected = map_regions(_divide_block, [x, maps], grid, 0, e.size, dtype, profiles=beam.profiles)
    chunks = da.asarray(transmission).chunks
    return (corrected if corrected.chunks == chunks else corrected.rechunk(chunks)), note


def _windows_of(x: da.Array, grid, n_energies: int):
    """``windows(fn, halo, dtype)`` of :func:`_estimate_beam` on the stack ``x``."""
    return lambda fn, halo, dtype: map_regions(fn, [x], grid, halo, n_energies, dtype)


def _drifting(x: da.Array, grid, drift):
    """``drift`` argument of :func:`_estimate_beam`: None without drift, else the aligned stack's windows."""
    if drift is None or not drift.any():
        return None
    from .pipeline import align_lazy  # the pipeline imports this module

    aligned, common = align_lazy(x, drift, order=1)  # linear, as drifting_sample_view
    return _windows_of(aligned, grid, x.shape[0]), common, drift


def _estimate_beam(windows, grid, model, work: Path, bar, *, check=None, drift=None) -> BackgroundEstimate:
    """``estimate_background`` of a stack, block by block (its stages; default options).

    Parameters
    ----------
    windows : callable
        ``windows(fn, halo, dtype)``: the (E, Y, X) dask array of ``fn(window, keep=)`` on the
        regions of ``grid``, each seen with ``halo`` (:func:`._blocks.map_regions` on the stack).
    grid : tuple of list
        (rows, columns) ``(start, stop)`` of the regions.
    model : xanes_lib.physics.LinearAbsorbanceModel
        Physics model on the stack's energies.
    work : pathlib.Path
        Folder for the Zarr stores (created if missing).
    bar : callable
        Context factory around each ``dask.compute`` (a progress bar or nothing).
    check : tuple, optional
        ``(lazy, fn)``: ``lazy`` is computed with the first pass over the stack, then ``fn(value)``
        is called (it raises to stop).
    drift : tuple, optional
        ``(aligned_windows, common_mask, shifts_px)`` of a drifting stack given as measured
        (:func:`_drifting`): the background is estimated in the detector frame.

    Returns
    -------
    BackgroundEstimate
        With ``background`` None (:func:`xanes_lib.denoising.beam.beam_background` gives it
        for any block of the maps).

    Raises
    ------
    ValueError
        As :func:`xanes_lib.denoising.beam.empty_pixels` (no empty field), or from ``check``.
    """
    work.mkdir(parents=True, exist_ok=True)
    lazy, inspect = check if check is not None else (None, None)
    smoothed, level, value = _smoothed_to_zarr(windows, work / "smoothed.zarr", bar, lazy)
    if inspect is not None:
        inspect(value)
    if drift is None:
        empty, unknown = empty_pixels(level), None
    else:
        aligned = _smoothed_to_zarr(drift[0], work / "aligned_smoothed.zarr", bar)[:2]
        empty, unknown, offset = detector_empty_pixels(aligned[1], drift[1], drift[2])
    blocks = smoothed.to_delayed()[0]
    grams = [dask.delayed(empty_gram)(blocks[i, j], empty[y0:y1, x0:x1])
             for i, (y0, y1) in enumerate(grid[0]) for j, (x0, x1) in enumerate(grid[1])]
    while len(grams) > 1:  # a tree of sums
        grams = [dask.delayed(np.add)(*grams[i:i + 2]) if i + 1 < len(grams) else grams[i]
                 for i in range(0, len(grams), 2)]
    with bar():
        (gram,) = dask.compute(grams[0])
    level_empty = empty_level(level, empty)
    prof = beam_profiles(gram, int(empty.sum()), model, empty_level=level_empty)
    if not prof.rank:
        return BackgroundEstimate(None, prof.profiles, np.zeros((0, *empty.shape)), 0, prof.above, empty,
                                  np.ones(empty.shape), level_empty)
    pixel = map_regions(_pixel_block, [smoothed, to_zarr(work / "empty.zarr", empty)], grid, 0, prof.rank + 1,
                        np.float64, profiles=prof)
    with bar():
        (pieces,) = dask.compute(in_pieces(pixel))
    pixel = assemble(pixel, pieces)
    if drift is not None:  # sample pixels: their coefficients from the aligned spectra, moved back
        inside = map_regions(_sample_pixel_block, [aligned[0]], grid, 0, prof.rank + 1, np.float64,
                             profiles=prof)
        with bar():
            (pieces,) = dask.compute(in_pieces(inside))
        pixel = np.where(empty, pixel, to_detector(assemble(inside, pieces), offset))
    maps, w = beam_maps(pixel, empty, prof, unknown=unknown)
    return BackgroundEstimate(None, prof.profiles, maps, prof.rank, prof.above - prof.rank, empty, w,
                              level_empty)


def _smoothed_to_zarr(windows, path: Path, bar, lazy=None):
    """Smoothed absorbance of a stack's ``windows`` to Zarr, in one pass over the stack.

    Returns it (lazy, read from Zarr), its (Y, X) mean level and the value of ``lazy``
    (computed in the same pass; None without it).
    """
    smoothed = windows(_smoothed_block, smoothing_halo(_SMOOTH_PX), np.float64)
    with bar():
        level = smoothed.map_blocks(np.mean, axis=0, drop_axis=0, dtype=np.float64)
        store = smoothed.to_zarr(str(path), compute=False, compressors=None)  # scratch: no compression
        _, pieces, value = dask.compute(store, in_pieces(level), lazy)
    return da.from_zarr(str(path)), assemble(level, pieces), value


def _smoothed_block(t, *, keep, origin=None):
    """Smoothed absorbance of the region ``keep`` of a window (the beam background's first stage)."""
    return smoothed_absorbance(t, _SMOOTH_PX)[(slice(None), *keep)]


def _pixel_block(a, empty, *, keep, origin, profiles):
    """Per-pixel beam coefficients of one block."""
    return beam_pixel_maps(a, empty, profiles)


def _sample_pixel_block(a, *, keep, origin, profiles):
    """Per-pixel beam coefficients of one block, every pixel taken as sample (the aligned spectra)."""
    return beam_pixel_maps(a, np.zeros(a.shape[1:], bool), profiles)


def _divide_block(t, *maps, keep, profiles, origin=None):
    """Return the region of a window divided by its low-rank beam background (from its block of the maps)."""
    t = t[(slice(None), *keep)]
    return t if not maps else t / beam_background(profiles, maps[0])


def _first_nonfinite(x: da.Array, grid) -> list:
    """Delayed index in ``x`` of the first NaN or inf of each block (None where there is none)."""
    blocks = x.to_delayed()[0]
    return [dask.delayed(_shifted_first)(blocks[i, j], (0, y0, x0))
            for i, (y0, _) in enumerate(grid[0]) for j, (x0, _) in enumerate(grid[1])]


def _shifted_first(block, origin) -> tuple | None:
    """Index of the first NaN or inf of a block (C order), moved by the block's ``origin``; or None."""
    first = find_nonfinite(block)[1]
    return None if first is None else tuple(i + o for i, o in zip(first, origin, strict=True))


def _refuse_nonfinite(firsts) -> None:
    """Raise ``check_stack``'s error for a stack with NaN or inf (``firsts``: of its blocks)."""
    firsts = [f for f in firsts if f is not None]
    if firsts:  # the first in C order of the stack is the smallest of the blocks' firsts
        raise ValueError(nonfinite_message("transmission", min(firsts)))
