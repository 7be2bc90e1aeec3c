"""Results files written piece by piece (HDF5 or Zarr), for maps computed chunk by chunk.

:class:`ResultsWriter` creates the datasets of the results contract (:mod:`.results`) at
their full size, takes the maps of one slice (a Z slice of a 3-D stack, or the whole field of
a 2-D one) at a time, and on :meth:`ResultsWriter.finish` writes the attributes and moves the
file into place: the target holds the complete new file or whatever was there before. An
HDF5 target is written through the same atomic writer as :func:`write_results`; a Zarr target
(a directory ending in ``.zarr``) is written to a temporary directory beside it and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np

from ._hdf5 import atomic_h5, check_not_input, dataset_layout, encode_attrs, write_attrs
from .header import ZARR_SUFFIX
from .results import ALIGNMENT_GROUP, MAP_KEYS, MAPS_GROUP

__all__ = ["ResultsWriter", "replace_directory"]

_DTYPES = {"edge_energy_eV": np.float64, "mask": bool, "unexplained": bool}


def replace_directory(tmp: str, target: str) -> None:
    """Move the finished directory ``tmp`` onto ``target`` (an old target goes once the new one is there)."""
    old = None
    if os.path.lexists(target):
        old = f"{target}.old-{uuid.uuid4().hex[:12]}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if os.path.isdir(old) and not os.path.islink(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.remove(old)


class ResultsWriter:
    """Write a results file slice by slice; use as a context manager.

    Parameters
    ----------
    path : str or os.PathLike
        Target: an HDF5 file, or a Zarr store (name ending in ``.zarr``).
    shape : tuple of int
        Shape of one map: (Y, X), or (Z, Y, X) for a 3-D stack (Z after E, as in the
        stack contract; fractions are (K, Z, Y, X)).
    n_references : int
        K, the number of references.
    overwrite : bool
        Replace an existing target (else ``FileExistsError``).
    input_path : str or os.PathLike, optional
        The input stack: the target may not be it.

    Examples
    --------
    ``with ResultsWriter(path, (ny, nx), k) as w: w.write((), maps); w.finish(attrs)``; without
    :meth:`finish` (an error inside the block) nothing appears at ``path``.
    """

    def __init__(self, path, shape: tuple, n_references: int, *, overwrite: bool = True, input_path=None):
        self.target = os.fspath(path).rstrip("/\\")
        self.shape, self.k = tuple(int(v) for v in shape), int(n_references)
        if len(self.shape) not in (2, 3):
            raise ValueError(f"shape must be (Y, X) or (Z, Y, X); got {shape}.")
        check_not_input(self.target, [input_path])
        if os.path.lexists(self.target) and not overwrite:
            raise FileExistsError(f"{self.target} exists and overwrite=False; choose another name.")
        self.zarr = self.target.endswith(ZARR_SUFFIX)
        self._cm = self._tmp = None
        self.done = False

    def __enter__(self) -> ResultsWriter:
        if self.zarr:
            import zarr

            parent = os.path.dirname(os.path.abspath(self.target))
            if not os.path.isdir(parent):
                raise FileNotFoundError(f"cannot write {self.target}: the directory {parent} does not exist.")
            self._tmp = f"{self.target}.tmp-{uuid.uuid4().hex[:12]}"
            self.root = zarr.open_group(self._tmp, mode="w")
        else:
            self._cm = atomic_h5(self.target)
            self.root = self._cm.__enter__()
        self.maps = self._group(MAPS_GROUP)
        for name in MAP_KEYS:
            shape = (self.k, *self.shape) if name.startswith("fractions") else self.shape
            self._create(self.maps, name, shape, _DTYPES.get(name, np.float32))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        unfinished = exc_type is None and not self.done
        if unfinished:
            exc_type = RuntimeError
            exc = RuntimeError(f"{self.target}: the writer was closed before finish(); nothing was written.")
        if self.zarr:
            if exc_type is None:
                replace_directory(self._tmp, self.target)
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            # an exception makes the atomic writer remove its temporary file
            self._cm.__exit__(exc_type, exc, None if unfinished else tb)
        if unfinished:
            raise exc
        return False

    def _group(self, name: str):
        return self.root.create_group(name) if self.zarr else self.root.create_group(name, track_times=False)

    def _create(self, group, name: str, shape: tuple, dtype) -> None:
        layout = dataset_layout(shape)           # the layout of write_results' maps
        fill = False if dtype is bool else np.nan
        if self.zarr:
            group.create_array(name, shape=shape, dtype=dtype, chunks=layout["chunks"], fill_value=fill)
        else:
            group.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill, track_times=False, **layout)

    def write(self, index, maps: dict) -> None:
        """Store the maps of one slice: ``index`` is ``()`` for a 2-D stack, else the Z index.

        ``maps`` holds the (Y, X) arrays of :data:`MAP_KEYS` (fractions (K, Y, X)), as
        :func:`xanes_lib.io.results.results_content` returns them.
        """
        lead = () if index == () else (int(index),)
        for name in MAP_KEYS:
            where = (slice(None), *lead) if name.startswith("fractions") else lead
            self.maps[name][where] = maps[name]

    def finish(self, attrs: dict, *, alignment=None) -> None:
        """Write the root attributes (and the alignment group); the file goes into place on exit."""
        names = list(attrs["references"])
        if self.zarr:
            self.root.attrs.update(json.loads(json.dumps(attrs)))
            for name in ("fractions", "fractions_std"):
                self.maps[name].attrs["references"] = names
            self.maps["edge_energy_eV"].attrs["unit"] = "eV"
            if alignment is not None:
                g = self._group(ALIGNMENT_GROUP)
                for key in ("shifts_px", "confidence", "flagged", "shift_std_px"):
                    g.create_array(key, data=np.asarray(getattr(alignment, key)))
                g.attrs.update(reference_index=int(alignment.reference_index), method=alignment.method)
        else:
            pairs, json_keys = encode_attrs(attrs, what="results attributes")
            write_attrs(self.root, pairs, json_keys)
            for name in ("fractions", "fractions_std"):
                self.maps[name].attrs["references"] = json.dumps(names)
            self.maps["edge_energy_eV"].attrs["unit"] = "eV"
            if alignment is not None:
                alignment.write(self.root.create_group(ALIGNMENT_GROUP, track_times=False))
        self.done = True

