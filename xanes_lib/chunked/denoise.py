"""Denoise a stack that does not fit in memory: the stages of ``denoise_stack``, block by block.

:func:`denoise_chunked` runs :func:`xanes_lib.denoising.denoise_stack` (latent or paper variant,
tiled) on an (E, Y, X) dask array and gives the same result to float rounding: every stage
calls the same functions as the in-memory path, on blocks wide enough (a halo) that each kept
pixel sees what it sees in the whole stack.

1. Invalid pixels: the (Y, X) mask is a reduction; the nearest valid pixel of each (an
   exact distance transform) is found in memory and copied in block by block, with a halo
   as wide as the farthest stand-in.
2. Low-rank beam background (:mod:`xanes_lib.denoising.beam`, block by block as in :mod:`.beam`):
   the smoothed absorbance (halo: the Gaussian's reach) goes to Zarr with its mean level map;
   the empty pixels are found in memory, the energy profiles from the E x E Gram matrix of
   the empty pixels (summed over blocks), the per-pixel coefficients block by block and
   their smoothing in memory (R maps).
3. The stack divided by that background goes to Zarr, with its sub-sampled edge step (the
   coefficient scale).
4. The network on the tile grid of ``denoise_stack`` (same windows: the tile margin as halo,
   none beyond the edges, the same padding): coefficient and probe maps come back to memory,
   the network-corrected stack (or, without the selection, the denoised one) goes to Zarr.
5. The strength selection runs in memory on the (P, Y, X) maps.
6. The denoised stack is returned lazily: rebuilt block by block with the halo of the
   smoothing of the unexplained part.

Nothing of size (E, Y, X) is held in memory; (n, Y, X) maps with n up to a few times P are.
The global steps are ``dask.compute`` calls without a scheduler of their own: the caller's
``dask.config.set(scheduler=...)`` or ``distributed.Client`` runs them (the denoiser is
shipped to the workers once; it pickles with cloudpickle).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import torch

from ..denoising.beam import BackgroundEstimate, smoothing_halo
from ..denoising.denoiser import Denoiser, pick_device
from ..denoising.inference import (
    SCALE_STRIDE,
    UNEXPLAINED_SIGMA_PX,
    _check_denoiser,
    _denoise_tile,
    _fit_step,
    _gather_pixels,
    _invalid_pixels,
    _lowrank_beam,
    _nearest_valid,
    _Probe,
    _probe_planes,
    _rebuild,
    _refuse_absorbance,
    _stack_model,
    _step_scale,
    _tile_align,
    _tile_regions,
    _with_halo,
)
from ..denoising.strength import StrengthChoice, check_field
from ..validate import check_transmission_frames
from ._blocks import assemble, in_pieces, map_regions, to_zarr
from .beam import _divide_block, _estimate_beam

__all__ = ["ChunkedDenoiseResult", "denoise_chunked"]

#: The frames are checked on a stack sub-sampled in space to at most this many images' pixels.
_FRAME_CHECK_IMAGES = 4


@dataclass
class ChunkedDenoiseResult:
    """Result of :func:`denoise_chunked`: what ``DenoiseResult`` holds, less the (E, Y, X) arrays.

    Attributes
    ----------
    denoised : dask.array.Array
        (E, Y, X) float32 denoised transmission, lazy (it reads the Zarr stores under the
        ``workdir`` of the call: compute or store it before deleting that folder).
    coefficients : numpy.ndarray
        (P, Y, X) float32 coefficient maps of the denoised stack (NaN at invalid pixels).
    coefficient_names : tuple of str
    scale : float
        Coefficient normalisation used (one value for the whole stack).
    seconds : float
        Wall time of the eager stages (the lazy rebuild of ``denoised`` not included).
    tiles : int
        Number of tiles processed.
    beam : xanes_lib.denoising.beam.BackgroundEstimate or None
        The low-rank beam background removed before the network: its profiles and (R, Y, X)
        maps (``background`` is None; :func:`xanes_lib.denoising.beam.beam_background` gives
        it for any block).
    invalid : numpy.ndarray or None
        (Y, X) pixels left out (NaN, inf or <= 0 at some energy); None when there were none.
    strength : xanes_lib.denoising.strength.StrengthChoice or None
        The strength selection, as in ``DenoiseResult``; None when it was off.
    """

    denoised: da.Array
    coefficients: np.ndarray
    coefficient_names: tuple
    scale: float
    seconds: float
    tiles: int
    beam: BackgroundEstimate | None = None
    invalid: np.ndarray | None = None
    strength: StrengthChoice | None = None

    def oxidation_state_std(self, fit_std):
        """Return the standard deviation to report for the oxidation state fitted on ``denoised``.

        As ``DenoiseResult.oxidation_state_std``
        (:meth:`xanes_lib.denoising.strength.StrengthChoice.oxidation_state_std`).
        """
        return np.asarray(fit_std) if self.strength is None else self.strength.oxidation_state_std(fit_std)


def denoise_chunked(denoiser: Denoiser, transmission, energies_eV, *, element: str | None = None,
                    references=None, tile: int = 512, margin: int = 64, select: bool = True,
                    probe_seed: int = 0, workdir, progress: bool = False, lowrank: bool | None = None,
                    energy_batch: int = 16, device=None, field=None) -> ChunkedDenoiseResult:
    """Denoise an (E, Y, X) dask array block by block; the same result as ``denoise_stack``.

    Parameters
    ----------
    denoiser : Denoiser
        The trained denoiser (:func:`xanes_lib.denoising.load_checkpoint`).
    transmission : dask.array.Array
        (E, Y, X) measured transmission (cast to float32), chunked in space in any way
        (energies are gathered into one chunk); not modified. Its first spatial chunk sizes
        set the blocks of the work and of ``denoised``.
    energies_eV : array_like
        (E,) energies.
    element : str, optional
        Edge element (chooses the shipped references); or give ``references``.
    references : sequence, optional
        Reference spectra for the physics model.
    tile, margin : int
        Tile size and margin of the network, as ``denoise_stack``.
    select : bool
        Latent variant: the per-pixel strength selection, as ``denoise_stack``.
    probe_seed : int
        Seed of the probe of the network's sensitivity, as ``denoise_stack``.
    workdir : str or path-like
        Existing folder for the temporary Zarr stores (a new sub-folder per call; several
        times the stack's size on disk). The caller deletes it once ``denoised`` is used.
    progress : bool
        Show dask's progress bar of each stage (local schedulers only).
    lowrank : bool, optional
        Remove the low-rank beam background first, as ``denoise_stack`` (None: as trained).
    energy_batch : int
        Images per batch for the paper variant.
    device : str or torch.device, optional
        Where each tile runs; None picks CUDA when the worker has it.
    field : array_like of bool, optional
        (Y, X) pixels that are measurements (an aligned stack's common field), as
        ``denoise_stack``.

    Returns
    -------
    ChunkedDenoiseResult

    Raises
    ------
    TypeError, ValueError
        As ``denoise_stack``. The frames, and absorbance given as transmission, are checked on
        a sub-sampled stack.
    """
    t0 = time.perf_counter()
    _check_denoiser(denoiser)
    x = da.asarray(transmission)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"transmission must be a non-empty 3-D (energies, rows, columns) array; got shape "
                         f"{x.shape}.")
    refs, model = _stack_model(x.shape[0], energies_eV, element, references)
    field = check_field(field, x.shape[1:])
    x = x.astype(np.float32).rechunk({0: -1})
    n_e, ny, nx = x.shape
    grid = ([(s, min(s + x.chunks[1][0], ny)) for s in range(0, ny, x.chunks[1][0])],
            [(s, min(s + x.chunks[2][0], nx)) for s in range(0, nx, x.chunks[2][0])])
    work = Path(tempfile.mkdtemp(prefix="denoise-", dir=workdir))
    bar = _progress(progress)

    # 1. Frames checked on a sub-sampled stack; invalid pixels and their stand-ins.
    step = max(1, int(np.ceil(np.sqrt(n_e / _FRAME_CHECK_IMAGES))))
    sample, bad = x[:, ::step, ::step], x.map_blocks(_invalid_pixels, drop_axis=0, dtype=bool)
    with bar():
        pieces = dask.compute(in_pieces(sample), in_pieces(bad))
    sample, bad = assemble(sample, pieces[0]), assemble(bad, pieces[1])
    check_transmission_frames(sample, model.energies_eV)
    _refuse_absorbance(sample, model, ~bad[::step, ::step])
    del sample
    fill = _stand_ins(bad, work)
    source = _Source(x, fill)

    # 2. Low-rank beam background; 3. the stack divided by it, and the coefficient scale.
    def windows(fn, halo: int, dtype):  # the filled stack's windows
        return source.blocks(fn, grid, halo, n_e, dtype, [])

    beam = _lowrank_beam(lambda: _estimate_beam(windows, grid, model, work, bar), denoiser, lowrank)
    maps = None if beam is None or not beam.rank else to_zarr(work / "beam_maps.zarr", beam.maps)
    corrected = source.blocks(_divide_block, grid, 0, n_e, np.float32, [maps] if maps is not None else [],
                              profiles=None if maps is None else beam.profiles)
    steps = corrected[:, ::SCALE_STRIDE, ::SCALE_STRIDE].map_blocks(_step_block, model=model, drop_axis=0,
                                                                     dtype=np.float32)
    with bar():
        _, pieces = dask.compute(corrected.to_zarr(str(work / "input.zarr"), compute=False, compressors=None),
                                 in_pieces(steps))
    steps = assemble(steps, pieces)
    scale = _step_scale(steps)

    # 4. The network on the tile grid.
    probe = None
    if select and denoiser.variant == "latent":
        probe = _Probe(model, [r.oxidation_state for r in refs], probe_seed)
    align = _tile_align(denoiser)
    tiles = (_tile_regions(ny, tile, margin, align), _tile_regions(nx, tile, margin, align))
    stack, out = _network_pass(denoiser, work, model, probe, tiles, margin, bar, scale=scale, align=align,
                               energy_batch=energy_batch, device=device)

    # 5. The strength selection (in memory); 6. the denoised stack, lazily.
    coefficients, strength = out["coefficients"], None
    invalid = [] if fill is None else [to_zarr(work / "invalid.zarr", bad)]
    if probe is not None:
        coefficients, strength = probe.select(coefficients, out, field)
        rebuilt = [to_zarr(work / "observed.zarr", out["observed"]),
                   to_zarr(work / "coefficients.zarr", coefficients)]
        denoised = map_regions(_rebuild_block, [stack, *rebuilt, *invalid], grid,
                               smoothing_halo(UNEXPLAINED_SIGMA_PX), n_e, np.float32, model=model)
    else:
        denoised = map_regions(_invalid_block, [stack, *invalid], grid, 0, n_e, np.float32)
    if fill is not None:
        coefficients[:, bad] = np.nan
    return ChunkedDenoiseResult(denoised, coefficients, model.names, scale, time.perf_counter() - t0,
                                len(tiles[0]) * len(tiles[1]), beam, None if fill is None else bad, strength)


def _progress(show: bool):
    """Return a context factory: dask's progress bar, or nothing."""
    if not show:
        return contextlib.nullcontext
    from dask.diagnostics import ProgressBar

    return ProgressBar


def _stand_ins(bad, work: Path):
    """Zarr (2, Y, X) index of each pixel's nearest valid pixel and its farthest reach; None if all valid."""
    index = _nearest_valid(bad, stacklevel=3)
    if index is None:
        return None
    yy, xx = np.indices(bad.shape, sparse=True)
    reach = int(max(np.abs(index[0] - yy).max(), np.abs(index[1] - xx).max()))
    return to_zarr(work / "stand_ins.zarr", index.astype(np.int32)), reach


@dataclass
class _Source:
    """The input stack with the stand-ins of its invalid pixels (``fill``: from :func:`_stand_ins`)."""

    x: da.Array
    fill: tuple | None

    def blocks(self, fn, grid, halo: int, planes: int, dtype, extra, **kwargs) -> da.Array:
        """``map_regions`` of ``fn(filled_window, *extra_windows, keep=, **kwargs)`` with ``halo``.

        The window is filled wider by the stand-ins' reach; what lies beyond ``halo`` of the
        region (where a stand-in may lie outside the window) is cropped before ``fn``.
        """
        reach = 0 if self.fill is None else self.fill[1]
        sources = [self.x] + ([] if self.fill is None else [self.fill[0]])
        return map_regions(_filled_call, sources + list(extra), grid, halo + reach, planes, dtype, stage=fn,
                           filled=self.fill is not None, crop_halo=halo, n_extra=len(extra), **kwargs)


def _filled_call(xw, *rest, keep, origin, stage, filled: bool, crop_halo: int, n_extra: int, **kwargs):
    """Fill a window's invalid pixels, crop it to ``crop_halo`` around the region and call ``stage``."""
    extra = rest[len(rest) - n_extra:]
    ny, nx = xw.shape[1:]
    (y0, y1), (x0, x1) = ((k.start, k.stop) for k in keep)
    (ys, ye), (xs, xe) = _with_halo(y0, y1, crop_halo, ny), _with_halo(x0, x1, crop_halo, nx)
    if filled:
        iy = np.clip(rest[0][0] - origin[0], 0, ny - 1)
        ix = np.clip(rest[0][1] - origin[1], 0, nx - 1)
        xw = _gather_pixels(xw, iy[ys:ye, xs:xe], ix[ys:ye, xs:xe])
    else:
        xw = xw[:, ys:ye, xs:xe]
    crop = (..., slice(ys, ye), slice(xs, xe))
    keep = (slice(y0 - ys, y1 - ys), slice(x0 - xs, x1 - xs))
    return stage(xw, *(e[crop] for e in extra), keep=keep, **kwargs)


def _step_block(t, *, model):
    """Edge step of a block of the sub-sampled stack (empty blocks stay empty)."""
    return _fit_step(t, model) if t.size else np.zeros(t.shape[1:], np.float32)


def _network_pass(denoiser, work: Path, model, probe, tiles, margin: int, bar, **options):
    """Run the network on every tile of the corrected stack (``work / "input.zarr"``).

    Returns the network-corrected stack (with a ``probe``; else the denoised one), stored in
    Zarr, and the (Y, X) maps in memory: ``coefficients`` and, with a probe, its maps.
    """
    n_e, ny, nx = da.from_zarr(str(work / "input.zarr")).shape
    name = "corrected" if probe is not None else "denoised"
    layout = {"coefficients": model.n_params}
    sources = [da.from_zarr(str(work / "input.zarr"))]
    if probe is not None:
        layout.update(_probe_planes(model.n_params))
        sources.append(to_zarr(work / "probe_z.zarr", probe.draw((ny, nx))))
    planes = map_regions(_tile_block, sources, tiles, margin, n_e + sum(layout.values()), np.float32,
                     denoiser=dask.delayed(denoiser), model=model, output=name, probe=probe, **options)
    maps = planes[n_e:]
    with bar():
        _, pieces = dask.compute(planes[:n_e].to_zarr(str(work / f"{name}.zarr"), compute=False,
                                                       compressors=None),
                                 in_pieces(maps))
    small = assemble(maps, pieces)
    out = dict(zip(layout, np.split(small, np.cumsum(list(layout.values()))[:-1]), strict=True))
    if probe is not None:
        out["noise"] = out["noise"][0]
    return da.from_zarr(str(work / f"{name}.zarr")), out


def _tile_block(tw, *zw, keep, origin, denoiser, model, scale, align, energy_batch, device, output, probe):
    """One tile of the network: its (stack, coefficients, probe maps) planes, stacked."""
    device = pick_device(device)
    denoiser.net.to(device).eval()
    with torch.no_grad():
        part = _denoise_tile(denoiser, tw, model, scale=scale, align=align, energy_batch=energy_batch,
                             device=device, keep=keep, outputs=(output,), probe=probe,
                             z=zw[0] if zw else None)
    return np.concatenate([np.reshape(v, (-1, *v.shape[-2:])) for v in part.values()])


def _rebuild_block(corrected, observed, coefficients, *invalid, keep, origin, model):
    """Return the denoised stack on one block: ``_rebuild`` of its window, cropped; NaN at invalid pixels."""
    return _nan_at(_rebuild(corrected, observed, coefficients, model)[(slice(None), *keep)],
                   [i[keep] for i in invalid])


def _invalid_block(stack, *invalid, keep, origin):
    """Return the region ``keep`` of a window (a float32 copy), NaN at invalid pixels."""
    return _nan_at(np.array(stack[(slice(None), *keep)], dtype=np.float32), [i[keep] for i in invalid])


def _nan_at(stack, invalid: list):
    """Set the (E, y, x) ``stack`` to NaN at the pixels of the one (y, x) mask in ``invalid`` (if any)."""
    if invalid:
        stack[:, invalid[0]] = np.nan
    return stack
