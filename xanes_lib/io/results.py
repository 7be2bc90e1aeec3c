"""Results files of the valence mapping (HDF5), per the results contract of docs/DESIGN.md.

==============================  ===========  ================================================
path                            shape        meaning
==============================  ===========  ================================================
``maps/oxidation_state``        (Y, X)       ``sum_k f_k ox_k``, NaN outside the mask
``maps/oxidation_state_std``    (Y, X)       its standard deviation
``maps/fractions``              (K, Y, X)    fraction of each reference (attr ``references``)
``maps/fractions_std``          (K, Y, X)    their standard deviations
``maps/edge_energy_eV``         (Y, X)       edge energy (eV)
``maps/residual``               (Y, X)       RMS fit residual per pixel (absorbance units)
``maps/mask``                   (Y, X) bool  pixels that were fitted
``maps/unexplained``            (Y, X) bool  pixels no mix of the references explains (their
                                             oxidation state and fractions are NaN); all
                                             False with attr ``unexplained_test`` "none" when
                                             no test was run
root attrs                                   references, energy window, method, checkpoint
                                             (or "none"), package version, input checksum,
                                             ``unexplained_test`` (the test's settings)
==============================  ===========  ================================================

The file is written to a temporary file in the target directory, flushed to disk and
renamed into place, so ``path`` holds the complete new file or whatever was there before.
Attributes holding lists or dicts are stored as JSON text and listed in the attribute
``xanes_lib_json_attrs`` (the convention of :mod:`xanes_lib.io`). Files of format version 1
(before ``maps/unexplained``) are read with an all-False map and no test.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from .. import __version__
from ..mapping.lcf import ReferenceFit
from ..validate import check_image_mask
from ._hdf5 import (
    JSON_KEYS_ATTR,
    atomic_h5,
    check_not_input,
    encode_attrs,
    open_read,
    read_attrs,
    to_python,
    write_array,
    write_attrs,
)
from .reading import stack_checksum

__all__ = ["ValenceResults", "write_results", "read_results", "results_content", "RESULTS_FORMAT", "MAP_KEYS"]

RESULTS_FORMAT = "xanes_lib.io.results"
RESULTS_FORMAT_VERSION = 2
MAPS_GROUP = "maps"
#: Group of the alignment the stack went through (optional).
ALIGNMENT_GROUP = "alignment"
#: Datasets of the ``maps`` group, in the order of the contract.
MAP_KEYS = ("oxidation_state", "oxidation_state_std", "fractions", "fractions_std",
            "edge_energy_eV", "residual", "mask", "unexplained")
#: Maps that files of format version 1 lack.
_ADDED_IN_V2 = ("unexplained",)
#: Root attributes written by :func:`write_results` itself (``extra_attrs`` may not use them).
RESERVED_ATTRS = ("format", "format_version", "references", "reference_oxidation_states",
                  "energy_window_eV", "method", "checkpoint", "package_version", "input_checksum",
                  "input_file", "fit_mode", "edge_step_constraint", "background_terms",
                  "energy_shift_eV", "n_energies", "n_masked_nonfinite", "n_masked_nonpositive",
                  "n_outside_mask", "edge_energy_source", "unexplained_test", JSON_KEYS_ATTR)


@dataclass(eq=False)
class ValenceResults:
    """Contents of a results file (see :func:`read_results`).

    Attributes
    ----------
    oxidation_state, oxidation_state_std : numpy.ndarray
        (Y, X) maps.
    fractions, fractions_std : numpy.ndarray
        (K, Y, X) maps, in the order of ``references``.
    edge_energy_eV : numpy.ndarray
        (Y, X) edge energy in eV.
    residual : numpy.ndarray
        (Y, X) RMS fit residual.
    mask : numpy.ndarray
        (Y, X) bool, the fitted pixels.
    unexplained : numpy.ndarray
        (Y, X) bool, the pixels that no mix of the references explains (oxidation state and
        fractions NaN there); all False when no test was run (``unexplained_test`` None).
    references : list of str
        Reference names, in the order of the fractions.
    energy_window_eV : tuple of float
        Fitted energy window (eV).
    method : str
        Free-text description of the method given by the writer.
    checkpoint : str
        Denoiser checkpoint the input went through, or "none".
    package_version : str
        xanes_lib version that wrote the file.
    input_checksum : str
        SHA-256 of the input stack file, or "none".
    unexplained_test : dict or None
        Settings and outcome of the test behind ``unexplained``
        (:meth:`xanes_lib.mapping.UnexplainedPixels.to_attrs`); None when none was run.
    attrs : dict
        Every root attribute (including the above and ``extra_attrs``).
    source : str or None
        The path the results were read from.
    """

    oxidation_state: np.ndarray
    oxidation_state_std: np.ndarray
    fractions: np.ndarray
    fractions_std: np.ndarray
    edge_energy_eV: np.ndarray
    residual: np.ndarray
    mask: np.ndarray
    unexplained: np.ndarray
    references: list[str]
    energy_window_eV: tuple[float, float]
    method: str
    checkpoint: str
    package_version: str
    input_checksum: str
    unexplained_test: dict | None = None
    attrs: dict = field(default_factory=dict)
    source: str | None = None


def _names(references) -> list[str]:
    if references is None:
        return []
    if isinstance(references, str):
        references = [references]
    out = []
    for r in references:
        name = r if isinstance(r, str) else getattr(r, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"references must be names (str) or reference objects with .name; "
                             f"got {r!r}.")
        out.append(name)
    return out


def _map(value, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    a = np.asarray(value)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}; the results contract needs {shape}.")
    return a.astype(dtype, copy=False)


def _unexplained(fit_result: ReferenceFit, maps: dict, shape: tuple[int, int]) -> tuple[np.ndarray, object]:
    """Return the ``maps/unexplained`` map and the ``unexplained_test`` attribute, after checking them."""
    flags = getattr(fit_result, "unexplained", None)
    test = getattr(fit_result, "unexplained_test", None)
    if flags is None:
        return np.zeros(shape, bool), "none"
    flags = check_image_mask(flags, shape, name="fit_result.unexplained")
    outside = int((flags & ~maps["mask"]).sum())
    if outside:
        raise ValueError(f"{outside} unexplained pixel(s) lie outside maps/mask; flags are only defined on "
                         "fitted pixels. Use xanes_lib.mapping.mark_unexplained(fit, flags).")
    for name in ("oxidation_state", "oxidation_state_std", "fractions", "fractions_std"):
        if np.isfinite(maps[name][..., flags]).any():
            raise ValueError(f"maps/{name} is finite at unexplained pixels; the contract leaves it NaN "
                             "there. Use xanes_lib.mapping.mark_unexplained(fit, flags).")
    return flags, dict(test) if test is not None else {"method": "not described"}


def _check_alignment(alignment, fit_result) -> None:
    """Refuse an alignment with fewer shifts (one per image) than the fit has energies."""
    n_images = getattr(alignment, "n_energies", None)
    n_fitted = len(getattr(fit_result, "energies_eV", ()))
    if n_images is not None and int(n_images) < n_fitted:
        raise ValueError(f"the alignment holds {int(n_images)} shifts (one per image) but the fit used "
                         f"{n_fitted} energies: it belongs to another stack. Pass the alignment of the "
                         "stack that was fitted (register_stack of that stack), or alignment=None.")


def write_results(path, fit_result: ReferenceFit, *, references=None, energy_window_eV=None,
                  method: str, checkpoint: str | None = None, input_path=None,
                  extra_attrs: dict | None = None, edge_energy_eV=None, alignment=None,
                  overwrite: bool = True) -> None:
    """Write valence maps to a results file (HDF5) per the results contract.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its directory must exist.
    fit_result : ReferenceFit
        From :func:`xanes_lib.mapping.fit_references`.
    references : sequence of str or reference objects, optional
        Names of the references, in the order of the fractions; None takes
        ``fit_result.reference_names``. Given names must match the fit's.
    energy_window_eV : (float, float), optional
        Fitted energy window (eV); None takes ``fit_result.energy_window_eV``. A given
        window must match the fit's.
    method : str
        Short description of the method, e.g. ``"LCF nonneg_sum_to_one, half-step edge"``.
    checkpoint : str, optional
        Denoiser checkpoint (file name or identifier) the input went through; None writes
        "none" (raw data).
    input_path : str or os.PathLike, optional
        The input stack file: its SHA-256 (:func:`xanes_lib.io.stack_checksum`) and its file
        name (not the directory) are recorded. None writes "none". ``path`` may not be this
        file (nor a link to it): outputs never overwrite their inputs.
    extra_attrs : dict, optional
        Further root attributes (strings, numbers, bools, or lists/dicts of them); they may
        not reuse the names this function writes.
    edge_energy_eV : array_like, optional
        (Y, X) edge-energy map (eV); None takes ``fit_result.edge_energy_eV``. The contract
        requires one: compute it with :func:`xanes_lib.mapping.edge_energy`.

        ``maps/unexplained`` comes from ``fit_result.unexplained`` and its description from
        ``fit_result.unexplained_test`` (both set by :func:`xanes_lib.mapping.mark_unexplained`);
        without them an all-False map is written with ``unexplained_test`` "none".
    alignment : object, optional
        The registration the stack went through (an :class:`xanes_lib.alignment.Alignment`,
        or any object with ``write(group)``): written to the group ``alignment/``
        (``shifts_px``, ``confidence``, attrs ``reference_index`` and ``method``). Read it
        back with ``xanes_lib.alignment.Alignment.load(path)``. It must hold at least one
        shift per fitted energy.
    overwrite : bool
        If False, an existing ``path`` raises ``FileExistsError``.

    Raises
    ------
    ValueError
        Missing edge-energy map, references or window that do not match the fit, maps of the
        wrong shape, unexplained pixels outside the mask or with a finite oxidation state or
        fraction, reserved or unstorable ``extra_attrs``, an empty ``method``, an alignment
        with fewer shifts than the fit has energies, ``path`` resolving to ``input_path``
        (nothing is written then).
    TypeError
        If ``fit_result`` is not a :class:`~xanes_lib.mapping.ReferenceFit`.
    FileNotFoundError
        If the directory of ``path`` (or ``input_path``) does not exist.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    target = os.fspath(path)
    check_not_input(target, [input_path])
    _check_alignment(alignment, fit_result)
    maps, attrs = results_content(fit_result, references=references, energy_window_eV=energy_window_eV,
                                  method=method, checkpoint=checkpoint, input_path=input_path,
                                  extra_attrs=extra_attrs, edge_energy_eV=edge_energy_eV)
    pairs, json_keys = encode_attrs(attrs, what="results attributes")
    names = attrs["references"]

    with atomic_h5(target, overwrite=overwrite, inputs=[input_path]) as f:
        g = f.create_group(MAPS_GROUP, track_times=False)
        for name in MAP_KEYS:
            write_array(g, name, maps[name])
        g["fractions"].attrs["references"] = json.dumps(names)
        g["fractions_std"].attrs["references"] = json.dumps(names)
        g["edge_energy_eV"].attrs["unit"] = "eV"
        write_attrs(f, pairs, json_keys)
        if alignment is not None:
            alignment.write(f.create_group(ALIGNMENT_GROUP, track_times=False))


