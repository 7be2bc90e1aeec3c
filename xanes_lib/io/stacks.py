"""Stack files (HDF5, FXI-compatible): the in-memory objects, their checks and writing.

File layout (the data contract of ``docs/DESIGN.md``):

==================  ==================  ===================================================
path                shape, type         meaning
==================  ==================  ===================================================
``img_xanes``       (E, Y, X) float32   transmission, ``(I - dark) / (flat - dark)``
``X_eng``           (E,) float64        energies in **keV**, strictly increasing
``img_bkg``         (Y, X) or (E, Y, X) averaged flat field (optional)
``img_dark``        (Y, X) or (E, Y, X) averaged dark frame (optional)
``Pixel Size``      str                 e.g. ``"20.0 nm"`` (optional)
``Magnification``   float               optical magnification (optional, FXI)
attrs               str, numbers        ``element``, ``edge``, ``provenance`` (JSON) and others
``ground_truth/``   group               simulated files only (optional ``foreign_mask``,
                                        ``drift_px``)
==================  ==================  ===================================================

Energies are eV everywhere in memory; keV exists only on disk (``X_eng``). The same inputs
give byte-identical files (no HDF5 timestamps, a fixed file-format version).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..validate import EV_PER_KEV, check_energies, check_stack, find_nonfinite, refuse_kev
from ._hdf5 import (
    JSON_KEYS_ATTR,
    _describe,
    atomic_h5,
    check_not_input,
    encode_attrs,
    write_array,
    write_attrs,
)

__all__ = [
    "IMAGES_KEY", "ENERGY_KEY", "FLAT_KEY", "DARK_KEY", "PIXEL_SIZE_KEY", "MAGNIFICATION_KEY",
    "GROUND_TRUTH_KEY", "PROVENANCE_ATTR", "DRIFT_KEY", "CANDIDATE_ELEMENTS", "Stack", "GroundTruth",
    "infer_element", "write_stack",
]


IMAGES_KEY = "img_xanes"
ENERGY_KEY = "X_eng"
FLAT_KEY = "img_bkg"
DARK_KEY = "img_dark"
PIXEL_SIZE_KEY = "Pixel Size"
MAGNIFICATION_KEY = "Magnification"
GROUND_TRUTH_KEY = "ground_truth"
#: Root attribute holding :attr:`Stack.provenance` (JSON text).
PROVENANCE_ATTR = "provenance"
#: Root attributes that are fields of :class:`Stack`, not entries of ``Stack.attrs``.
_RESERVED_ROOT_ATTRS = ("element", "edge", PROVENANCE_ATTR, JSON_KEYS_ATTR)
#: Name of the true drift in ``ground_truth/`` and its convention (DESIGN.md).
DRIFT_KEY = "drift_px"
DRIFT_CONVENTION = ("(dy, dx) displacement of image e relative to image 0: a feature at (y, x) in image 0 "
                    "is at (y + dy, x + dx) in image e; origin_px is that of image 0 relative to the "
                    "ground-truth maps")

#: Elements whose K edge :func:`infer_element` looks for.
CANDIDATE_ELEMENTS = ("Mn", "Fe", "Co", "Ni", "Cu", "Zn")


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
        Further file attributes (seeds, settings, ...): strings and numbers, or dicts,
        lists and None (stored as JSON text).
    source : str or None
        The path the stack was read from (set by :func:`read_stack`).
    magnification : float or None
        Optical magnification of the microscope (FXI ``Magnification``), when known.
    provenance : dict
        What the reader found and decided (JSON-able): the file layout, whether ``img_xanes``
        held transmission or raw counts (and whether they were flat-field corrected on
        reading), how ``Pixel Size`` was parsed, instrument metadata, and under
        ``"recorded"`` the provenance stored in the file by an earlier :func:`write_stack`.
        Written to the file as the root attribute ``provenance``.

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
    magnification: float | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse what no reader would give (cheap checks; the readers check the values).

        keV energies, images that do not match them, an element whose edge lies outside them.
        """
        e = check_energies(self.energies_eV, name="Stack.energies_eV")
        refuse_kev(e, name="Stack.energies_eV")
        shape = np.shape(self.transmission)
        dtype = np.dtype(getattr(self.transmission, "dtype", np.asarray(self.transmission).dtype))
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"Stack.transmission must be float transmission I / I0; got dtype {dtype} "
                             "(raw counts? correct them with xanes_lib.io.flat_field_correct(images, flat, "
                             "dark)).")
        if len(shape) != 3 or shape[0] != e.size:
            raise ValueError(f"Stack.transmission must be (E, Y, X) with E = {e.size} energies, energies "
                             f"first; got shape {shape} (transpose with np.moveaxis(a, -1, 0) if the energy "
                             "axis is last).")
        if self.element is not None:
            from ._checks import element_contradiction

            why = element_contradiction(self.element, self.edge or "K", e, CANDIDATE_ELEMENTS, given=True,
                                        energies_name="energies_eV")
            if why:
                raise ValueError(f"Stack {why}")

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_describe(getattr(self, name))}" for name in (
            "transmission", "energies_eV", "element", "edge", "pixel_size_nm", "flat", "dark",
            "attrs", "source", "magnification", "provenance"))
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
    drift_px : numpy.ndarray, shape (E, 2), float, or None
        True sample drift, relative to the first image (``drift_px[0] == (0, 0)``):
        ``drift_px[e] = (dy, dx)`` means that a feature at (y, x) in image 0 is at
        (y + dy, x + dx) in image e (the convention of ``alignment/shifts_px`` in
        DESIGN.md; an alignment with reference image r estimates ``drift_px - drift_px[r]``).
        Stored as ``ground_truth/drift_px`` (attributes ``reference_index`` = 0,
        ``origin_px``, ``convention``); None for files written before it existed.
    drift_origin_px : numpy.ndarray, shape (2,), float, or None
        Displacement (dy, dx) of image 0 relative to the ground-truth maps (``fractions``,
        ``oxidation_state``, ``mask``, ``areal_density``, which do not drift): a feature at
        (y, x) in the maps is at ``(y, x) + drift_origin_px + drift_px[e]`` in image e.
        ``transmission`` holds the drifted images; ``background`` stays with the detector.
        Given only together with ``drift_px``.
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
    drift_px: np.ndarray | None = None
    drift_origin_px: np.ndarray | None = None

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_describe(getattr(self, name))}" for name in (
            "transmission", "background", "fractions", "references", "oxidation_state", "mask",
            "areal_density", "areal_density_unit", "params", "foreign_mask", "drift_px",
            "drift_origin_px"))
        return f"GroundTruth({parts})"


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
    refuse_kev(e, name="energies_eV")
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


