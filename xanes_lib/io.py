"""Read and write XANES stack files (HDF5), compatible with NSLS-II FXI exports.

File layout (the data contract of ``docs/DESIGN.md``):

==================  ==================  ===================================================
path                shape, type         meaning
==================  ==================  ===================================================
``img_xanes``       (E, Y, X) float32   transmission, ``(I - dark) / (flat - dark)``
``X_eng``           (E,) float64        energies in **keV**, strictly increasing
``img_bkg``         (Y, X) or (E, Y, X) averaged flat field (optional)
``img_dark``        (Y, X) or (E, Y, X) averaged dark frame (optional)
``Pixel Size``      str                 e.g. ``"20.0 nm"`` (optional)
attrs               str, numbers        ``element``, ``edge`` and provenance
``ground_truth/``   group               simulated files only (optional ``foreign_mask``)
==================  ==================  ===================================================

Energies are eV everywhere in memory; keV exists only on disk (``X_eng``) and is converted
here. Files are opened read-only; writes go to a temporary file in the target directory
that is renamed into place, so a file is written whole or not at all. The same inputs give
byte-identical files (no HDF5 timestamps, a fixed file-format version).

``ground_truth/`` is read only by :func:`read_ground_truth`, which is meant for simulation,
metrics and tests; :func:`read_stack` never opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field

import h5py
import numpy as np

from .validate import EV_MIN, KEV_MAX, check_energies, check_stack, energies_to_ev, find_nonfinite

__all__ = [
    "Stack", "GroundTruth", "write_stack", "read_stack", "read_ground_truth", "has_ground_truth",
    "stack_checksum", "infer_element", "CANDIDATE_ELEMENTS",
]

IMAGES_KEY = "img_xanes"
ENERGY_KEY = "X_eng"
FLAT_KEY = "img_bkg"
DARK_KEY = "img_dark"
PIXEL_SIZE_KEY = "Pixel Size"
GROUND_TRUTH_KEY = "ground_truth"
#: Attribute listing (as JSON) the attributes of the same object that hold JSON text
#: (dicts, lists, None); they are decoded on reading.
JSON_KEYS_ATTR = "xanes_lib_json_attrs"
#: Root attributes that are fields of :class:`Stack`, not entries of ``Stack.attrs``.
_RESERVED_ROOT_ATTRS = ("element", "edge", JSON_KEYS_ATTR)

#: Elements whose K edge :func:`infer_element` looks for.
CANDIDATE_ELEMENTS = ("Mn", "Fe", "Co", "Ni", "Cu", "Zn")

_LIBVER = ("earliest", "v110")   # a fixed HDF5 file-format version: reproducible bytes
_GZIP_LEVEL = 4
_CHUNK_EDGE = 512                 # chunks of at most 1 x 512 x 512 pixels (1 MiB in float32)
_ENERGY_DECIMALS_EV = 6           # keV -> eV round-off is removed by rounding to 1 micro-eV
_PIXEL_UNITS_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6}
_PIXEL_SIZE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d]+)?\s*$")


# ----------------------------------------------------------------------------------------
# Data classes
# ----------------------------------------------------------------------------------------

def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}"
    return repr(value)


@dataclass(eq=False, repr=False)
class Stack:
    """A XANES image stack as read from or written to a stack file.

    Attributes
    ----------
    transmission : numpy.ndarray, shape (E, Y, X), float32
        ``(I - dark) / (flat - dark)``; stored as ``img_xanes``.
    energies_eV : numpy.ndarray, shape (E,), float64
        Photon energies in eV, strictly increasing; stored in keV as ``X_eng``.
    element : str or None
        Absorbing element, e.g. ``"Ni"``.
    edge : str or None
        Absorption edge, e.g. ``"K"``.
    pixel_size_nm : float or None
        Pixel size in nm; stored as the string ``"20.0 nm"`` in ``Pixel Size``.
    flat, dark : numpy.ndarray or None
        Averaged flat (``img_bkg``) and dark (``img_dark``) frames, (Y, X) or (E, Y, X).
    attrs : dict
        Further file attributes (provenance, seeds, ...): strings and numbers, or dicts,
        lists and None (stored as JSON text).
    source : str or None
        The path the stack was read from (set by :func:`read_stack`).

    Notes
    -----
    Instances compare by identity (arrays have no single truth value).
    """

    transmission: np.ndarray
    energies_eV: np.ndarray
    element: str | None = None
    edge: str | None = "K"
    pixel_size_nm: float | None = None
    flat: np.ndarray | None = None
    dark: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    source: str | None = None

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_describe(getattr(self, name))}" for name in (
            "transmission", "energies_eV", "element", "edge", "pixel_size_nm", "flat", "dark",
            "attrs", "source"))
        return f"Stack({parts})"


@dataclass(eq=False, repr=False)
class GroundTruth:
    """The truth behind a simulated stack (``ground_truth/`` group of a stack file).

    Only simulation, metrics and tests may use it; analysis code must never see it.

    Attributes
    ----------
    transmission : numpy.ndarray, shape (E, Y, X)
        Noise- and background-free transmission.
    background : numpy.ndarray, shape (E, Y, X)
        Multiplicative background B: the mean of ``img_xanes`` is transmission x B.
    fractions : numpy.ndarray, shape (K, Y, X)
        Fraction of each reference state per pixel.
    references : list of str
        Names of the K references, in the order of ``fractions``.
    oxidation_state : numpy.ndarray, shape (Y, X)
        True oxidation state, NaN outside the sample and where the edge element is in a
        foreign phase (see ``foreign_mask``: it has no state on the references' scale).
    mask : numpy.ndarray, shape (Y, X), bool
        True inside the sample (foreign-phase pixels included: they are sample).
    areal_density : numpy.ndarray, shape (Y, X)
        Areal density of the edge element, in ``areal_density_unit``.
    areal_density_unit : str
        Unit of ``areal_density``.
    params : dict
        Every simulation parameter (dose, seed, version, ...): JSON-able values.
    foreign_mask : numpy.ndarray, shape (Y, X), bool, or None
        True in the sample pixels (within ``mask``) where the edge element is in a phase
        outside the references (a "foreign phase": its spectrum is no mix of them); there
        ``fractions`` are 0 and ``oxidation_state`` is NaN. Stored as
        ``ground_truth/foreign_mask`` only when given; None for stacks simulated without a
        foreign phase and for files written before it existed.
    """

    transmission: np.ndarray
    background: np.ndarray
    fractions: np.ndarray
    references: list[str]
    oxidation_state: np.ndarray
    mask: np.ndarray
    areal_density: np.ndarray
    areal_density_unit: str = "ug/cm^2"
    params: dict = field(default_factory=dict)
    foreign_mask: np.ndarray | None = None

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_describe(getattr(self, name))}" for name in (
            "transmission", "background", "fractions", "references", "oxidation_state", "mask",
            "areal_density", "areal_density_unit", "params", "foreign_mask"))
        return f"GroundTruth({parts})"


# ----------------------------------------------------------------------------------------
# Element inference
# ----------------------------------------------------------------------------------------

def infer_element(energies_eV, *, candidates=CANDIDATE_ELEMENTS, edge: str = "K") -> str:
    """Find the element whose absorption edge lies inside an energy range.

    Parameters
    ----------
    energies_eV : array_like
        Energies of the stack in eV, strictly increasing.
    candidates : sequence of str
        Element symbols to consider (default Mn, Fe, Co, Ni, Cu, Zn).
    edge : str
        Edge to look for (edge energies from ``xraydb.xray_edge``).

    Returns
    -------
    str
        The only candidate whose edge lies within ``[min(energies), max(energies)]``.

    Raises
    ------
    ValueError
        If the energies look like keV, or no candidate edge or several lie inside the range.

    Examples
    --------
    >>> infer_element([8300.0, 8333.0, 8400.0])
    'Ni'
    """
    import xraydb

    e = check_energies(energies_eV, name="energies_eV", unit="eV", min_points=1)
    if e[-1] < KEV_MAX:
        raise ValueError(f"energies_eV look like keV ({e[0]:g} ... {e[-1]:g}); energies are eV in "
                         "memory: multiply by 1000.")
    lo, hi = float(e[0]), float(e[-1])
    edges = {el: float(xraydb.xray_edge(el, edge).energy) for el in candidates}
    inside = [el for el, energy in edges.items() if lo <= energy <= hi]
    listed = ", ".join(f"{el} {energy:.0f} eV" for el, energy in edges.items())
    if not inside:
        raise ValueError(f"no {edge} edge of the known elements ({listed}) lies inside the energy "
                         f"range {lo:.1f}-{hi:.1f} eV, so the element cannot be inferred; give it "
                         "explicitly (read_stack(path, element='Ni')) or write the 'element' attribute "
                         "into the file.")
    if len(inside) > 1:
        found = ", ".join(f"{el} ({edges[el]:.0f} eV)" for el in inside)
        raise ValueError(f"several {edge} edges lie inside the energy range {lo:.1f}-{hi:.1f} eV: "
                         f"{found}; the element is ambiguous: give it explicitly "
                         "(read_stack(path, element='Ni')) or write the 'element' attribute.")
    return inside[0]


# ----------------------------------------------------------------------------------------
# Attribute encoding
# ----------------------------------------------------------------------------------------

def _json_default(obj):
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def encode_attrs(mapping, *, what: str, reserved=()) -> tuple[list[tuple[str, object]], list[str]]:
    """Turn a dict into (key, value) pairs HDF5 can store; dicts/lists/None become JSON text."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{what} must be a dict; got {type(mapping).__name__}.")
    pairs, json_keys = [], []
    for key in sorted(mapping, key=str):
        if not isinstance(key, str) or not key:
            raise ValueError(f"{what} keys must be non-empty strings; got {key!r}. Rename it.")
        if key in reserved:
            raise ValueError(f"{what} may not hold the key {key!r}: it is reserved"
                             + (" (set Stack.element / Stack.edge instead)." if key in ("element", "edge")
                                else "."))
        value = mapping[key]
        if isinstance(value, np.generic) and not isinstance(value, np.str_ | np.bytes_):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
                raise ValueError(f"{what}[{key!r}] = {value} does not fit in int64; store it as a string.")
            pairs.append((key, str(value) if isinstance(value, np.str_) else value))
        elif value is None or isinstance(value, dict | list | tuple | np.ndarray):
            try:
                text = json.dumps(value, sort_keys=True, default=_json_default)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{what}[{key!r}] cannot be stored: {err}. Use strings, numbers, "
                                 "and dicts/lists of them.") from None
            pairs.append((key, text))
            json_keys.append(key)
        else:
            raise ValueError(f"{what}[{key!r}] has type {type(value).__name__}, which a file attribute cannot hold, "
                             "so it cannot be stored; use a string, a number, a bool, or a dict/list of them "
                             "(bytes: decode them to str).")
    return pairs, json_keys


