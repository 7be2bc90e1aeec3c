"""The linear absorbance model of Beer-Lambert and its closed-form least-squares fit.

Per pixel, the absorbance ``A(E) = -ln T(E)`` of a sample is linear in the amounts of its
absorbers::

    A(E) = sum_k c_k S_k(E) + a (E / E0)^-3 + b

where ``S_k`` are spectra of the edge element (reference states, or its cross-section) and
``a (E/E0)^-3 + b`` absorbs the smooth attenuation of the other elements and offsets. For a
fixed energy grid the least-squares coefficients are ``pinv(M) @ A``: one matrix for all
pixels. The same code serves numpy arrays (fitting) and torch tensors (losses), so that the
fit in the loss and the fit of the maps are one piece of code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..spectra import default_references
from ..validate import check_energies, refuse_kev

__all__ = [
    "LinearAbsorbanceModel", "DEFAULT_BACKGROUND", "build_model", "reference_model", "n_references",
    "absorbance",
]


@dataclass(frozen=True)
class LinearAbsorbanceModel:
    """A design matrix ``M`` (E, P) and its pseudo-inverse.

    Attributes
    ----------
    energies_eV : numpy.ndarray
        (E,) energies.
    matrix : numpy.ndarray
        (E, P) columns: the basis spectra, then the background terms.
    names : tuple of str
        Name of each column (coefficient).
    pinv : numpy.ndarray
        (P, E) Moore-Penrose pseudo-inverse of ``matrix``.
    """

    energies_eV: np.ndarray
    matrix: np.ndarray
    names: tuple[str, ...]
    pinv: np.ndarray = field(repr=False)

    @property
    def n_params(self) -> int:
        """Number of fitted coefficients P."""
        return self.matrix.shape[1]

    def fit(self, absorbance):
        """Least-squares coefficients for every pixel.

        Parameters
        ----------
        absorbance : numpy.ndarray or torch.Tensor
            (E, ...) absorbance, energies first.

        Returns
        -------
        same type as ``absorbance``
            (P, ...) coefficients.
        """
        return _apply(self.pinv, absorbance)

    def predict(self, coefficients):
        """Absorbance (E, ...) rebuilt from coefficients (P, ...)."""
        return _apply(self.matrix, coefficients)


def _apply(matrix: np.ndarray, x):
    """``matrix @ x`` over the first axis of ``x`` (numpy or torch), keeping trailing axes."""
    lead, rest = x.shape[0], tuple(x.shape[1:])
    if lead != matrix.shape[1]:
        raise ValueError(f"first axis of the input has length {lead}; the model expects "
                         f"{matrix.shape[1]} (energies or coefficients, in that order).")
    if isinstance(x, np.ndarray):
        m = matrix.astype(np.result_type(x.dtype, np.float32), copy=False)
        return (m @ x.reshape(lead, -1)).reshape((matrix.shape[0],) + rest)
    m = x.new_tensor(matrix)  # a torch tensor: the matrix in its dtype, on its device (no torch import)
    return (m @ x.reshape(lead, -1)).reshape((matrix.shape[0],) + rest)


#: Smooth terms appended after the basis spectra by default: the absorption of everything
#: but the edge (``(E/E0)^-3``) and a constant. Coefficient maps list the references first,
#: then these.
DEFAULT_BACKGROUND = ("inverse_cube", "constant")


def build_model(energies_eV, basis, *, names=None, e0_eV: float | None = None,
                background=DEFAULT_BACKGROUND) -> LinearAbsorbanceModel:
    """Assemble the design matrix of the absorbance model.

    Parameters
    ----------
    energies_eV : array_like
        (E,) strictly increasing energies.
    basis : array_like
        (K, E) basis spectra (e.g. mass attenuation of each reference state).
    names : sequence of str, optional
        Names of the K basis spectra; default ``c0, c1, ...``.
    e0_eV : float, optional
        Energy that scales the ``(E/E0)^-3`` term (keeps the matrix well conditioned);
        None uses the middle of the range. The chosen value only rescales coefficient ``a``.
    background : sequence of {"inverse_cube", "constant", "linear"}
        Smooth background terms appended after the basis.

    Returns
    -------
    LinearAbsorbanceModel

    Raises
    ------
    ValueError
        Mismatched shapes, an unknown background term, or fewer energies than parameters.
    """
    e = check_energies(energies_eV, name="energies_eV")
    refuse_kev(e, name="energies_eV")
    s = np.atleast_2d(np.asarray(basis, dtype=np.float64))
    if s.shape[1] != e.size:
        raise ValueError(f"basis has {s.shape[1]} energies per spectrum, energies_eV has {e.size}; "
                         "resample the spectra onto the stack's energies first.")
    names = tuple(names) if names is not None else tuple(f"c{i}" for i in range(s.shape[0]))
    if len(names) != s.shape[0]:
        raise ValueError(f"{len(names)} names for {s.shape[0]} basis spectra.")
    if not np.all(np.isfinite(s)):
        bad = int(np.count_nonzero(~np.isfinite(s)))
        raise ValueError(f"basis holds {bad} NaN or inf value(s); evaluate the reference spectra inside "
                         "their energy range (or repair them).")
    e0 = float(np.median(e)) if e0_eV is None else float(e0_eV)
    if not (math.isfinite(e0) and e[0] / 2 <= e0 <= 2 * e[-1]):
        raise ValueError(f"e0_eV={e0_eV} is far from the energies ({e[0]:g} ... {e[-1]:g} eV); give it in eV "
                         "(or None: their median).")
    terms = {"inverse_cube": (e / e0) ** -3, "constant": np.ones_like(e), "linear": e / e0 - 1.0}
    if isinstance(background, str) or (len(background) > 1 and all(len(str(t)) == 1 for t in background)):
        raise ValueError(f"background must be a sequence of term names, e.g. ('inverse_cube', 'constant') or "
                         f"('{''.join(map(str, background))}',); got {background!r}.")
    unknown = [t for t in background if t not in terms]
    if unknown:
        raise ValueError(f"unknown background term(s) {unknown}; choose from {sorted(terms)}.")
    cols = [*s, *(terms[t] for t in background)]
    matrix = np.stack(cols, axis=1)
    if e.size < matrix.shape[1]:
        raise ValueError(f"{e.size} energies cannot determine {matrix.shape[1]} coefficients "
                         f"({names + tuple(background)}); measure more energies or drop terms.")
    return LinearAbsorbanceModel(e, matrix, names + tuple(background), np.linalg.pinv(matrix))


def reference_model(energies_eV, element: str | None = None, references=None) -> LinearAbsorbanceModel:
    """Build the absorbance model whose coefficients are the latent space of the denoisers.

    Parameters
    ----------
    energies_eV : array_like
        (E,) energies of the stack.
    element : str, optional
        Edge element; its shipped references are used when ``references`` is None.
    references : sequence of reference objects, optional
        Objects with ``.spectrum(energies_eV)`` and ``.name`` (e.g. measured references).

    Returns
    -------
    LinearAbsorbanceModel
        Columns: the normalised reference spectra, then ``(E/E0)^-3`` and a constant.
    """
    from ..mapping import check_reference_edges  # mapping builds on physics: import here

    if references is None:
        if element is None:
            raise ValueError("give the element (e.g. 'Ni') or the reference spectra for the physics model.")
        references = default_references(element)
    else:
        references = list(references)
        other = [r.name for r in references if element is not None
                 and getattr(r, "element", None) not in (None, element)]
        if other:
            raise ValueError(f"element={element!r} but the references {other} are of another element; give "
                             "the references of that element, or leave element None with references.")
    e = np.asarray(energies_eV, dtype=np.float64)
    check_reference_edges(references, e)
    return build_model(e, np.stack([r.spectrum(e) for r in references]), names=[r.name for r in references])


def n_references(model: LinearAbsorbanceModel) -> int:
    """Count the reference columns K of a model built by :func:`reference_model`."""
    return model.n_params - len(DEFAULT_BACKGROUND)


def absorbance(transmission, *, floor: float = 1e-6):
    """``-ln T`` with transmission clipped at ``floor`` (numpy or torch input)."""
    if not isinstance(transmission, np.ndarray) and not hasattr(transmission, "clamp_min"):
        transmission = np.asarray(transmission, dtype=np.float64)  # a list or a number
    if isinstance(transmission, np.ndarray):
        out = np.maximum(transmission, floor)      # one new array, then in place (large stacks)
        np.log(out, out=out)
        return np.negative(out, out=out)
    return -(transmission.clamp_min(floor)).log()