def results_content(fit_result: ReferenceFit, *, method: str, references=None, energy_window_eV=None,
                    checkpoint: str | None = None, input_path=None, extra_attrs: dict | None = None,
                    edge_energy_eV=None) -> tuple[dict, dict]:
    """Return the checked maps and root attributes that :func:`write_results` writes.

    Parameters are those of :func:`write_results`. Returns ``(maps, attrs)``: the arrays of
    :data:`MAP_KEYS` in their stored dtypes and the attributes before encoding. The chunked
    pipeline (:mod:`xanes_lib.chunked`) writes the same content slice by slice.
    """
    if not isinstance(fit_result, ReferenceFit):
        raise TypeError(f"fit_result must be a xanes_lib.mapping.ReferenceFit; got "
                        f"{type(fit_result).__name__}.")
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"method must be a non-empty description string; got {method!r}.")
    k, ny, nx = fit_result.fractions.shape
    names = list(fit_result.reference_names)
    given = _names(references)
    if references is not None and given != names:
        raise ValueError(f"references {given} do not match the fit's references {names} (order "
                         "matters: it is the order of maps/fractions).")
    window = tuple(float(v) for v in fit_result.energy_window_eV)
    if len(window) != 2 or not all(np.isfinite(window)) or window[0] >= window[1]:
        raise ValueError(f"the fit's energy_window_eV {window} is not a finite (low, high) window; the "
                         "results file would not read back. Pass the ReferenceFit fit_references returned.")
    if energy_window_eV is not None:
        w = tuple(float(v) for v in energy_window_eV)
        if len(w) != 2 or not np.allclose(w, window, rtol=0, atol=1e-6):
            raise ValueError(f"energy_window_eV {w} differs from the fit's window {window}; pass "
                             "the window the fit used (or None to take it from the fit).")
    edge = edge_energy_eV if edge_energy_eV is not None else fit_result.edge_energy_eV
    if edge is None:
        raise ValueError("the results contract needs maps/edge_energy_eV, but neither "
                         "edge_energy_eV= nor fit_result.edge_energy_eV was given; compute it with "
                         "xanes_lib.mapping.edge_energy(energies, normalize_spectra(...).normalized).")
    edge_source = "argument" if edge_energy_eV is not None else "fit_result"
    maps = {
        "oxidation_state": _map(fit_result.oxidation_state, "oxidation_state", (ny, nx)),
        "oxidation_state_std": _map(fit_result.oxidation_state_std, "oxidation_state_std", (ny, nx)),
        "fractions": _map(fit_result.fractions, "fractions", (k, ny, nx)),
        "fractions_std": _map(fit_result.fractions_std, "fractions_std", (k, ny, nx)),
        "edge_energy_eV": _map(edge, "edge_energy_eV", (ny, nx), np.float64),
        "residual": _map(fit_result.residual_rms, "residual", (ny, nx)),
        "mask": _map(fit_result.mask, "mask", (ny, nx), bool),
    }
    maps["unexplained"], unexplained_test = _unexplained(fit_result, maps, (ny, nx))
    if input_path is not None:
        checksum = stack_checksum(input_path)
        input_file = os.path.basename(os.path.normpath(os.fspath(input_path)))
    else:
        checksum = input_file = "none"
    attrs = {
        "format": RESULTS_FORMAT, "format_version": RESULTS_FORMAT_VERSION,
        "references": names,
        "reference_oxidation_states": [float(v) for v in fit_result.oxidation_states],
        "energy_window_eV": list(window), "method": method,
        "checkpoint": "none" if checkpoint is None else str(checkpoint),
        "package_version": __version__, "input_checksum": checksum, "input_file": input_file,
        "fit_mode": fit_result.mode, "edge_step_constraint": fit_result.edge_step_constraint,
        "background_terms": list(fit_result.background),
        "energy_shift_eV": float(fit_result.shift_eV),
        "n_energies": int(len(fit_result.energies_eV)),
        "n_masked_nonfinite": int(fit_result.n_masked_nonfinite),
        "n_masked_nonpositive": int(fit_result.n_masked_nonpositive),
        "n_outside_mask": int(fit_result.n_outside_mask),
        "edge_energy_source": edge_source,
        "unexplained_test": unexplained_test,
    }
    extra = {} if extra_attrs is None else extra_attrs
    if not isinstance(extra, dict):
        raise ValueError(f"extra_attrs must be a dict or None; got {type(extra).__name__}.")
    clash = sorted(set(extra) & set(RESERVED_ATTRS))
    if clash:
        raise ValueError(f"extra_attrs may not use the reserved name(s) {clash}; rename them.")
    for key in extra:
        if not isinstance(key, str) or not key:
            raise ValueError(f"extra_attrs keys must be non-empty strings; got {key!r}.")
    attrs.update(extra)
    return maps, attrs


