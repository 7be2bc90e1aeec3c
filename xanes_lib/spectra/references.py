"""Reference spectra with one interface and the shipped reference library.

:class:`ParametricReference` and :class:`TabulatedReference` share ``.spectrum(energies_eV)``
and ``.name``; :func:`load_reference_library` and :func:`default_references` read the shipped
``data/reference_library.json``; :func:`save_reference_library` writes one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..validate import check_energies
from .parametric import EdgeParams, edge_model, half_step_energy, model_edge_energy

__all__ = [
    "default_library_path", "ParametricReference", "TabulatedReference", "load_reference_library",
    "default_references", "save_reference_library",
]


_LIBRARY_FORMAT = "xanes_lib.reference_library"
_LIBRARY_VERSION = 1


def default_library_path() -> Path:
    """Path of the shipped reference library, ``<repo>/data/reference_library.json``."""
    return Path(__file__).resolve().parents[2] / "data" / "reference_library.json"


@dataclass(frozen=True)
class ParametricReference:
    """A reference spectrum given by the parametric model.

    Attributes
    ----------
    name : str
        Key in the library, e.g. "Ni2+".
    element : str
        Absorbing element, e.g. "Ni".
    edge : str
        Absorption edge, e.g. "K".
    oxidation_state : float
        Formal oxidation state of the element.
    params : EdgeParams
        Model parameters (energies in eV).
    provenance : dict
        Where the parameters come from: fitted file, licence, fit residual, assumptions.
    """

    name: str
    element: str
    edge: str
    oxidation_state: float
    params: EdgeParams
    provenance: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if not isinstance(self.params, EdgeParams):
            raise TypeError(f"params of reference {self.name!r} must be an EdgeParams; got "
                            f"{type(self.params).__name__}.")
        object.__setattr__(self, "oxidation_state", float(self.oxidation_state))
        object.__setattr__(self, "provenance", dict(self.provenance))

    def spectrum(self, energies_eV) -> np.ndarray:
        """Normalised absorption at ``energies_eV`` (eV, any shape), see :func:`edge_model`."""
        return edge_model(energies_eV, self.params)

    def edge_energy(self) -> float:
        """Edge energy (eV, half step) of this reference: :func:`model_edge_energy` of its params."""
        return model_edge_energy(self.params)

    def to_dict(self) -> dict:
        """JSON-able dict (without the name, which is the library key)."""
        return {"element": self.element, "edge": self.edge,
                "oxidation_state": self.oxidation_state,
                "params": self.params.to_dict(), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any], *, source: str = "") -> ParametricReference:
        """Build from a library entry written by :meth:`to_dict`."""
        where = f" in {source}" if source else ""
        missing = [k for k in ("element", "edge", "oxidation_state", "params") if k not in d]
        if missing:
            raise ValueError(f"reference {name!r}{where} lacks the key(s) {missing}; each entry "
                             "needs element, edge, oxidation_state and params.")
        try:
            params = EdgeParams.from_dict(d["params"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"reference {name!r}{where}: bad params: {exc}") from exc
        return cls(name=name, element=str(d["element"]), edge=str(d["edge"]),
                   oxidation_state=float(d["oxidation_state"]), params=params,
                   provenance=dict(d.get("provenance", {})))


@dataclass(frozen=True, eq=False)
class TabulatedReference:
    """A reference spectrum given as a table (e.g. a user's measured standard).

    ``spectrum`` interpolates linearly between the tabulated points and never extrapolates.

    Attributes
    ----------
    name : str
        Name of the reference.
    element : str or None
        Absorbing element (None: unknown).
    edge : str
        Absorption edge, e.g. "K".
    oxidation_state : float or None
        Formal oxidation state (None: unknown).
    energies_eV : numpy.ndarray
        (N,) tabulated energies in eV, strictly increasing (read-only copy).
    values : numpy.ndarray
        (N,) normalised absorption at those energies (read-only copy).
    source : str
        File (or description) the table came from, named in error messages.
    """

    name: str
    element: str | None
    edge: str
    oxidation_state: float | None
    energies_eV: np.ndarray
    values: np.ndarray
    source: str = ""

    def __post_init__(self):
        e = check_energies(self.energies_eV, name="energies_eV", source=self.source or self.name)
        v = np.array(self.values, dtype=np.float64, copy=True)
        if v.shape != e.shape:
            raise ValueError(f"values of reference {self.name!r} have shape {v.shape} but there "
                             f"are {e.size} energies; give one value per energy.")
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"values of reference {self.name!r} must be finite; got {v[i]} at "
                             f"{e[i]:.2f} eV.")
        e.setflags(write=False)
        v.setflags(write=False)
        object.__setattr__(self, "energies_eV", e)
        object.__setattr__(self, "values", v)
        if self.oxidation_state is not None:
            object.__setattr__(self, "oxidation_state", float(self.oxidation_state))

    def edge_energy(self) -> float:
        """Edge energy (eV, half step) of the table: :func:`half_step_energy` of its values.

        Raises
        ------
        ValueError
            If the table never crosses half of its edge step (not a normalised edge).
        """
        e0 = float(half_step_energy(self.energies_eV, self.values))
        if not np.isfinite(e0):
            raise ValueError(f"reference {self.name!r} ({self.source or 'table'}) never rises through 0.5: "
                             "it is not a normalised edge spectrum, so it has no half-step edge energy.")
        return e0

    def spectrum(self, energies_eV) -> np.ndarray:
        """Normalised absorption at ``energies_eV`` (eV), linearly interpolated.

        Raises
        ------
        ValueError
            If any requested energy lies outside the tabulated range (no extrapolation) or
            is not finite.
        """
        q = np.asarray(energies_eV, dtype=np.float64)
        src = self.source or self.name
        if q.size == 0:
            return np.zeros(q.shape)
        if not np.isfinite(q).all():
            raise ValueError(f"requested energies for reference {self.name!r} ({src}) must be finite.")
        lo, hi = float(self.energies_eV[0]), float(self.energies_eV[-1])
        qmin, qmax = float(q.min()), float(q.max())
        if qmin < lo or qmax > hi:
            gaps = []
            if qmin < lo:
                gaps.append(f"{qmin:.2f}-{lo:.2f} eV")
            if qmax > hi:
                gaps.append(f"{hi:.2f}-{qmax:.2f} eV")
            raise ValueError(f"reference {self.name!r} from {src} covers {lo:.2f}-{hi:.2f} eV only; "
                             f"the requested energies also need {' and '.join(gaps)}. No "
                             "extrapolation is done: request energies inside the tabulated range "
                             "or supply a reference measured over a wider range.")
        return np.interp(q, self.energies_eV, self.values)


def load_reference_library(path=None) -> dict[str, ParametricReference]:
    """Load a reference library (JSON) written by :func:`save_reference_library`.

    Parameters
    ----------
    path : str or Path, optional
        The JSON file; None loads the shipped ``data/reference_library.json``.

    Returns
    -------
    dict
        ``{name: ParametricReference}``, e.g. keys "Ni2+", "Ni3+", "Ni4+", "Co3+", "Co4+".

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a reference library or an entry is malformed.
    """
    p = default_library_path() if path is None else Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"reference library {p} not found; rebuild it with "
                                "`python -m xanes_lib.spectra calibrate --measured-dir DIR --out "
                                f"{p}` or pass the right path.")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"reference library {p} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != _LIBRARY_FORMAT:
        raise ValueError(f"{p} is not a reference library (its 'format' must be "
                         f"{_LIBRARY_FORMAT!r}).")
    if doc.get("format_version") != _LIBRARY_VERSION:
        raise ValueError(f"{p} has format_version {doc.get('format_version')!r}; this code reads "
                         f"version {_LIBRARY_VERSION}. Recalibrate with `python -m xanes_lib.spectra "
                         "calibrate`.")
    if doc.get("energy_unit") != "eV":
        raise ValueError(f"{p}: energy_unit must be 'eV'; got {doc.get('energy_unit')!r}.")
    refs = doc.get("references")
    if not isinstance(refs, dict) or not refs:
        raise ValueError(f"{p} has no 'references' entries.")
    return {name: ParametricReference.from_dict(name, d, source=p.name) for name, d in refs.items()}


_DEFAULT_SETS = MappingProxyType({"Ni": ("Ni2+", "Ni3+"), "Co": ("Co3+", "Co4+")})


def default_references(element: str, *, path=None) -> list[ParametricReference]:
    """Return the default pair of reference states for an element, lowest oxidation state first.

    Parameters
    ----------
    element : str
        "Ni" (-> Ni2+, Ni3+) or "Co" (-> Co3+, Co4+); case-insensitive.
    path : str or Path, optional
        Library file; None uses the shipped one.

    Returns
    -------
    list of ParametricReference

    Raises
    ------
    ValueError
        For an element without default references.
    """
    if element is None:
        raise ValueError(f"element is None, so there are no default references to use; pass element= (one of "
                         f"{sorted(_DEFAULT_SETS)}, e.g. stack.element) or references=.")
    key = str(element).strip().capitalize()
    if key not in _DEFAULT_SETS:
        raise ValueError(f"no default references for element {element!r}; known elements: "
                         f"{sorted(_DEFAULT_SETS)}. Load your own with load_measured_reference "
                         "or build a ParametricReference.")
    lib = load_reference_library(path)
    missing = [n for n in _DEFAULT_SETS[key] if n not in lib]
    if missing:
        raise ValueError(f"the library lacks {missing} (has {sorted(lib)}); recalibrate it with "
                         "`python -m xanes_lib.spectra calibrate`.")
    return [lib[n] for n in _DEFAULT_SETS[key]]


def _atomic_write_text(path: Path, text: str) -> None:
    from ..io._hdf5 import atomic_file  # local import: io is not needed to read spectra

    with atomic_file(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def save_reference_library(doc: Mapping[str, Any], path) -> Path:
    """Write a library document (as made by :func:`calibrate_library`) atomically.

    The JSON is written to a temporary file beside ``path`` and renamed over it.
    """
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    _atomic_write_text(Path(path), text)
    return Path(path)
