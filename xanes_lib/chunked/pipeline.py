"""Valence maps of a stack of any size, chunk by chunk on Dask, equal to the in-memory maps.

Each chunk of the stack holds every energy of a (Y, X) tile, so the per-pixel steps run on
chunks with the library's own functions (no second implementation of the physics):

1. **alignment**: the shifts of an :class:`xanes_lib.alignment.Alignment` applied to every
   image (:func:`align_lazy`: a windowed sinc (default), linear or nearest interpolation
   with a halo of ``|shift|`` plus the kernel's reach; or the Fourier shift on blocks of whole
   columns, then of whole rows), equal to
   :func:`xanes_lib.alignment.apply_alignment` on the whole stack;
2. **denoising** (optional): :func:`xanes_lib.chunked.denoise_chunked`, tiles with the halo
   the network needs, stored to a Zarr store in ``workdir`` before the fit reads it;
3. **survey pass**: per chunk, the significance of each pixel's absorption
   (:func:`xanes_lib.mapping.absorption_significance`) and its edge energy; the sample mask
   is then decided on the whole field (:func:`xanes_lib.mapping.mask_from_significance`: its
   noise scale is a statistic of the field);
4. **fit pass**: per chunk, :func:`xanes_lib.mapping.fit_references` with the chunk's part of
   the mask; the chunks' fits are put together into one :class:`~xanes_lib.mapping.ReferenceFit`;
5. the maps written to HDF5 or Zarr by :class:`xanes_lib.io.ResultsWriter` (whole or not at
   all), with the same content as :func:`xanes_lib.io.write_results`.

What is held in memory: one chunk (E x tile) per worker thread, and the 2-D maps of one
slice (a few tens of (Y, X) float maps; 2048 x 2048 maps are 16 MB each). 3-D stacks
(E, Z, Y, X) are mapped slice by slice along Z, each slice as a 2-D stack.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace

import dask
import dask.array as da
import numpy as np
from dask.callbacks import Callback

from ..alignment import LANCZOS_RADIUS, checked_shifts, common_field, fourier_shift_axis, shift_image
from ..io import ResultsWriter, results_content
from ..mapping import (
    ReferenceFit,
    absorption_significance,
    edge_energy,
    fit_references,
    mask_from_significance,
    mean_spectrum_e0,
    normalize_spectra,
    spectrum_sum,
)
from ..mapping.mask import SIGNIFICANCE_THRESHOLD
from ..physics import absorbance
from ..progress import progress_bar
from ..spectra import default_references
from ._blocks import chunk_regions
from .beam import divide_beam_background_chunked
from .sources import LazyStack, open_stack

__all__ = ["ChunkedMapping", "align_lazy", "map_slice", "map_stack", "stitch_fits", "compute_chunks",
           "survey_tasks"]


@dataclass
class ChunkedMapping:
    """What :func:`map_stack` did.

    Attributes
    ----------
    output_path : str
        The results file (HDF5) or store (Zarr).
    shape : tuple of int
        Shape of the stack (E, Y, X) or (E, Z, Y, X).
    chunks : tuple of int
        Chunk size of the stack (every energy of a tile).
    n_chunks : int
        Chunks per slice.
    seconds : float
        Wall time.
    mask_share : list of float
        Share of the pixels mapped, per slice.
    n_fitted : int
        Pixels (voxels) fitted.
    denoise : list of str
        Per slice, the denoiser's strength summary (empty without a denoiser).
    pass_seconds : dict
        Wall time of each stage summed over the slices: "align+denoise" (the denoised stack
        written to the work directory), "survey" (mask and e0), "fit" (the reference fit
        and edge energies), "write".
    """

    output_path: str
    shape: tuple
    chunks: tuple
    n_chunks: int
    seconds: float
    mask_share: list = field(default_factory=list)
    n_fitted: int = 0
    denoise: list = field(default_factory=list)
    pass_seconds: dict = field(default_factory=dict)


def align_lazy(transmission: da.Array, alignment, *, order="lanczos") -> tuple[da.Array, np.ndarray]:
    """Apply an alignment to a chunked (E, Y, X) stack; return it (lazy) and the common field.

    Equal to :func:`xanes_lib.alignment.apply_alignment` of the whole stack with the same
    ``order``. Orders "lanczos" (windowed sinc, the default here), 0 and 1 (nearest, linear)
    are local: each image is shifted by :func:`xanes_lib.alignment.shift_image` on chunks
    extended by a halo of ``ceil(max |shift|) + 1`` pixels (``+ LANCZOS_RADIUS`` for
    "lanczos") whose border pixels repeat the image's edge. The windowed sinc keeps most of the
    noise's variance (0.89-1 of it per axis; linear interpolation 0.5-1), which the denoiser's
    strength selection reads from the aligned stack. The Fourier
    shift (``order="fourier"``, the in-memory default, which keeps white noise white) needs
    whole lines: the stack is rechunked into blocks of whole columns for the shift along Y,
    then of whole rows for the shift along X, and back to its chunks. That rechunk needs
    memory: measured on a 60 x 2048 x 2048 float32 stack (0.94 GiB) with 2 workers of 512 MiB,
    the Fourier path killed the workers, the linear one peaked at 370 MiB per worker (6.5 s).
    Outside the common field the field's edge is repeated, as in memory.

    Returns
    -------
    aligned : dask.array.Array
        (E, Y, X) float32, same chunks.
    common_mask : numpy.ndarray
        (Y, X) bool: pixels every image covers.
    """
    if order not in ("fourier", "lanczos", 0, 1) or isinstance(order, bool):
        raise ValueError(f"order must be 'fourier', 'lanczos', 0 or 1 in the chunked pipeline (a spline's "
                         f"prefilter spans the whole image); got {order!r}.")
    n_e, ny, nx = transmission.shape
    shifts = checked_shifts(alignment, n_e, (ny, nx))
    if order == "fourier":
        aligned = _fourier_lazy(transmission, shifts)
    else:
        aligned = _local_lazy(transmission, shifts, order)
    crop, common = common_field(shifts, (ny, nx), order)
    return _repeat_field_edges_lazy(aligned, crop).rechunk(transmission.chunks), common


def _local_lazy(transmission: da.Array, shifts, order) -> da.Array:
    """Orders "lanczos", 0 and 1 of :func:`align_lazy`: :func:`shift_image` on chunks with a halo."""
    reach = LANCZOS_RADIUS if order == "lanczos" else 1
    halo = int(math.ceil(float(np.abs(shifts).max()))) + reach if shifts.size else reach
    if halo > min(min(transmission.chunks[1]), min(transmission.chunks[2])):
        raise ValueError(f"shifts up to {halo - reach} px need chunks of at least {halo} px in Y and X; got "
                         f"{transmission.chunksize}. Open the stack with larger chunks.")

    def shift_chunk(block):
        out = np.empty_like(block)
        for e in range(block.shape[0]):
            out[e] = shift_image(block[e], shifts[e], order)
        return out

    return transmission.map_overlap(shift_chunk, depth={0: 0, 1: halo, 2: halo}, boundary="nearest",
                                    dtype=transmission.dtype)


def _fourier_lazy(transmission: da.Array, shifts) -> da.Array:
    """Fourier shift of :func:`align_lazy`: along Y on blocks of whole columns, then X on whole rows."""
    chunk_e, chunk_y, chunk_x = transmission.chunksize
    out = transmission
    for axis, n, tile in ((1, transmission.shape[1], chunk_y), (2, transmission.shape[2], chunk_x)):
        per_block = max(1, chunk_e * tile // n)

        def shift_block(block, axis=axis, block_info=None):
            e0 = block_info[0]["array-location"][0][0]
            lines = np.empty_like(block)
            for i in range(block.shape[0]):
                lines[i] = fourier_shift_axis(block[i], shifts[e0 + i, axis - 1], axis=axis - 1)
            return lines

        out = out.rechunk({0: per_block, axis: -1}).map_blocks(shift_block, dtype=transmission.dtype)
    return out


def _repeat_field_edges_lazy(aligned: da.Array, crop) -> da.Array:
    """:func:`xanes_lib.alignment.repeat_field_edges` on a dask array (the same values, copied)."""
    (y0, y1), (x0, x1) = (crop[0].start, crop[0].stop), (crop[1].start, crop[1].stop)
    _, ny, nx = aligned.shape
    if y1 <= y0 or x1 <= x0 or (y0, y1, x0, x1) == (0, ny, 0, nx):
        return aligned
    return aligned[:, np.clip(np.arange(ny), y0, y1 - 1)][:, :, np.clip(np.arange(nx), x0, x1 - 1)]


def _survey_block(t, energies_eV, references, window, shift_eV):
    """Significance maps of the absorption of the pixels of one chunk, and their spectrum sum."""
    a = absorbance(t.astype(np.float64))
    fit = fit_references(a, energies_eV, references, energy_window_eV=window, shift_eV=shift_eV, n_threads=1)
    parts = absorption_significance(fit, energies_eV, references, energy_window_eV=window, shift_eV=shift_eV)
    parts["fitted"] = fit.mask
    return parts, spectrum_sum(a)


def _fit_block(t, fitted, mask, e0_eV, energies_eV, references, mode, window, shift_eV):
    """Fit the references to ``fitted`` inside ``mask``; the half-step edge energy of ``t`` (one chunk)."""
    fit = fit_references(fitted, energies_eV, references, mask=mask, mode=mode, energy_window_eV=window,
                         shift_eV=shift_eV, input_kind="transmission", n_threads=1, warn_empty=False)
    norm = normalize_spectra(energies_eV, absorbance(t.astype(np.float64)), e0_eV=e0_eV)
    return fit, edge_energy(energies_eV, norm.normalized, method="half_step")


class _Clock:
    """Adds the seconds since the last lap to ``timings[name]`` (nothing when ``timings`` is None)."""

    def __init__(self, timings: dict | None):
        self.timings, self.t = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.t
        self.t = now


def _chunk_grid(arr: da.Array):
    """(y slice, x slice, delayed chunk) for every chunk of an (E, Y, X) array."""
    grid = arr.to_delayed()
    for i, rows in enumerate(chunk_regions(arr.chunks[1])):
        for j, cols in enumerate(chunk_regions(arr.chunks[2])):
            yield slice(*rows), slice(*cols), grid[0, i, j]


class _TaskBar(Callback):
    """Advance a progress bar by one for every task a local Dask scheduler finishes."""

    def __init__(self, bar):
        super().__init__()
        self.bar = bar

    def _start_state(self, dsk, state):
        self.bar.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar.refresh()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.bar.update()


def _distributed_client():
    """Return the active ``dask.distributed`` client when the graphs go to it, else None."""
    if dask.config.get("scheduler", None) != "dask.distributed":
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def compute_chunks(tasks, *, desc: str = "chunks", progress: bool = False) -> list:
    """Compute delayed per-chunk tasks on the current scheduler; return their results in order.

    With ``progress`` a bar shows the finished tasks and the time left (chunks on a
    ``dask.distributed`` cluster, every task of the graph on Dask's local schedulers).
    """
    tasks = list(tasks)
    client = _distributed_client()
    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        with progress_bar(total=len(futures), desc=desc, unit="chunk", disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update()
        return client.gather(futures)
    if not progress:
        return list(dask.compute(*tasks))
    with progress_bar(total=None, desc=desc, unit="task") as bar, _TaskBar(bar):
        return list(dask.compute(*tasks))


def survey_tasks(transmission: da.Array, energies_eV, references, *, energy_window_eV=None,
                 shift_eV: float = 0.0) -> list:
    """Return the delayed survey tasks of :func:`map_slice`, one per chunk (to compute or to draw)."""
    e = np.asarray(energies_eV, dtype=np.float64)
    return [dask.delayed(_survey_block)(b, e, references, energy_window_eV, shift_eV)
            for _, _, b in _chunk_grid(transmission)]


def stitch_fits(pieces, shape: tuple) -> ReferenceFit:
    """Put the fits of the chunks of a field together into one fit of the whole field.

    ``pieces`` are ``(y slice, x slice, ReferenceFit)``; ``shape`` is (Y, X). Maps are
    placed, counts of left-out pixels summed; the rest (names, model, window) is the same
    for every chunk and taken from the first.
    """
    first = pieces[0][2]
    out = {}
    for name in ("fractions", "fractions_std", "coefficients", "coefficients_std", "oxidation_state",
                 "oxidation_state_std", "edge_step", "residual_rms", "active", "mask"):
        ref = getattr(first, name)
        if ref is None:
            out[name] = None
            continue
        out[name] = np.empty(ref.shape[:-2] + tuple(shape), ref.dtype)
        for ys, xs, fit in pieces:
            out[name][..., ys, xs] = getattr(fit, name)
    counts = {key: sum(getattr(f, key) for _, _, f in pieces)
              for key in ("n_masked_nonfinite", "n_masked_nonpositive", "n_outside_mask")}
    return replace(first, **out, **counts)


def map_slice(transmission: da.Array, energies_eV, references, *, mode: str = "nonneg_sum_to_one",
              energy_window_eV=None, shift_eV: float = 0.0, mask_threshold: float | None = None,
              field_mask=None, fit_transmission: da.Array | None = None, progress: bool = False,
              timings: dict | None = None):
    """Map one (E, Y, X) chunked stack: the survey pass, the mask, the fit pass.

    Parameters
    ----------
    transmission : dask.array.Array
        (E, Y, X) transmission, chunks holding every energy.
    energies_eV, references
        As for :func:`xanes_lib.mapping.fit_references` (reference objects).
    mode, energy_window_eV, shift_eV
        Of the fit.
    mask_threshold : float, optional
        Significance threshold of the mask; None: 3.
    field_mask : numpy.ndarray, optional
        (Y, X) pixels that may be mapped (e.g. the common field after alignment).
    fit_transmission : dask.array.Array, optional
        The stack to fit, when it is not ``transmission`` (e.g. divided by its beam
        background); the mask and the edge energies come from ``transmission``, as in
        notebook 04. Same shape and chunks.
    progress : bool
        Show progress bars of the two passes.
    timings : dict, optional
        Seconds of the "survey" and "fit" passes are added to it.

    Returns
    -------
    fit : ReferenceFit
        The fit of the whole field with ``edge_energy_eV`` attached (NaN outside the mask).
    sample : xanes_lib.mapping.SampleMask
        The mask, its threshold and significance maps.
    """
    e = np.asarray(energies_eV, dtype=np.float64)
    ny, nx = transmission.shape[1:]
    blocks = list(_chunk_grid(transmission))
    clock = _Clock(timings)
    survey = compute_chunks(survey_tasks(transmission, e, references, energy_window_eV=energy_window_eV,
                                         shift_eV=shift_eV), desc="survey pass", progress=progress)
    parts = {}
    for key in survey[0][0]:
        parts[key] = np.empty((ny, nx), survey[0][0][key].dtype)
        for (ys, xs, _), (s, _) in zip(blocks, survey, strict=True):
            parts[key][ys, xs] = s[key]
    # e0 of the normalisation: from the mean spectrum of the whole field, as in memory
    e0 = mean_spectrum_e0(e, sum(total for _, (total, _) in survey), sum(n for _, (_, n) in survey))
    clock.lap("survey")
    thr = SIGNIFICANCE_THRESHOLD if mask_threshold is None else float(mask_threshold)
    method = "significance (automatic)" if mask_threshold is None else "significance (given)"
    sample = mask_from_significance(parts, parts["fitted"], threshold=thr, method=method)
    if field_mask is not None:
        sample = replace(sample, mask=sample.mask & field_mask)
    fitted = blocks if fit_transmission is None else \
        list(_chunk_grid(fit_transmission.rechunk(transmission.chunks)))
    done = compute_chunks([dask.delayed(_fit_block)(b, f, sample.mask[ys, xs], e0, e, references, mode,
                                                    energy_window_eV, shift_eV)
                           for (ys, xs, b), (_, _, f) in zip(blocks, fitted, strict=True)],
                          desc="fit pass", progress=progress)
    fit = stitch_fits([(ys, xs, f) for (ys, xs, _), (f, _) in zip(blocks, done, strict=True)], (ny, nx))
    edge = np.empty((ny, nx))
    for (ys, xs, _), (_, edge_block) in zip(blocks, done, strict=True):
        edge[ys, xs] = edge_block
    clock.lap("fit")
    return replace(fit, edge_energy_eV=np.where(fit.mask, edge, np.nan)), sample


def _store(arr: da.Array, workdir: str, name: str) -> da.Array:
    """Write a lazy array to a Zarr store in ``workdir`` and return it read back (computed once)."""
    path = os.path.join(workdir, f"{name}.zarr")
    arr.to_zarr(path, overwrite=True, compressors=None)      # a scratch store: no compression
    return da.from_zarr(path)


def map_stack(source, output_path, *, references=None, element: str | None = None,
              mode: str = "nonneg_sum_to_one", energy_window_eV=None, shift_eV: float = 0.0,
              mask_threshold: float | None = None, alignment=None, denoiser=None, denoise_options=None,
              beam: bool = True, chunks=None, workdir=None, checkpoint: str | None = None,
              overwrite: bool = True, extra_attrs: dict | None = None,
              progress: bool = False) -> ChunkedMapping:
    """Map a stack file of any size chunk by chunk and write the results file.

    The graph runs on the current Dask scheduler: threads by default, or a
    ``dask.distributed`` cluster when a ``Client`` is active (see
    :func:`xanes_lib.chunked.dask_scheduler`).

    Parameters
    ----------
    source : str, os.PathLike or LazyStack
        A stack file (HDF5) or Zarr store, or a stack opened with :func:`open_stack`.
    output_path : str or os.PathLike
        Results file (``.h5``) or Zarr store (``.zarr``); the same maps and attributes as
        :func:`xanes_lib.io.write_results`, with a Z axis for a 3-D stack.
    references : sequence, optional
        Reference spectra; None: the shipped references of the stack's element.
    element : str, optional
        For a ``source`` path: the element (None: from the file).
    mode, energy_window_eV, shift_eV
        Of the fit (:func:`xanes_lib.mapping.fit_references`).
    mask_threshold : float, optional
        Significance threshold of the sample mask (None: 3).
    alignment : Alignment or array_like (E, 2), optional
        Shifts to apply first (2-D stacks); written to the results file. Applied by a windowed
        sinc (:func:`align_lazy`, order "lanczos": local, memory-safe on small workers), not by
        the Fourier shift that :func:`xanes_lib.alignment.apply_alignment` uses by default
        (whole lines per worker); the noise keeps 0.89-1 of its variance per axis (linear
        interpolation: 0.5-1, which a denoiser's strength selection reads as less noise).
    denoiser : xanes_lib.denoising.Denoiser, optional
        Denoise first (:func:`xanes_lib.chunked.denoise_chunked`, ``denoise_options`` passed
        on; after an alignment its strength selection scores the common field only); the
        reported standard deviation is then the denoiser's error estimate.
    beam : bool
        Without a denoiser, fit the stack divided by its low-rank beam background
        (:func:`xanes_lib.chunked.divide_beam_background_chunked`), as notebook 04 does; the
        mask and edge energies come from the stack as measured. The note is recorded in the
        results file (``beam_background``). A drifting stack (``alignment`` with shifts) is
        divided by its background in the detector frame before it is aligned, with or without
        a denoiser, as in notebooks 04 and 05 (``beam_background_before_alignment``).
    chunks : tuple of int, optional
        Chunks to open a path with (every energy per chunk).
    workdir : str, optional
        Directory for intermediate Zarr stores (the denoised stack); None: a temporary
        directory beside ``output_path``. Removed at the end.
    checkpoint : str, optional
        Name of the denoiser's checkpoint, recorded in the results file.
    overwrite : bool
        Replace an existing output.
    extra_attrs : dict, optional
        Further root attributes.
    progress : bool
        Show progress bars of the passes over the data.

    Returns
    -------
    ChunkedMapping
    """
    if mask_threshold is not None and not (isinstance(mask_threshold, numbers.Real)
                                           and math.isfinite(float(mask_threshold))):
        raise ValueError(f"mask_threshold must be a finite significance (e.g. 3.0) or None (automatic); "
                         f"got {mask_threshold!r}.")
    t0 = time.perf_counter()
    if not isinstance(source, LazyStack | str | os.PathLike):
        raise TypeError(f"source must be the path of a stack file (HDF5 or Zarr) or a LazyStack; got "
                        f"{type(source).__name__}. Write an array first with write_zarr_stack(path, "
                        "transmission, energies_eV, element=...).")
    stack = source if isinstance(source, LazyStack) else open_stack(source, chunks=chunks, element=element)
    refs = references if references is not None else default_references(stack.element)
    volume = stack.is_volume
    if volume and alignment is not None:
        raise ValueError("alignment of a 3-D stack is not supported here: align the projections before "
                         "the reconstruction, then map the volume.")
    out = os.fspath(output_path)
    input_path = stack.header.source
    k = len(refs)
    shape = stack.transmission.shape[1:]
    own_workdir = workdir is None
    work = tempfile.mkdtemp(prefix=".xanes-chunked-", dir=os.path.dirname(os.path.abspath(out))) \
        if own_workdir else os.fspath(workdir)
    info = ChunkedMapping(out, tuple(stack.transmission.shape), tuple(stack.transmission.chunksize),
                          int(np.prod(stack.transmission.numblocks[-2:])), 0.0)
    counts = {"n_masked_nonfinite": 0, "n_masked_nonpositive": 0, "n_outside_mask": 0}
    try:
        with ResultsWriter(out, shape, k, overwrite=overwrite, input_path=input_path) as writer:
            slices = range(shape[0]) if volume else [()]
            attrs = None
            for z in slices:
                t = stack.transmission[:, z] if volume else stack.transmission
                slice_dir = os.path.join(work, f"slice{z}" if volume else "stack")
                fit, sample, summary, beam_note, drift_note = _map_one(t, stack.energies_eV, refs, mode=mode,
                                                energy_window_eV=energy_window_eV, shift_eV=shift_eV,
                                                mask_threshold=mask_threshold, alignment=alignment,
                                                denoiser=denoiser, denoise_options=denoise_options,
                                                workdir=slice_dir, progress=progress, beam=beam,
                                                timings=info.pass_seconds)
                extras = {**(extra_attrs or {}), "mask_method": sample.method,
                          "mask_threshold": sample.threshold, "beam_background": beam_note,
                          "beam_background_before_alignment": drift_note}
                maps, attrs_z = results_content(
                    fit, references=refs, method=f"linear combination fit ({mode}), chunked (dask)",
                    checkpoint=checkpoint, extra_attrs=extras)
                clock = _Clock(info.pass_seconds)
                writer.write(z, maps)
                clock.lap("write")
                attrs = attrs or attrs_z
                for key in counts:
                    counts[key] += attrs_z[key]
                info.mask_share.append(float(sample.mask.mean()))
                info.n_fitted += int(fit.mask.sum())
                if summary:
                    info.denoise.append(summary)
            from ..io import stack_checksum

            attrs.update(counts, input_checksum=stack_checksum(input_path) if os.path.isfile(input_path)
                         else "none (Zarr store)", input_file=os.path.basename(input_path.rstrip("/\\")))
            writer.finish(attrs, alignment=alignment if hasattr(alignment, "write") else None)
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
    info.seconds = time.perf_counter() - t0
    return info


def _map_one(t, energies_eV, refs, *, mode, energy_window_eV, shift_eV, mask_threshold, alignment, denoiser,
             denoise_options, workdir, progress, beam, timings):
    """One 2-D slice: align, denoise or divide by the beam background, map.

    A drifting stack is first divided by its beam background in the detector frame
    (:func:`divide_beam_background_chunked` with the shifts), then aligned.

    Returns the fit, the mask, the denoiser's summary, the note on the beam background and the
    note on what was done with it before alignment.
    """
    field_mask = None
    clock = _Clock(timings)
    os.makedirs(workdir, exist_ok=True)
    drift_note = "not divided before alignment (no alignment)" if alignment is None else \
        "not divided before alignment (beam=False)" if not beam else "not divided before alignment (no drift)"
    if alignment is not None:
        shifts = checked_shifts(alignment, t.shape[0], t.shape[1:])
        if beam and shifts.any():
            # The beam background stays with the detector while the sample drifts over it:
            # divided out in the detector frame before aligning, as notebooks 04 and 05 do.
            t, drift_note = divide_beam_background_chunked(t, energies_eV, refs, shift_eV=shift_eV,
                                                           shifts_px=shifts, workdir=workdir)
            clock.lap("beam background")
        t, field_mask = align_lazy(t, shifts)
    result, fitted = None, None
    if denoiser is None and beam:
        fitted, note = divide_beam_background_chunked(t, energies_eV, refs, shift_eV=shift_eV,
                                                      workdir=workdir)
        clock.lap("beam background")
    elif denoiser is not None:
        note = "removed by the denoiser"
    else:
        note = "left in (beam=False)"
    if denoiser is not None:
        from .denoise import denoise_chunked

        result = denoise_chunked(denoiser, t, energies_eV, references=refs, workdir=workdir,
                                 **{"field": field_mask, **(denoise_options or {})})
        t = _store(result.denoised, workdir, "denoised")
        clock.lap("align+denoise")
    fit, sample = map_slice(t, energies_eV, refs, mode=mode, energy_window_eV=energy_window_eV,
                            shift_eV=shift_eV, mask_threshold=mask_threshold, field_mask=field_mask,
                            fit_transmission=fitted, progress=progress, timings=timings)
    summary = ""
    if result is not None and result.strength is not None:
        fit = replace(fit, oxidation_state_std=result.oxidation_state_std(fit.oxidation_state_std))
        summary = result.strength.summary()
    return fit, sample, summary, note, drift_note
