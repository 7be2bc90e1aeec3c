"""What a stack file holds, read without its images: for the chunked pipeline on large stacks.

:func:`read_stack_header` opens an HDF5 stack file (FXI export or xanes_lib file) or a Zarr
store with the same layout (``img_xanes``, ``X_eng`` in keV, attributes ``element``,
``edge``, ``Pixel Size``) and returns its :class:`StackHeader`: the shape, dtype and chunks
of the images, the energies in eV, the element and the pixel size, checked as
:func:`xanes_lib.io.read_stack` checks them. The images are not read (apart from a sample of
three frames to tell transmission from raw counts), so it answers in milliseconds for a
stack of any size. 3-D stacks hold ``img_xanes`` as (E, Z, Y, X).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ._hdf5 import open_read, read_attrs, to_python
from ._intake import describe_intensity, parse_pixel_size, resolve_element
from .reading import (
    _companion,
    _metadata,
    _read_energies,
    _read_label,
    _require_dataset,
    _unit_attribute,
    energies_in_ev,
)
from .stacks import ENERGY_KEY, FLAT_KEY, IMAGES_KEY, PIXEL_SIZE_KEY

__all__ = ["StackHeader", "read_stack_header", "ZARR_SUFFIX", "is_zarr"]

#: Suffix of Zarr stores (directories) read and written by the chunked pipeline.
ZARR_SUFFIX = ".zarr"
_NO_ELEMENT = "has no 'element' attribute"


@dataclass(frozen=True)
class StackHeader:
    """Layout and metadata of a stack file (see :func:`read_stack_header`).

    Attributes
    ----------
    source : str
        The file (HDF5) or store (Zarr directory).
    format : {"hdf5", "zarr"}
    dataset : str
        Path of the image array in the file.
    shape : tuple of int
        (E, Y, X), or (E, Z, Y, X) for a 3-D stack.
    dtype : numpy.dtype
        Stored dtype of the images.
    chunks : tuple of int or None
        Stored chunks of the images (None: contiguous HDF5 dataset).
    energies_eV : numpy.ndarray
        (E,) energies in eV, strictly increasing.
    element, edge : str
        Absorbing element (given, from the file, or inferred from the energies) and edge.
    pixel_size_nm : float or None
    raw_counts : bool
        Whether the images hold raw detector counts (integer dtype or a median above 5 in a
        sample of frames) rather than transmission; ``intensity_note`` says why.
    intensity_note : str
    attrs : dict
        The other root attributes.
    has_flat : bool
        Whether the file holds a flat field ``img_bkg`` (next to the images or at the root),
        with which :func:`xanes_lib.io.read_stack` corrects raw counts.
    """

    source: str
    format: str
    dataset: str
    shape: tuple
    dtype: np.dtype
    chunks: tuple | None
    energies_eV: np.ndarray
    element: str
    edge: str
    pixel_size_nm: float | None
    raw_counts: bool
    intensity_note: str
    attrs: dict = field(default_factory=dict)
    has_flat: bool = False

    @property
    def is_volume(self) -> bool:
        """True for a 3-D stack (E, Z, Y, X)."""
        return len(self.shape) == 4

    @property
    def nbytes(self) -> int:
        """Size of the images in memory as float32."""
        return int(np.prod(self.shape)) * 4


def is_zarr(path) -> bool:
    """Return whether ``path`` names a Zarr store (a directory, or a name ending in ``.zarr``)."""
    p = os.fspath(path).rstrip("/\\")
    return p.endswith(ZARR_SUFFIX) or (os.path.isdir(p) and os.path.exists(os.path.join(p, "zarr.json")))


def _sample_frames(images) -> np.ndarray:
    """First, middle and last image (at most 512 x 512 of each, the middle slice of a volume)."""
    n = images.shape[0]
    picks = sorted({0, n // 2, n - 1})
    parts = []
    for i in picks:
        lead = (i,) if images.ndim == 3 else (i, images.shape[1] // 2)
        parts.append(np.asarray(images[lead + (slice(0, 512), slice(0, 512))]))
    return np.stack(parts)


def _check_layout(shape, n_energies: int, name: str, source: str) -> None:
    if len(shape) not in (3, 4):
        raise ValueError(f"{name} in {source} must be (E, Y, X) or, for a 3-D stack, (E, Z, Y, X); got "
                         f"shape {tuple(shape)}.")
    if shape[0] != n_energies:
        raise ValueError(f"{name} in {source} has {shape[0]} images but {ENERGY_KEY} has {n_energies} "
                         "energies; they must match one to one (is the stack transposed?).")


def read_stack_header(path, *, dataset: str = IMAGES_KEY, energy_unit: str | None = None,
                      element: str | None = None) -> StackHeader:
    """Read the layout and metadata of a stack file without reading its images.

    Parameters
    ----------
    path : str or os.PathLike
        HDF5 file, or Zarr store (a directory ending in ``.zarr``) with the same keys.
    dataset : str
        Path of the images (default ``img_xanes``); ``X_eng`` and ``Pixel Size`` are taken
        from its group when there, else from the root.
    energy_unit : {None, "keV", "eV"}
        Unit of ``X_eng``; None means keV (the FXI convention), as in :func:`read_stack`.
    element : str, optional
        Absorbing element; None takes the file's ``element`` attribute (checked against the
        energies) or infers it from the energies.

    Returns
    -------
    StackHeader

    Raises
    ------
    ValueError
        Missing datasets, images not (E, Y, X) or (E, Z, Y, X), energies that do not match
        the images or are not increasing keV, an element whose edge lies outside the energies.
    FileNotFoundError
        If ``path`` does not exist.
    """
    source = os.fspath(path)
    if energy_unit not in (None, "keV", "eV"):
        raise ValueError(f"energy_unit must be None (keV), 'keV' or 'eV'; got {energy_unit!r}.")
    if is_zarr(source):
        return _zarr_header(source, dataset, energy_unit, element)
    with open_read(source) as f:
        images = _require_dataset(f, dataset, source)
        group = images.parent
        energies_ds = _require_dataset(group if ENERGY_KEY in group else f, ENERGY_KEY, source)
        energies = _read_energies(energies_ds, source, energy_unit or _unit_attribute(energies_ds))
        _check_layout(images.shape, energies.size, dataset, source)
        counts, why, _ = describe_intensity(_sample_frames(images))
        pixel_size_nm, _, _ = _metadata(f, group, source)
        file_element, edge = _read_label(f, "element", source), _read_label(f, "edge", source) or "K"
        attrs = read_attrs(f, source=source, exclude=("element", "edge"))
        elem = resolve_element(element, file_element, edge, energies, attrs, source, _NO_ELEMENT)
        return StackHeader(source, "hdf5", images.name.lstrip("/"), tuple(images.shape), images.dtype,
                           images.chunks, energies, elem, edge, pixel_size_nm, counts, why, attrs,
                           has_flat=_companion(f, group, FLAT_KEY) is not None)


def _zarr_header(source: str, dataset: str, energy_unit, element) -> StackHeader:
    import zarr

    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source} does not exist (a Zarr store is a directory); check the path.")
    root = zarr.open_group(source, mode="r")
    if dataset not in root or ENERGY_KEY not in root:
        raise ValueError(f"{source} needs {dataset!r} (E, Y, X) images and {ENERGY_KEY!r} (E,) energies in "
                         f"keV; it holds {sorted(root.keys())}.")
    images = root[dataset]
    energies = energies_in_ev(root[ENERGY_KEY][...], source, energy_unit)
    _check_layout(images.shape, energies.size, dataset, source)
    counts, why, _ = describe_intensity(_sample_frames(images))
    attrs = {k: to_python(v) for k, v in root.attrs.asdict().items()}
    file_element, edge = attrs.pop("element", None), attrs.pop("edge", None) or "K"
    pixel = attrs.pop(PIXEL_SIZE_KEY, None)
    pixel_size_nm = None if pixel is None else parse_pixel_size(pixel, f"{PIXEL_SIZE_KEY!r} in {source}")[0]
    elem = resolve_element(element, file_element, edge, energies, attrs, source, _NO_ELEMENT)
    return StackHeader(source, "zarr", dataset, tuple(images.shape), np.dtype(images.dtype),
                       tuple(images.chunks), energies, elem, edge, pixel_size_nm, counts, why, attrs,
                       has_flat=FLAT_KEY in root)
