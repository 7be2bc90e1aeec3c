"""Stacks as lazy Dask arrays: HDF5 files and Zarr stores read chunk by chunk, Zarr stores written.

A :class:`LazyStack` holds the transmission as a ``dask.array`` of shape (E, Y, X) (or
(E, Z, Y, X) for 3-D XANES) whose chunks hold every energy of a (Y, X) tile, so each chunk
is a set of whole spectra. Nothing is read until a computation asks for a chunk; the HDF5
reader opens the file per chunk, so the graph can be sent to the processes of a
``dask.distributed`` cluster.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass

import dask.array as da
import h5py
import numpy as np

from ..io import ENERGY_KEY, IMAGES_KEY, PIXEL_SIZE_KEY, StackHeader, read_stack_header
from ..io.header import ZARR_SUFFIX
from ..io.results_writer import replace_directory
from ..validate import check_energies, refuse_kev

__all__ = ["LazyStack", "open_stack", "default_chunks", "write_zarr_stack", "CHUNK_BYTES"]

#: Default size of one chunk of the stack (every energy of a tile) as float32; a task of the
#: pipeline peaks at about 8 times this (float64 absorbance, fit buffers, maps).
CHUNK_BYTES = 16 * 2 ** 20
_EDGE_STEP = 64          # chunk edges are multiples of this (the tiles of the denoiser align to it)


@dataclass(frozen=True, eq=False)
class LazyStack:
    """A stack whose images stay on disk until computed.

    Attributes
    ----------
    transmission : dask.array.Array
        (E, Y, X) or (E, Z, Y, X) float32 transmission, chunked (E, [1,] cy, cx): the file's
        images or a part of them (a crop keeps the header).
    header : xanes_lib.io.StackHeader
        What the file holds, as read: energies, element, edge, pixel size.
    """

    transmission: da.Array
    header: StackHeader

    @property
    def energies_eV(self) -> np.ndarray:
        """(E,) energies in eV."""
        return self.header.energies_eV

    @property
    def element(self) -> str:
        """Absorbing element."""
        return self.header.element

    @property
    def edge(self) -> str:
        """Absorption edge."""
        return self.header.edge

    @property
    def pixel_size_nm(self) -> float | None:
        """Pixel size in nm, when known."""
        return self.header.pixel_size_nm

    @property
    def is_volume(self) -> bool:
        """True for a 3-D stack (E, Z, Y, X)."""
        return self.transmission.ndim == 4


class _H5Images:
    """Picklable view of an HDF5 dataset: each read opens the file read-only, reads, closes."""

    def __init__(self, path: str, dataset: str, shape: tuple, dtype):
        self.path, self.dataset = path, dataset
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        with h5py.File(self.path, "r") as f:
            return f[self.dataset][key]


def default_chunks(shape: tuple, *, chunk_bytes: int = CHUNK_BYTES) -> tuple:
    """Chunks holding every energy of a square tile of about ``chunk_bytes`` (float32).

    The tile edge is a multiple of 64 pixels between 64 and 1024; volumes get one slice per
    chunk along Z.
    """
    n_e = shape[0]
    edge = int(math.sqrt(chunk_bytes / (4 * n_e)))
    edge = min(1024, max(_EDGE_STEP, edge // _EDGE_STEP * _EDGE_STEP))
    tail = (min(edge, shape[-2]), min(edge, shape[-1]))
    return (n_e, 1, *tail) if len(shape) == 4 else (n_e, *tail)


def _check_chunks(chunks, shape: tuple) -> tuple:
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise ValueError(f"chunks must give {len(shape)} positive sizes for a stack of shape {shape}; got "
                         f"{chunks}.")
    if chunks[0] != shape[0]:
        raise ValueError(f"chunks must hold every energy (chunks[0] = {shape[0]}) so that each chunk is "
                         f"a set of whole spectra; got chunks[0] = {chunks[0]}.")
    return chunks


def open_stack(path, *, dataset: str = IMAGES_KEY, chunks=None, energy_unit: str | None = None,
               element: str | None = None) -> LazyStack:
    """Open an HDF5 stack file or a Zarr store lazily (nothing is read but the metadata).

    Parameters
    ----------
    path : str or os.PathLike
        HDF5 file (FXI export or xanes_lib stack file) or Zarr store (``.zarr`` directory)
        with the same layout: ``img_xanes`` (E, Y, X) or (E, Z, Y, X), ``X_eng`` in keV.
    dataset : str
        Path of the images.
    chunks : tuple of int, optional
        Chunks of the Dask array; they must hold every energy. None: :func:`default_chunks`.
    energy_unit, element
        As for :func:`xanes_lib.io.read_stack`.

    Returns
    -------
    LazyStack

    Raises
    ------
    ValueError
        As :func:`xanes_lib.io.read_stack_header`; also for images holding raw detector
        counts (flat-field correct them first) and chunks that split the energies.
    """
    header = read_stack_header(path, dataset=dataset, energy_unit=energy_unit, element=element)
    if header.raw_counts:
        fix = ("xanes_lib.io.read_stack(path) corrects them with its img_bkg (and img_dark) for a stack that "
               "fits in memory; write the result with write_stack or write_zarr_stack" if header.has_flat else
               "the file has no img_bkg (flat field): correct them with the flat and dark frames of the same "
               "scan (xanes_lib.io.flat_field_correct) and write the result with write_zarr_stack")
        raise ValueError(f"{dataset} in {header.source} holds raw detector counts "
                         f"({header.intensity_note}); the chunked pipeline reads transmission "
                         "(I - dark) / (flat - dark) and does not correct counts. Correct the file first: "
                         f"{fix}.")
    chunks = default_chunks(header.shape) if chunks is None else _check_chunks(chunks, header.shape)
    if header.format == "zarr":
        arr = da.from_zarr(header.source, component=header.dataset, chunks=chunks)
    else:
        view = _H5Images(header.source, header.dataset, header.shape, header.dtype)
        meta = np.empty((0,) * len(header.shape), header.dtype)
        arr = da.from_array(view, chunks=chunks, lock=False, meta=meta,
                            name=f"read-{uuid.uuid5(uuid.NAMESPACE_URL, header.source + header.dataset)}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return LazyStack(arr, header)


def write_zarr_stack(path, transmission, energies_eV, *, element: str, edge: str = "K",
                     pixel_size_nm: float | None = None, chunks=None, overwrite: bool = False) -> str:
    """Write a stack (NumPy or Dask array) to a Zarr store, chunk by chunk, whole or not at all.

    The store gets ``img_xanes`` (float32, chunked with every energy per chunk), ``X_eng``
    (keV) and the attributes ``element``, ``edge`` and ``Pixel Size``: the layout
    :func:`open_stack` reads. It is written to a temporary directory beside ``path`` and
    renamed into place.

    Parameters
    ----------
    path : str or os.PathLike
        Target store; must end in ``.zarr``.
    transmission : numpy.ndarray or dask.array.Array
        (E, Y, X) or (E, Z, Y, X) transmission.
    energies_eV : array_like
        (E,) increasing energies in eV.
    element, edge : str
    pixel_size_nm : float, optional
    chunks : tuple of int, optional
        Stored chunks; None: :func:`default_chunks`.
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    str
        The path written.
    """
    target = os.fspath(path).rstrip("/\\")
    if not target.endswith(ZARR_SUFFIX):
        raise ValueError(f"a Zarr store's name must end in {ZARR_SUFFIX!r}; got {target!r}.")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
    e = check_energies(energies_eV, name="energies_eV")
    refuse_kev(e, name="energies_eV")
    arr = transmission if isinstance(transmission, da.Array) else da.from_array(np.asarray(transmission))
    if arr.ndim not in (3, 4) or arr.shape[0] != e.size:
        raise ValueError(f"transmission must be (E, Y, X) or (E, Z, Y, X) with E = {e.size} energies; got "
                         f"shape {arr.shape}.")
    chunks = default_chunks(arr.shape) if chunks is None else _check_chunks(chunks, arr.shape)
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        arr.astype(np.float32).rechunk(chunks).to_zarr(tmp, component=IMAGES_KEY, overwrite=True)
        import zarr

        root = zarr.open_group(tmp, mode="a")
        root.create_array(ENERGY_KEY, data=e / 1000.0)
        root.attrs.update({"element": element, "edge": edge})
        if pixel_size_nm is not None:
            root.attrs[PIXEL_SIZE_KEY] = f"{float(pixel_size_nm)} nm"
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