def read_results(path) -> ValenceResults:
    """Read a results file written by :func:`write_results` (opened read-only).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ValenceResults

    Raises
    ------
    FileNotFoundError, OSError
        If the file does not exist or is not HDF5 (the message names it).
    ValueError
        If it is not a results file, or a map or attribute of the contract is missing or has
        an inconsistent shape.
    """
    source = os.fspath(path)
    with open_read(source, kind="a results file (.h5) written by write_results") as f:
        if to_python(f.attrs.get("format")) != RESULTS_FORMAT:
            raise ValueError(f"{source} is not a xanes_lib results file (its 'format' attribute is "
                             f"{to_python(f.attrs.get('format'))!r}, expected {RESULTS_FORMAT!r}).")
        g = f.get(MAPS_GROUP)
        if not isinstance(g, h5py.Group):
            raise ValueError(f"{source} has no '{MAPS_GROUP}' group; the file is incomplete.")
        version = to_python(f.attrs.get("format_version"))
        missing = [k for k in MAP_KEYS if not isinstance(g.get(k), h5py.Dataset)
                   and not (k in _ADDED_IN_V2 and version == 1)]
        if missing:
            raise ValueError(f"{source} lacks the map(s) {[f'{MAPS_GROUP}/{m}' for m in missing]} "
                             "of the results contract; write it again with write_results.")
        maps = {k: g[k][()] for k in MAP_KEYS if k in g}
        attrs = read_attrs(f, source=source)
    needed = ("references", "energy_window_eV", "method", "checkpoint", "package_version",
              "input_checksum")
    absent = [k for k in needed if k not in attrs]
    if absent:
        raise ValueError(f"{source} lacks the attribute(s) {absent} of the results contract.")
    shape = maps["oxidation_state"].shape
    maps.setdefault("unexplained", np.zeros(shape, bool))         # format version 1: no test
    k = len(attrs["references"])
    for name in MAP_KEYS:
        expected = (k,) + shape if name.startswith("fractions") else shape
        if maps[name].shape != expected:
            raise ValueError(f"{MAPS_GROUP}/{name} in {source} has shape {maps[name].shape}; "
                             f"expected {expected}.")
    test = attrs.get("unexplained_test")
    lo, hi = (float(v) for v in attrs["energy_window_eV"])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"energy_window_eV of {source} is not finite: {attrs['energy_window_eV']}.")
    return ValenceResults(
        oxidation_state=maps["oxidation_state"], oxidation_state_std=maps["oxidation_state_std"],
        fractions=maps["fractions"], fractions_std=maps["fractions_std"],
        edge_energy_eV=maps["edge_energy_eV"], residual=maps["residual"],
        mask=maps["mask"].astype(bool), unexplained=maps["unexplained"].astype(bool),
        references=list(attrs["references"]),
        energy_window_eV=(lo, hi), method=str(attrs["method"]), checkpoint=str(attrs["checkpoint"]),
        package_version=str(attrs["package_version"]), input_checksum=str(attrs["input_checksum"]),
        unexplained_test=test if isinstance(test, dict) else None, attrs=attrs, source=source)