def _real_array(value, name: str, *, floating: bool = False) -> np.ndarray:
    a = np.asarray(value)
    ok = np.issubdtype(a.dtype, np.floating) or (
        not floating and (np.issubdtype(a.dtype, np.integer) or a.dtype == bool))
    if not ok:
        allowed = "a float dtype" if floating else "real numbers"
        short = name.split(" ")[0].split(".")[-1]
        raise ValueError(f"{name} must hold {allowed}; got dtype {a.dtype}. "
                         f"Convert it, e.g. np.asarray({short}, dtype=np.float32).")
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


def _check_magnification(value, name: str) -> float | None:
    if value is None:
        return None
    try:
        m = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or None; got {value!r}.") from None
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"{name} must be a finite positive number; got {m}. Use None when it is "
                         "unknown.")
    return m


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
    refuse_kev(energies, name="Stack.energies_eV", absolute=True,
               context="keV values exist only on disk (X_eng).")
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
    pairs, json_keys = encode_attrs(stack.attrs, what="Stack.attrs", reserved=_RESERVED_ROOT_ATTRS)
    if stack.provenance:
        if not isinstance(stack.provenance, dict):
            raise ValueError(f"Stack.provenance must be a dict; got {type(stack.provenance).__name__}.")
        more, more_json = encode_attrs({PROVENANCE_ATTR: stack.provenance}, what="Stack.provenance")
        pairs, json_keys = sorted(pairs + more), json_keys + more_json
    return dict(transmission=transmission, energies_eV=energies, flat=flat, dark=dark,
                element=_check_label(stack.element, "Stack.element"),
                edge=_check_label(stack.edge, "Stack.edge"),
                pixel_size_nm=_check_pixel_size(stack.pixel_size_nm, "Stack.pixel_size_nm"),
                magnification=_check_magnification(stack.magnification, "Stack.magnification"),
                attrs=(pairs, json_keys))


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
    out.update(_validate_drift(getattr(gt, "drift_px", None), getattr(gt, "drift_origin_px", None),
                               shape[0], f"{prefix}.", where))
    return out


def _validate_drift(drift, origin, n_energies: int, prefix: str, where: str) -> dict:
    """Check the true drift (E, 2), relative to image 0, and the offset (2,) of image 0."""
    if drift is None:
        if origin is not None:
            raise ValueError(f"{prefix}drift_origin_px{where} is given without {prefix}drift_px; give "
                             "both (the drift of every image relative to image 0, and the offset of "
                             "image 0 relative to the maps) or neither.")
        return dict(drift_px=None, drift_origin_px=None)
    d = np.asarray(_real_array(drift, f"{prefix}drift_px"), dtype=np.float64)
    if d.shape != (n_energies, 2):
        raise ValueError(f"{prefix}drift_px{where} has shape {d.shape}; it must be ({n_energies}, 2): one "
                         "(dy, dx) per image, relative to image 0.")
    if not np.isfinite(d).all():
        raise ValueError(f"{prefix}drift_px{where} holds NaN or inf; the true drift must be finite.")
    if np.abs(d[0]).max() > 1e-9:
        raise ValueError(f"{prefix}drift_px{where} starts at {tuple(float(v) for v in d[0])}, not (0, 0): it "
                         "is relative to image 0. Subtract drift_px[0] and give it as drift_origin_px.")
    o = np.zeros(2) if origin is None else np.asarray(_real_array(origin, f"{prefix}drift_origin_px"),
                                                      dtype=np.float64)
    if o.shape != (2,) or not np.isfinite(o).all():
        raise ValueError(f"{prefix}drift_origin_px{where} must be two finite numbers (dy, dx); got "
                         f"{np.asarray(origin).tolist()!r}.")
    return dict(drift_px=d, drift_origin_px=o)