def write_attrs(obj, pairs, json_keys) -> None:
    """Store the output of :func:`encode_attrs` on an HDF5 object."""
    for key, value in pairs:
        obj.attrs[key] = value
    if json_keys:
        obj.attrs[JSON_KEYS_ATTR] = json.dumps(sorted(json_keys))


def to_python(value):
    """Make an attribute value read by h5py a plain, JSON-able Python value."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()] if value.ndim else to_python(value[()])
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, h5py.Empty):
        return None
    return value


def read_attrs(obj, *, source: str, exclude=()) -> dict:
    """Attributes of an HDF5 object as Python values, JSON-encoded ones decoded."""
    where = f"{source}:{obj.name}"
    json_keys = []
    if JSON_KEYS_ATTR in obj.attrs:
        try:
            json_keys = json.loads(to_python(obj.attrs[JSON_KEYS_ATTR]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"attribute {JSON_KEYS_ATTR!r} of {where} is not a JSON list ({err}); "
                             "the file was not written by xanes_lib or is damaged: delete that "
                             "attribute to read the others as plain values.") from None
    out = {}
    for key in obj.attrs:
        if key in exclude or key == JSON_KEYS_ATTR:
            continue
        value = to_python(obj.attrs[key])
        if key in json_keys:
            try:
                value = json.loads(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"attribute {key!r} of {where} should hold JSON text but does not "
                                 f"({err}); rewrite it or remove it.") from None
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------
# Validation of in-memory objects before writing
# ----------------------------------------------------------------------------------------

def _real_array(value, name: str, *, floating: bool = False) -> np.ndarray:
    a = np.asarray(value)
    ok = np.issubdtype(a.dtype, np.floating) or (
        not floating and (np.issubdtype(a.dtype, np.integer) or a.dtype == bool))
    if not ok:
        allowed = "a float dtype" if floating else "real numbers"
        raise ValueError(f"{name} must hold {allowed}; got dtype {a.dtype}. "
                         f"Convert it, e.g. np.asarray({name.split('.')[-1]}, dtype=np.float32).")
    return a


def _check_frame(value, name: str, shape: tuple[int, int, int], *, source: str = "",
                 fix: str = "") -> np.ndarray:
    a = _real_array(value, name)
    if a.shape != shape and a.shape != shape[1:]:
        where = f" in {source}" if source else ""
        raise ValueError(f"{name}{where} has shape {a.shape}; it must be one averaged frame {shape[1:]} "
                         f"or one frame per energy {shape}, matching the images {shape}. "
                         + (fix or "Average repeated frames (.mean(axis=0)) or check the axes order."))
    return a


def _check_pixel_size(value, name: str) -> float | None:
    if value is None:
        return None
    try:
        px = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of nm or None; got {value!r}.") from None
    if not (math.isfinite(px) and px > 0):
        raise ValueError(f"{name} must be a finite positive number of nm; got {px}. "
                         "Use None when it is unknown.")
    return px


def _check_label(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string or None; got {value!r}.")
    return value


def _validate_stack(stack: Stack) -> dict:
    if not isinstance(stack, Stack):
        raise TypeError(f"stack must be a xanes_lib.io.Stack; got {type(stack).__name__}.")
    energies = check_energies(stack.energies_eV, name="Stack.energies_eV", unit="eV")
    if energies[-1] < KEV_MAX:
        raise ValueError(f"Stack.energies_eV look like keV ({energies[0]:g} ... {energies[-1]:g}); "
                         "energies are eV in memory (keV only on disk): multiply by 1000.")
    transmission = _real_array(stack.transmission, "Stack.transmission", floating=True)
    check_stack(transmission, name="Stack.transmission", n_energies=energies.size, allow_nonfinite=True)
    transmission = transmission.astype(np.float32, copy=False)
    count, first = find_nonfinite(transmission)
    if count:
        raise ValueError(f"Stack.transmission holds {count} NaN or inf value(s) (in float32), first at "
                         f"index {first}; repair or mask those pixels (e.g. zero flat-field pixels) "
                         "before writing.")
    shape = transmission.shape
    flat = None if stack.flat is None else _check_frame(stack.flat, "Stack.flat", shape)
    dark = None if stack.dark is None else _check_frame(stack.dark, "Stack.dark", shape)
    attrs = encode_attrs(stack.attrs, what="Stack.attrs", reserved=_RESERVED_ROOT_ATTRS)
    return dict(transmission=transmission, energies_eV=energies, flat=flat, dark=dark,
                element=_check_label(stack.element, "Stack.element"),
                edge=_check_label(stack.edge, "Stack.edge"),
                pixel_size_nm=_check_pixel_size(stack.pixel_size_nm, "Stack.pixel_size_nm"),
                attrs=attrs)


def _validate_ground_truth(gt, shape: tuple[int, int, int], *, source: str = "",
                           prefix: str = "GroundTruth") -> dict:
    """Check every field of a ground truth against the stack shape (E, Y, X)."""
    where = f" in {source}" if source else ""
    image = shape[1:]

    def array(name, expected=None, *, ndim=None):
        a = _real_array(getattr(gt, name), f"{prefix}.{name}")
        if expected is not None and a.shape != expected:
            raise ValueError(f"{prefix}.{name}{where} has shape {a.shape}; it must be {expected} to match "
                             f"the stack {shape} (energies, rows, columns).")
        if ndim is not None and (a.ndim != ndim or a.shape[1:] != image or a.shape[0] < 1):
            raise ValueError(f"{prefix}.{name}{where} has shape {a.shape}; it must be (K, *{image}) with "
                             f"K >= 1 references, matching the stack {shape}.")
        return a

    out = dict(transmission=array("transmission", shape), background=array("background", shape),
               fractions=array("fractions", ndim=3), oxidation_state=array("oxidation_state", image),
               mask=array("mask", image), areal_density=array("areal_density", image))
    out["foreign_mask"] = None if getattr(gt, "foreign_mask", None) is None \
        else array("foreign_mask", image)
    for name in ("mask", "foreign_mask"):
        if out[name] is not None and out[name].dtype != bool:
            raise ValueError(f"{prefix}.{name}{where} must be boolean; got dtype {out[name].dtype}. "
                             f"Use {name}.astype(bool).")
    refs = gt.references
    if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
        raise ValueError(f"{prefix}.references{where} must be a list of reference names (str); "
                         f"got {refs!r}.")
    refs = list(refs)
    if len(refs) != out["fractions"].shape[0]:
        raise ValueError(f"{prefix}.references{where} names {len(refs)} references but fractions has "
                         f"{out['fractions'].shape[0]} maps (K, Y, X); give one name per map, in order.")
    out["references"] = refs
    out["areal_density_unit"] = _check_label(gt.areal_density_unit, f"{prefix}.areal_density_unit")
    if out["areal_density_unit"] is None:
        raise ValueError(f"{prefix}.areal_density_unit{where} is missing; give the unit, e.g. 'ug/cm^2'.")
    return out


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------

def write_array(group, name: str, a: np.ndarray) -> None:
    """Write an array deterministically (no timestamps), chunked and gzip-compressed if 2-D+."""
    kwargs = {}
    if a.ndim >= 2 and a.size:
        chunks = (1,) * (a.ndim - 2) + tuple(min(n, _CHUNK_EDGE) for n in a.shape[-2:])
        kwargs = dict(chunks=chunks, compression="gzip", compression_opts=_GZIP_LEVEL, shuffle=True)
    group.create_dataset(name, data=a, track_times=False, **kwargs)


def _temporary_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_stack(path, stack: Stack, *, ground_truth: GroundTruth | None = None,
                overwrite: bool = True) -> None:
    """Write a stack (and, for simulated data, its ground truth) to an HDF5 file.

    Everything is validated first; the file is then written to a temporary file in the same
    directory and renamed into place, so ``path`` holds either the complete new file or
    whatever was there before. The same inputs give a byte-identical file.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its directory must exist.
    stack : Stack
        The data. ``transmission`` is stored as float32 ``img_xanes``, ``energies_eV`` as
        float64 ``X_eng`` in keV, ``flat``/``dark`` as ``img_bkg``/``img_dark`` (their dtype
        kept), ``pixel_size_nm`` as the string ``"20.0 nm"`` in ``Pixel Size``, ``element``
        and ``edge`` as root attributes, and ``attrs`` as further root attributes (dicts,
        lists and None as JSON text, decoded again by :func:`read_stack`).
    ground_truth : GroundTruth, optional
        Written to the ``ground_truth/`` group (simulated stacks only); ``params`` become
        the group's attributes; ``foreign_mask`` is written (as ``foreign_mask``) only when
        it is not None.
    overwrite : bool
        If False, an existing ``path`` raises ``FileExistsError`` and is left alone.

    Raises
    ------
    ValueError
        If the stack is inconsistent: energies not strictly increasing or looking like
        keV, transmission not 3-D, not matching the energies or not finite, frame shapes or
        ground-truth shapes not matching, attribute values a file cannot hold.
    TypeError
        If ``stack`` or ``ground_truth`` has the wrong type.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the directory of ``path`` does not exist.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> stack = Stack(np.ones((3, 4, 5), np.float32), np.array([8320.0, 8333.0, 8350.0]), "Ni")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_stack(os.path.join(d, "s.h5"), stack)
    ...     read_stack(os.path.join(d, "s.h5")).energies_eV
    array([8320., 8333., 8350.])
    """
    target = os.fspath(path)
    v = _validate_stack(stack)
    gt = None
    if ground_truth is not None:
        if not isinstance(ground_truth, GroundTruth):
            raise TypeError(f"ground_truth must be a xanes_lib.io.GroundTruth or None; "
                            f"got {type(ground_truth).__name__}.")
        gt = _validate_ground_truth(ground_truth, v["transmission"].shape)
        gt["params"] = encode_attrs(ground_truth.params, what="GroundTruth.params",
                                     reserved=(JSON_KEYS_ATTR,))
    with atomic_h5(target, overwrite=overwrite) as f:
        write_array(f, IMAGES_KEY, v["transmission"])
        f.create_dataset(ENERGY_KEY, data=v["energies_eV"] / 1000.0, dtype=np.float64,
                         track_times=False)
        if v["flat"] is not None:
            write_array(f, FLAT_KEY, v["flat"])
        if v["dark"] is not None:
            write_array(f, DARK_KEY, v["dark"])
        if v["pixel_size_nm"] is not None:
            f.create_dataset(PIXEL_SIZE_KEY, data=f"{v['pixel_size_nm']!r} nm", track_times=False)
        if v["element"] is not None:
            f.attrs["element"] = v["element"]
        if v["edge"] is not None:
            f.attrs["edge"] = v["edge"]
        write_attrs(f, *v["attrs"])
        if gt is not None:
            g = f.create_group(GROUND_TRUTH_KEY, track_times=False)
            for name in ("transmission", "background", "fractions", "oxidation_state", "mask",
                         "areal_density"):
                write_array(g, name, gt[name])
            if gt["foreign_mask"] is not None:
                write_array(g, "foreign_mask", gt["foreign_mask"])
            g["fractions"].attrs["references"] = gt["references"]
            g["areal_density"].attrs["unit"] = gt["areal_density_unit"]
            write_attrs(g, *gt["params"])


@contextlib.contextmanager
def atomic_h5(target, *, overwrite: bool = True):
    """Open a new HDF5 file that appears at ``target`` whole, or not at all.

    Yields an h5py File on a temporary file in the target's directory; on success the file
    is synced and renamed onto ``target`` (with ``overwrite=False`` an existing file is never
    clobbered); on any error the temporary file is removed and ``target`` is untouched.
    """
    target = os.fspath(target)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {target}: the directory {directory} does not exist; "
                                "create it first (pathlib.Path(path).parent.mkdir(parents=True)).")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {target}: it is a directory; give a file name.")
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} exists and overwrite=False; choose another name, delete it, "
                              "or pass overwrite=True.")
    tmp = _temporary_path(target)
    try:
        with h5py.File(tmp, "x", libver=_LIBVER) as f:
            yield f
        _fsync(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)          # fails if target appeared meanwhile: no clobbering
            except FileExistsError:
                raise FileExistsError(f"{target} appeared while writing and overwrite=False; "
                                      "nothing was changed.") from None
            except OSError:                   # file system without hard links
                if os.path.lexists(target):
                    raise FileExistsError(f"{target} exists and overwrite=False.") from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(target):
    """Yield a temporary path beside ``target``; on success it is synced and renamed onto it.

    For writers that are not HDF5 (JSON, text, torch checkpoints): the file appears whole or
    not at all, and on any error the temporary file is removed. The directory is created.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_file(d / "a.txt") as tmp:
    ...     _ = pathlib.Path(tmp).write_text("x")
    >>> (d / "a.txt").read_text()
    'x'
    """
    target = os.fspath(target)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = _temporary_path(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

def _open_read(source: str) -> h5py.File:
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source} does not exist; check the path (relative paths start "
                                "from the current working directory).")
    try:
        return h5py.File(source, "r")
    except OSError as err:
        raise OSError(f"{source} could not be opened as an HDF5 file ({err}); is it a stack file "
                      "(.h5) and completely copied?") from err


def _require_dataset(f: h5py.File, key: str, source: str) -> h5py.Dataset:
    if key not in f:
        raise ValueError(f"{source} has no {key!r} dataset (keys present: {sorted(f.keys())}). A stack "
                         f"file needs {IMAGES_KEY!r} (E, Y, X) transmission and {ENERGY_KEY!r} (E,) "
                         "energies in keV (the FXI export layout); rename the datasets or re-export.")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{key!r} in {source} is a {type(obj).__name__}, not a dataset; "
                         "the stack layout expects a dataset there.")
    return obj


def _read_energies(ds: h5py.Dataset, source: str, energy_unit: str | None) -> np.ndarray:
    where = f"{ENERGY_KEY} in {source}"
    if ds.ndim != 1:
        raise ValueError(f"{where} must be 1-D (one energy per image); got shape {ds.shape}. "
                         "Flatten it (X_eng.ravel()) when it is a column.")
    raw = _real_array(ds[()], ENERGY_KEY).astype(np.float64)
    if energy_unit is None:
        finite = raw[np.isfinite(raw)]
        if finite.size and finite.max() > KEV_MAX:
            raise ValueError(f"{where} looks like eV ({finite[0]:.1f} ... {finite[-1]:.1f}); the FXI "
                             "convention is keV: divide by 1000 or pass energy_unit='eV'.")
        unit = "keV"
    else:
        unit = energy_unit
    energies = check_energies(raw, name=ENERGY_KEY, unit=unit, source=source)
    energies_eV, _ = energies_to_ev(energies, unit=unit, source=source)
    if energies_eV[0] < EV_MIN or energies_eV[-1] > KEV_MAX * 1000.0:
        raise ValueError(f"{where} gives {energies_eV[0]:g} ... {energies_eV[-1]:g} eV when read as "
                         f"{unit}; hard X-ray edges lie at 1-200 keV. Check energy_unit "
                         "(None reads keV, the FXI convention).")
    energies_eV = np.round(energies_eV, _ENERGY_DECIMALS_EV)
    return check_energies(energies_eV, name=ENERGY_KEY, unit="eV", source=source)


def _parse_pixel_size(ds, source: str) -> float:
    where = f"{PIXEL_SIZE_KEY!r} in {source}"
    fix = "write it as a string such as '20.0 nm' (units nm, um or mm)."
    value = to_python(ds[()]) if isinstance(ds, h5py.Dataset) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"{where} is unparsable: {value!r} has no unit; {fix}")
    match = _PIXEL_SIZE_RE.match(value)
    unit = match.group(2) if match else None
    if match is None or unit is None or unit.lower() not in {u.lower() for u in _PIXEL_UNITS_NM}:
        raise ValueError(f"{where} is unparsable: {value!r}; {fix}")
    factor = next(f for u, f in _PIXEL_UNITS_NM.items() if u.lower() == unit.lower())
    size_nm = float(match.group(1)) * factor
    if not (math.isfinite(size_nm) and size_nm > 0):
        raise ValueError(f"{where} is {value!r}: a pixel size must be positive; {fix}")
    return size_nm


def _read_label(f: h5py.File, key: str, source: str) -> str | None:
    if key not in f.attrs:
        return None
    value = to_python(f.attrs[key])
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"attribute {key!r} of {source} must be a non-empty string; got {value!r}. "
                         "Rewrite it (e.g. 'Ni', 'K').")
    return value.strip()


def read_stack(path, *, load_flat_dark: bool = True, energy_unit: str | None = None,
               element: str | None = None, allow_nonfinite: bool = False) -> Stack:
    """Read a stack file (FXI export or xanes_lib file), checking it against the contract.

    The file is opened read-only and ``ground_truth/`` is never opened, so analysis code
    cannot see the truth of a simulated file.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    load_flat_dark : bool
        Read ``img_bkg`` and ``img_dark`` when present (False skips them, and their checks).
    energy_unit : {None, "keV", "eV"}
        Unit of ``X_eng``. None means keV (the FXI convention) and raises when the values
        look like eV (> 200).
    element : str, optional
        Absorbing element. None takes the ``element`` attribute of the file, or when it is
        missing (plain FXI exports) infers it with :func:`infer_element` and records
        ``attrs["element_inferred"] = True``.
    allow_nonfinite : bool
        If False, NaN or inf in ``img_xanes`` raises.

    Returns
    -------
    Stack
        ``transmission`` as float32, ``energies_eV`` in eV (float64, rounded to 1 micro-eV
        to remove the keV -> eV round-off), ``edge`` from the file or "K" by default,
        ``attrs`` with the other root attributes, ``source`` = ``path``.

    Raises
    ------
    ValueError
        Naming the file and the key: a missing ``img_xanes`` or ``X_eng`` (the keys present
        are listed), ``img_xanes`` not 3-D or of integer dtype (raw counts), a length mismatch
        between ``img_xanes`` and ``X_eng``, NaN/inf in ``img_xanes`` (count and first index),
        energies not strictly increasing or looking like eV, ``img_bkg``/``img_dark`` of the
        wrong shape, an unparsable ``Pixel Size``, or an element that cannot be inferred.
    FileNotFoundError, OSError
        If the file does not exist or is not HDF5.
    """
    source = os.fspath(path)
    if energy_unit not in (None, "keV", "eV"):
        raise ValueError(f"energy_unit must be None (keV, the FXI convention), 'keV' or 'eV'; "
                         f"got {energy_unit!r}.")
    element = _check_label(element, "element")
    with _open_read(source) as f:
        images_ds = _require_dataset(f, IMAGES_KEY, source)
        energies_ds = _require_dataset(f, ENERGY_KEY, source)
        energies_eV = _read_energies(energies_ds, source, energy_unit)
        if images_ds.ndim != 3:
            raise ValueError(f"{IMAGES_KEY} in {source} must be 3-D (energies, rows, columns); got shape "
                             f"{images_ds.shape}. A single image needs a leading energy axis.")
        if images_ds.shape[0] != energies_eV.size:
            raise ValueError(f"{IMAGES_KEY} in {source} has {images_ds.shape[0]} images but {ENERGY_KEY} "
                             f"has {energies_eV.size} energies; they must match one to one (is the "
                             "stack transposed, or the export incomplete?).")
        dtype = images_ds.dtype
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"{IMAGES_KEY} in {source} has dtype {dtype}, not float: it looks like raw "
                             "detector counts, while the contract stores transmission (I-dark)/(flat-dark). "
                             "Correct it with xanes_lib.flatfield.flat_field_correct(images, flat, dark) "
                             "and write the result with write_stack.")
        transmission = images_ds[()].astype(np.float32, copy=False)
        check_stack(transmission, name=IMAGES_KEY, source=source, n_energies=energies_eV.size,
                    allow_nonfinite=True)
        if not allow_nonfinite:
            count, first = find_nonfinite(transmission)
            if count:
                raise ValueError(f"{IMAGES_KEY} in {source} holds {count} NaN or inf value(s), first at "
                                 f"index {first}; repair or mask them, or pass allow_nonfinite=True to "
                                 "read them as they are.")
        flat = dark = None
        if load_flat_dark:
            fix = "Pass load_flat_dark=False to read the stack without them."
            if FLAT_KEY in f:
                flat = _check_frame(_require_dataset(f, FLAT_KEY, source)[()], FLAT_KEY,
                                    transmission.shape, source=source, fix=fix)
            if DARK_KEY in f:
                dark = _check_frame(_require_dataset(f, DARK_KEY, source)[()], DARK_KEY,
                                    transmission.shape, source=source, fix=fix)
        pixel_size_nm = _parse_pixel_size(f[PIXEL_SIZE_KEY], source) if PIXEL_SIZE_KEY in f else None
        file_element = _read_label(f, "element", source)
        file_edge = _read_label(f, "edge", source)
        attrs = read_attrs(f, source=source, exclude=_RESERVED_ROOT_ATTRS)
    if element is None:
        element = file_element
    if element is None:
        try:
            element = infer_element(energies_eV)
        except ValueError as err:
            raise ValueError(f"{source} has no 'element' attribute and {err}") from None
        attrs["element_inferred"] = True
    return Stack(transmission=transmission, energies_eV=energies_eV, element=element,
                 edge=file_edge if file_edge is not None else "K", pixel_size_nm=pixel_size_nm,
                 flat=flat, dark=dark, attrs=attrs, source=source)


def has_ground_truth(path) -> bool:
    """Tell whether a stack file holds a ``ground_truth/`` group (a simulated file).

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.

    Returns
    -------
    bool
    """
    source = os.fspath(path)
    with _open_read(source) as f:
        return isinstance(f.get(GROUND_TRUTH_KEY), h5py.Group)


def read_ground_truth(path) -> GroundTruth:
    """Read the ground truth of a simulated stack file.

    For simulation, metrics and tests only: analysis code must not use the truth.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`write_stack` with ``ground_truth=``.

    Returns
    -------
    GroundTruth
        Arrays with the dtypes they were written with (``mask`` bool), ``references`` as a
        list of str, ``params`` from the group's attributes; ``foreign_mask`` (bool) when the
        file holds ``ground_truth/foreign_mask``, None otherwise (older files, stacks without
        a foreign phase).

    Raises
    ------
    ValueError
        If the file has no ``ground_truth`` group (not a simulated file), or a dataset or
        attribute of it is missing or has a shape that does not match ``img_xanes``.
    """
    source = os.fspath(path)
    with _open_read(source) as f:
        if not isinstance(f.get(GROUND_TRUTH_KEY), h5py.Group):
            raise ValueError(f"{source} has no {GROUND_TRUTH_KEY!r} group: it is not a simulated file "
                             "(measured data has no ground truth). Use has_ground_truth(path) to check, "
                             "or read a file written by the simulator.")
        shape = _require_dataset(f, IMAGES_KEY, source).shape
        if len(shape) != 3:
            raise ValueError(f"{IMAGES_KEY} in {source} must be 3-D; got shape {shape}.")
        g = f[GROUND_TRUTH_KEY]
        data = {}
        for name in ("transmission", "background", "fractions", "oxidation_state", "mask",
                     "areal_density"):
            data[name] = _require_dataset(g, name, f"{source}:{GROUND_TRUTH_KEY}")[()]
        if "foreign_mask" in g:
            data["foreign_mask"] = _require_dataset(g, "foreign_mask",
                                                    f"{source}:{GROUND_TRUTH_KEY}")[()]
        for ds_name, attr in (("fractions", "references"), ("areal_density", "unit")):
            if attr not in g[ds_name].attrs:
                raise ValueError(f"{GROUND_TRUTH_KEY}/{ds_name} in {source} lacks the attribute {attr!r}; "
                                 "the simulated file is incomplete: write it again with write_stack.")
        references = to_python(g["fractions"].attrs["references"])
        references = [references] if isinstance(references, str) else list(references)
        unit = to_python(g["areal_density"].attrs["unit"])
        params = read_attrs(g, source=source)
    truth = GroundTruth(references=references, areal_density_unit=unit, params=params, **data)
    _validate_ground_truth(truth, shape, source=source, prefix=GROUND_TRUTH_KEY)
    return truth


def stack_checksum(path) -> str:
    """Return the SHA-256 of a file's bytes, as 64 hex digits.

    Results files record it to name their input exactly.

    Parameters
    ----------
    path : str or os.PathLike
        Any file.

    Returns
    -------
    str
    """
    source = os.fspath(path)
    with open(source, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
