"""The pipeline on Dask arrays, for stacks larger than memory and 3-D XANES (E, Z, Y, X).

- :mod:`.sources`     :func:`open_stack`: an HDF5 stack file or a Zarr store as a lazy
                      :class:`LazyStack` (every energy of a tile per chunk);
                      :func:`write_zarr_stack`
- :mod:`.pipeline`    :func:`map_stack`: alignment shifts, optional denoising, the sample mask,
                      the reference fit with uncertainties, chunk by chunk; results written
                      whole or not at all (HDF5 or Zarr); :func:`align_lazy`, :func:`map_slice`
- :mod:`.denoise`     :func:`denoise_chunked`: the denoiser on tiles with the halo it needs,
                      equal to :func:`xanes_lib.denoising.denoise_stack` (imports torch)
- :mod:`.beam`        :func:`divide_beam_background_chunked`: ``divide_beam_background`` lazily, by blocks
- :mod:`.schedulers`  :func:`dask_scheduler`: Dask's local schedulers or a ``dask.distributed``
                      cluster (a local one with a memory limit per worker, or one by address);
                      :class:`WorkerMemory` samples the workers' peak memory

The chunked path calls the same functions on chunks as the in-memory path on the whole
stack (the library's fit, mask, alignment and denoiser), so its maps equal the in-memory
maps; only statistics of the whole field (the mask's noise scale, the denoiser's strength)
are gathered from the chunks first.
"""

from .beam import divide_beam_background_chunked
from .pipeline import (
    ChunkedMapping,
    align_lazy,
    compute_chunks,
    map_slice,
    map_stack,
    stitch_fits,
    survey_tasks,
)
from .schedulers import SCHEDULERS, SchedulerInfo, WorkerMemory, dask_scheduler
from .sources import CHUNK_BYTES, LazyStack, default_chunks, open_stack, write_zarr_stack

__all__ = [
    "LazyStack", "open_stack", "default_chunks", "write_zarr_stack", "CHUNK_BYTES",
    "ChunkedMapping", "align_lazy", "map_slice", "map_stack", "stitch_fits", "compute_chunks", "survey_tasks",
    "SCHEDULERS", "SchedulerInfo", "dask_scheduler", "WorkerMemory",
    "denoise_chunked", "ChunkedDenoiseResult", "divide_beam_background_chunked",
]


_LAZY = ("denoise_chunked", "ChunkedDenoiseResult")


def __getattr__(name):
    # The denoising module imports torch: loaded on first use, so the room imports without it.
    if name in _LAZY:
        from . import denoise

        return getattr(denoise, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