def write_stack(path, stack: Stack, *, ground_truth: GroundTruth | None = None,
                overwrite: bool = True, inputs=()) -> None:
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
        kept), ``pixel_size_nm`` as the string ``"20.0 nm"`` in ``Pixel Size``,
        ``magnification`` as ``Magnification``, ``element`` and ``edge`` as root attributes,
        ``provenance`` (when not empty) as the JSON root attribute ``provenance``, and
        ``attrs`` as further root attributes (dicts, lists and None as JSON text, decoded
        again by :func:`read_stack`).
    ground_truth : GroundTruth, optional
        Written to the ``ground_truth/`` group (simulated stacks only); ``params`` become
        the group's attributes; ``foreign_mask`` and ``drift_px`` (float64, with the
        attributes ``reference_index`` = 0, ``origin_px`` and ``convention``) are written
        only when they are not None.
    overwrite : bool
        If False, an existing ``path`` raises ``FileExistsError`` and is left alone.
    inputs : path or sequence of paths, optional
        Files this output must not overwrite (the inputs it was made from). The file the
        stack was read from (``stack.source``) is always protected: writing a processed stack
        back onto its raw data raises ``ValueError``; write it to a new name.

    Raises
    ------
    ValueError
        If the stack is inconsistent: energies not strictly increasing or looking like
        keV, transmission not 3-D, not matching the energies or not finite, frame shapes or
        ground-truth shapes not matching, attribute values a file cannot hold; ``path``
        resolving to ``stack.source`` or one of ``inputs`` (also through a link).
    TypeError
        If ``stack`` or ``ground_truth`` has the wrong type.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the directory of ``path`` does not exist.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from xanes_lib.io import read_stack
    >>> stack = Stack(np.ones((3, 4, 5), np.float32), np.array([8320.0, 8333.0, 8350.0]), "Ni")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_stack(os.path.join(d, "s.h5"), stack)
    ...     read_stack(os.path.join(d, "s.h5")).energies_eV
    array([8320., 8333., 8350.])
    """
    target = os.fspath(path)
    protected = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs or ())
    if isinstance(stack, Stack) and stack.source is not None:
        protected.append(stack.source)
    check_not_input(target, protected)
    v = _validate_stack(stack)
    gt = None
    if ground_truth is not None:
        if not isinstance(ground_truth, GroundTruth):
            raise TypeError(f"ground_truth must be a xanes_lib.io.GroundTruth or None; "
                            f"got {type(ground_truth).__name__}.")
        gt = _validate_ground_truth(ground_truth, v["transmission"].shape)
        gt["params"] = encode_attrs(ground_truth.params, what="GroundTruth.params",
                                     reserved=(JSON_KEYS_ATTR,))
    with atomic_h5(target, overwrite=overwrite, inputs=protected) as f:
        write_array(f, IMAGES_KEY, v["transmission"])
        f.create_dataset(ENERGY_KEY, data=v["energies_eV"] / EV_PER_KEV, dtype=np.float64,
                         track_times=False)
        if v["flat"] is not None:
            write_array(f, FLAT_KEY, v["flat"])
        if v["dark"] is not None:
            write_array(f, DARK_KEY, v["dark"])
        if v["pixel_size_nm"] is not None:
            f.create_dataset(PIXEL_SIZE_KEY, data=f"{v['pixel_size_nm']!r} nm", track_times=False)
        if v["magnification"] is not None:
            f.create_dataset(MAGNIFICATION_KEY, data=v["magnification"], dtype=np.float64,
                             track_times=False)
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
            if gt["drift_px"] is not None:
                g.create_dataset(DRIFT_KEY, data=gt["drift_px"], dtype=np.float64, track_times=False)
                g[DRIFT_KEY].attrs["reference_index"] = 0
                g[DRIFT_KEY].attrs["origin_px"] = gt["drift_origin_px"]
                g[DRIFT_KEY].attrs["convention"] = DRIFT_CONVENTION
            g["fractions"].attrs["references"] = gt["references"]
            g["areal_density"].attrs["unit"] = gt["areal_density_unit"]
            write_attrs(g, *gt["params"])
