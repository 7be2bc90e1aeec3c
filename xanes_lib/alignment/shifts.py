"""Shifts across energies: the :class:`Alignment` record, its file form, and applying it.

Convention (DESIGN.md): ``shifts_px[e] = (dy, dx)`` is the displacement of image ``e``
relative to the reference image: a feature at ``(y, x)`` in the reference is at
``(y + dy, x + dx)`` in image ``e``. Aligning shifts image ``e`` by ``-(dy, dx)``:
``aligned[e](y, x) = image[e](y + dy, x + dx)``.

In a file the record is the group ``alignment/`` holding ``shifts_px`` (E, 2),
``confidence`` (E,), ``flagged`` (E,) and ``shift_std_px`` (E, 2), with attributes
``reference_index``, ``method`` and the registration's choices.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import h5py
import numpy as np
import scipy.fft
from scipy import ndimage

from ..io._hdf5 import atomic_h5, encode_attrs, open_read, read_attrs, write_array, write_attrs
from ..resources import available_cores
from ..validate import check_stack

__all__ = [
    "GROUP", "ORDERS", "LANCZOS_RADIUS", "FOURIER_PAD_PX", "Alignment", "AlignedStack",
    "interpolation_variance", "apply_alignment", "checked_shifts", "fourier_shift_axis", "shift_image",
    "common_field", "repeat_field_edges", "move_mask",
]

#: Name of the HDF5 group holding an alignment.
GROUP = "alignment"
#: Interpolation orders of :func:`apply_alignment`: "fourier" (phase ramp, the default),
#: "lanczos" (windowed sinc, local), 0 nearest, 1 linear, 2-5 splines.
ORDERS = ("fourier", "lanczos", 0, 1, 2, 3, 4, 5)
#: Radius (pixels) of the Lanczos kernel of order "lanczos": 2 x radius taps per axis.
LANCZOS_RADIUS = 6
#: Mirror padding (pixels) added beyond ``ceil(|shift|)`` on each side of a line before its
#: Fourier shift, so that the line does not wrap around onto its other end.
FOURIER_PAD_PX = 16
_RESERVED = ("reference_index", "method")


@dataclass(frozen=True)
class Alignment:
    """Sub-pixel translations of the images of a stack relative to a reference image.

    Attributes
    ----------
    shifts_px : numpy.ndarray, shape (E, 2)
        Displacement (dy, dx) of image e relative to the reference image, in pixels.
    confidence : numpy.ndarray, shape (E,)
        Quality of each shift: the normalised cross-correlation of the image's features with
        what it was registered to (1 for the reference; lower is worse).
    reference_index : int
        Index of the reference image.
    method : str
        How the shifts were found (for example ``"template"``, or ``"manual"``).
    flagged : numpy.ndarray of bool, shape (E,)
        Images whose confidence was too low; their shifts were interpolated from neighbours.
        None means none flagged.
    shift_std_px : numpy.ndarray, shape (E, 2), or None
        Standard error of each shift relative to the reference (0 for the reference); None
        when unknown (NaN after loading).
    info : dict
        JSON-able details of the choices made (bin factor, smoothing, threshold, ...).
    """

    shifts_px: np.ndarray
    confidence: np.ndarray
    reference_index: int
    method: str
    flagged: np.ndarray | None = None
    shift_std_px: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        shifts = np.array(self.shifts_px, dtype=np.float64)
        if shifts.ndim != 2 or shifts.shape[1] != 2 or shifts.shape[0] < 1:
            raise ValueError(f"shifts_px must have shape (E, 2) (dy, dx per image); got {shifts.shape}.")
        if not np.isfinite(shifts).all():
            bad = int(np.flatnonzero(~np.isfinite(shifts).all(axis=1))[0])
            raise ValueError(f"shifts_px must be finite; image {bad} has {shifts[bad].tolist()}.")
        n_e = shifts.shape[0]
        conf = np.array(self.confidence, dtype=np.float64)
        if conf.shape != (n_e,):
            raise ValueError(f"confidence must have shape ({n_e},), one value per image; got {conf.shape}.")
        flagged = (np.zeros(n_e, bool) if self.flagged is None else np.array(self.flagged))
        if flagged.shape != (n_e,) or flagged.dtype != bool:
            raise ValueError(f"flagged must be a boolean array of shape ({n_e},); got "
                             f"{flagged.dtype} {flagged.shape}.")
        std = np.full((n_e, 2), np.nan) if self.shift_std_px is None else np.array(self.shift_std_px,
                                                                                   dtype=np.float64)
        if std.shape != (n_e, 2) or np.any(std < 0):
            raise ValueError(f"shift_std_px must be an ({n_e}, 2) array of errors >= 0 (or NaN); got "
                             f"shape {std.shape}.")
        ref = self.reference_index
        if isinstance(ref, bool) or not isinstance(ref, int | np.integer) or not 0 <= ref < n_e:
            raise ValueError(f"reference_index must be an integer in [0, {n_e - 1}]; got {ref!r}.")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a non-empty string; got {self.method!r}.")
        if not isinstance(self.info, dict):
            raise ValueError(f"info must be a dict; got {type(self.info).__name__}.")
        for name, value in (("shifts_px", shifts), ("confidence", conf), ("flagged", flagged),
                            ("shift_std_px", std)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "reference_index", int(ref))

    @property
    def n_energies(self) -> int:
        """Number of images."""
        return self.shifts_px.shape[0]

    @classmethod
    def identity(cls, n_energies: int, *, reference_index: int = 0) -> Alignment:
        """No shift at all (``method="none"``): what a stack that is not aligned carries."""
        if isinstance(n_energies, bool) or not isinstance(n_energies, int | np.integer) or n_energies < 1:
            raise ValueError(f"n_energies must be an integer >= 1 (the stack's energies); got "
                             f"{n_energies!r}.")
        return cls(np.zeros((n_energies, 2)), np.ones(n_energies), reference_index, "none",
                   shift_std_px=np.zeros((n_energies, 2)))

    def to_attrs(self) -> dict:
        """Attributes of the ``alignment/`` group: ``reference_index``, ``method`` and ``info``."""
        return {**self.info, "reference_index": self.reference_index, "method": self.method}

    def write(self, group: h5py.Group) -> None:
        """Write the datasets and attributes into an open, empty HDF5 group."""
        pairs, json_keys = encode_attrs(dict(self.info), what="Alignment.info", reserved=_RESERVED)
        write_attrs(group, pairs + [("reference_index", self.reference_index), ("method", self.method)],
                    json_keys)
        write_array(group, "shifts_px", self.shifts_px)
        write_array(group, "confidence", self.confidence)
        write_array(group, "flagged", self.flagged)
        write_array(group, "shift_std_px", self.shift_std_px)

    def save(self, path, *, overwrite: bool = True) -> None:
        """Write a new HDF5 file holding the group ``alignment/`` (atomically: whole or not at all).

        Saving replaces the whole file, so an existing ``path`` is only replaced when it holds
        nothing but an ``alignment/`` group (an earlier :meth:`save`).

        Raises
        ------
        ValueError
            If ``path`` exists and holds anything else (a stack, results), or is not HDF5.
        FileExistsError
            If ``path`` exists and ``overwrite`` is False.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "shifts.h5"
        >>> Alignment.identity(3).save(path)
        >>> Alignment.load(path).shifts_px.shape
        (3, 2)
        """
        _refuse_foreign_file(os.fspath(path))
        with atomic_h5(path, overwrite=overwrite) as f:
            self.write(f.create_group(GROUP))

    @classmethod
    def load(cls, source) -> Alignment:
        """Read an alignment from a file (its ``alignment/`` group) or from an open HDF5 group.

        Raises
        ------
        ValueError
            When the group or one of its datasets is missing.
        FileNotFoundError, OSError
            If the file does not exist or is not HDF5 (the message names it).
        """
        if isinstance(source, h5py.Group):
            return cls._from_group(source)
        path = os.fspath(source)
        with open_read(path, kind="an alignment or results file (.h5)") as f:
            if GROUP not in f:
                raise ValueError(f"{path} holds no '{GROUP}/' group; it was not aligned (groups there: "
                                 f"{sorted(f.keys())}).")
            return cls._from_group(f[GROUP])

    @classmethod
    def _from_group(cls, group: h5py.Group) -> Alignment:
        where = f"{group.file.filename}:{group.name}"
        missing = [k for k in ("shifts_px", "confidence") if k not in group]
        missing += [k for k in _RESERVED if k not in group.attrs]
        if missing:
            raise ValueError(f"{where} lacks {missing}; an alignment needs the datasets shifts_px and "
                             "confidence and the attributes reference_index and method.")
        attrs = read_attrs(group, source=group.file.filename)
        flagged = group["flagged"][()].astype(bool) if "flagged" in group else None
        std = group["shift_std_px"][()] if "shift_std_px" in group else None
        ref, method = attrs.pop("reference_index"), attrs.pop("method")
        return cls(shifts_px=group["shifts_px"][()], confidence=group["confidence"][()],
                   reference_index=int(ref), method=str(method), flagged=flagged, shift_std_px=std,
                   info=attrs)


def _refuse_foreign_file(path: str) -> None:
    """Refuse to replace an existing file that holds more than an ``alignment/`` group."""
    if not os.path.isfile(path):
        return                    # absent (or a folder, which atomic_h5 refuses)
    try:
        with h5py.File(path, "r") as f:
            held = sorted(f.keys())
    except OSError:
        held = None
    if held is not None and set(held) <= {GROUP}:
        return
    what = "is not an HDF5 file" if held is None else f"holds {held}"
    root, ext = os.path.splitext(path)
    raise ValueError(f"refusing to overwrite {path}: it {what}, not only an '{GROUP}/' group, and saving "
                     f"replaces the whole file. Pass another path, e.g. {root}_alignment{ext or '.h5'}.")


@dataclass(frozen=True)
class AlignedStack:
    """An aligned stack and what the alignment did to it.

    Attributes
    ----------
    transmission : numpy.ndarray, shape (E, Y, X)
        The aligned images, same dtype as the input. Outside the common field every image
        repeats the nearest pixel of the field's edge (:func:`repeat_field_edges`), the same
        place at every energy, so that no pixel mixes spectra of different places; these
        pixels are not measurements (use ``common_mask`` or ``crop``).
    common_mask : numpy.ndarray of bool, shape (Y, X)
        Pixels that every image covers after alignment (no extrapolation anywhere).
    crop : tuple of slice
        The rectangle of ``common_mask``: ``transmission[:, crop[0], crop[1]]``.
    variance_factor : numpy.ndarray, shape (E,)
        Variance of a pixel of the aligned image e over that of the input for uncorrelated
        noise (:func:`interpolation_variance`); 1 for unshifted images, about 1 for a
        Fourier shift.
    order : int or str
        Interpolation order used (one of :data:`ORDERS`).
    """

    transmission: np.ndarray
    common_mask: np.ndarray
    crop: tuple[slice, slice]
    variance_factor: np.ndarray
    order: int | str


def _kernel_energy(fraction: float, order) -> float:
    """Sum of the squared interpolation weights for a fractional shift along one axis."""
    if order == 0:
        return 1.0
    if order in _TAPS:
        return float(np.sum(_TAPS[order](fraction)[1] ** 2))
    delta = np.zeros(65)
    delta[32] = 1.0
    if order == "fourier":
        out = fourier_shift_axis(delta, -fraction, axis=0)
    else:
        out = ndimage.shift(delta, fraction, order=order, mode="constant", cval=0.0)
    return float(np.sum(out ** 2))


def interpolation_variance(shifts_px, *, order="fourier") -> np.ndarray:
    """Variance factor of uncorrelated pixel noise after a sub-pixel shift, per image.

    An interpolated pixel is a weighted sum ``sum_k w_k I_k`` of input pixels, so its
    variance is ``sum_k w_k**2`` times theirs. Linear interpolation at fractional shift
    ``f`` gives ``(1 - f)**2 + f**2`` per axis (down to 0.5 at ``f = 0.5``), and neighbouring
    output pixels become correlated (covariance ``f (1 - f)`` per axis), so averages over
    regions do not gain: the variance of a region mean is unchanged. A Fourier shift is a
    unitary operation on the (padded) line: white noise stays white with the same variance,
    except for the Nyquist frequency, which a real half-pixel shift cannot keep (a factor
    ``1 - O(1/n)``).

    Parameters
    ----------
    shifts_px : array_like, shape (E, 2)
        Shifts applied (dy, dx); only their fractional parts matter.
    order : int or str
        Interpolation order, one of :data:`ORDERS` (0 nearest: factor 1).

    Returns
    -------
    numpy.ndarray, shape (E,)
        Product of the two axes' factors, in (0, 1].

    Examples
    --------
    >>> interpolation_variance([[0.0, 0.5], [2.0, -3.0]], order=1)
    array([0.5, 1. ])
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}.")
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    frac = shifts - np.floor(shifts)
    return np.array([_kernel_energy(fy, order) * _kernel_energy(fx, order) for fy, fx in frac])


def _linear_taps(fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from ``floor(d)`` and weights of linear interpolation at fractional shift ``fraction``."""
    return np.array([0, 1]), np.array([1.0 - fraction, fraction])


def _lanczos_taps(fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and weights of the windowed sinc ``sinc(x) sinc(x / LANCZOS_RADIUS)``, summing to 1.

    It keeps most of the noise's high frequencies: white noise keeps 0.89 of its variance per
    axis at a half-pixel shift (linear: 0.5), 0.94 on average over fractions.
    """
    offsets = np.arange(-LANCZOS_RADIUS + 1, LANCZOS_RADIUS + 1)
    x = offsets - fraction
    w = np.sinc(x) * np.sinc(x / LANCZOS_RADIUS)
    return offsets, w / w.sum()


#: The local separable kernels of :func:`shift_image`, by order.
_TAPS = {1: _linear_taps, "lanczos": _lanczos_taps}


def _separable_shift(image: np.ndarray, shift, taps_of) -> np.ndarray:
    """``out(y, x) = image(y + dy, x + dx)`` by a separable interpolation kernel, edges repeated.

    ``taps_of(fraction)`` gives the kernel's pixel offsets from ``floor(d)`` and their weights.
    Each output pixel reads only the input pixels within ``|shift|`` plus the kernel's reach.
    Each tap is a slice of the image padded by its repeated edges (no gather).
    """
    out = image
    work = np.result_type(image.dtype, np.float32)
    for axis, d in enumerate(shift):
        n = image.shape[axis]
        base = math.floor(d)
        offsets, weights = (np.array([0]), np.array([1.0])) if d == base else taps_of(d - base)
        first, last = base + int(offsets[0]), base + int(offsets[-1])
        # input index clip(i + base + k, 0, n - 1): pad so that every tap is a plain slice
        before, after = max(0, -first), max(0, last)
        widths = [(0, 0)] * out.ndim
        widths[axis] = (before, after)
        padded = np.pad(out, widths, mode="edge")
        acc = np.zeros(out.shape, work)
        term = np.empty(out.shape, work)
        window = [slice(None)] * out.ndim
        for k, wk in zip(offsets, weights, strict=True):
            start = base + int(k) + before
            window[axis] = slice(start, start + n)
            np.multiply(padded[tuple(window)], wk, out=term, casting="unsafe")
            acc += term
        out = acc.astype(image.dtype, copy=False)
    return out


def _valid_range(n: int, d: float, order: int) -> tuple[int, int]:
    """Output indices ``[lo, hi)`` whose sample position ``i + d`` lies inside the image."""
    slack = 0.5 if order == 0 else 0.0
    lo = max(0, math.ceil(-d - slack - 1e-9))
    hi = min(n, math.floor(n - 1 - d + slack + 1e-9) + 1)
    return lo, max(lo, hi)


def checked_shifts(alignment, n_energies: int, shape: tuple[int, int]) -> np.ndarray:
    """Return the (E, 2) shifts of an :class:`Alignment` or array, checked against a stack's size.

    Raises ``ValueError`` for a shape other than (``n_energies``, 2), non-finite shifts, or a
    shift as large as the field ``shape`` (Y, X).
    """
    if isinstance(alignment, Alignment):
        shifts = alignment.shifts_px
    else:
        shifts = np.asarray(alignment, dtype=np.float64)
        if shifts.ndim != 2 or shifts.shape[1] != 2 or not np.isfinite(shifts).all():
            raise ValueError(f"shifts must be a finite (E, 2) array of (dy, dx); got shape {shifts.shape}.")
    ny, nx = shape
    if shifts.shape[0] != n_energies:
        raise ValueError(f"the alignment has {shifts.shape[0]} shifts but the stack has {n_energies} images; "
                         "apply it to the stack it was estimated on.")
    big = np.flatnonzero((np.abs(shifts) >= np.array([ny, nx]) - 1).any(axis=1))
    if big.size:
        raise ValueError(f"image {big[0]} would move by {shifts[big[0]].tolist()} px, as much as the field "
                         f"({ny} x {nx}); no pixel would remain. Check the shifts (units: pixels).")
    return shifts


def fourier_shift_axis(image: np.ndarray, shift: float, *, axis: int) -> np.ndarray:
    """Return ``out[..., i, ...] = image[..., i + shift, ...]`` along ``axis`` by a Fourier phase ramp.

    Each line along ``axis`` is padded by mirroring (``ceil(|shift|) + FOURIER_PAD_PX`` pixels
    each side, so that it does not wrap around), multiplied by ``exp(2 pi i k shift)`` in
    Fourier space and cut back. Unlike linear or spline interpolation this keeps white noise
    white with the same variance (the operation is unitary on the padded line), so a denoiser
    or a noise estimate that assumes independent pixels still applies after alignment. A
    positive line stays above half its own minimum (the ringing of a phase ramp at a sharp
    edge could otherwise make a transmission negative). The lines are independent: a block holding
    whole lines gives the same values as the image.

    Parameters
    ----------
    image : numpy.ndarray
        Array of any dimension, floating point; not modified.
    shift : float
        Displacement (pixels) to undo along ``axis``; 0 returns a copy.
    axis : int
        The axis to shift along.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> line = np.sin(np.linspace(0, 2 * np.pi, 64, endpoint=False))
    >>> moved = fourier_shift_axis(line, 0.5, axis=0)
    >>> bool(abs(moved[20] - np.sin(2 * np.pi * 20.5 / 64)) < 1e-2)
    True
    """
    if not math.isfinite(float(shift)):
        raise ValueError(f"shift must be a finite number of pixels; got {shift!r}.")
    if not -image.ndim <= int(axis) < image.ndim:
        raise ValueError(f"axis {axis} does not exist in an array of {image.ndim} dimension(s) "
                         f"{image.shape}.")
    if shift == 0:
        return image.copy()
    n = image.shape[axis]
    pad = int(math.ceil(abs(shift))) + FOURIER_PAD_PX
    widths = [(0, 0)] * image.ndim
    widths[axis] = (pad, pad)
    # float32 images are shifted in single precision (relative error ~1e-6, far below the
    # photon noise), float64 ones in double; scipy.fft keeps the precision and uses every available core.
    work = np.float32 if image.dtype == np.float32 else np.float64
    line = np.pad(image.astype(work, copy=False), widths, mode="symmetric")
    if float(shift).is_integer():   # what the phase ramp gives, exactly: the padded line, moved
        return np.take(line, np.arange(pad, pad + n) + int(shift), axis=axis).astype(image.dtype, copy=False)
    m = line.shape[axis]
    ramp_shape = [1] * image.ndim
    ramp_shape[axis] = m // 2 + 1
    ramp = np.exp(2j * np.pi * shift * scipy.fft.rfftfreq(m)).astype(np.result_type(work, np.complex64))
    cores = available_cores()
    spectrum = scipy.fft.rfft(line, axis=axis, workers=cores)
    spectrum *= ramp.reshape(ramp_shape)
    shifted = scipy.fft.irfft(spectrum, n=m, axis=axis, workers=cores)
    out = np.take(shifted, np.arange(pad, pad + n), axis=axis)
    # A phase ramp rings next to sharp edges (Gibbs): a positive line is kept above half its
    # own minimum, so a transmission next to a dark, sharp particle edge stays positive.
    low = image.min(axis=axis, keepdims=True)
    out = np.maximum(out, np.where(low > 0, 0.5 * low, -np.inf))
    return out.astype(image.dtype, copy=False)


def shift_image(image: np.ndarray, shift, order="fourier") -> np.ndarray:
    """Return one image moved by ``-shift`` (dy, dx) onto the reference grid, edges repeated.

    The per-image step of :func:`apply_alignment`. For orders 0 and 1 the value at a pixel
    depends only on the input pixels within ``|shift| + 1`` of it, for "lanczos" within
    ``|shift| + LANCZOS_RADIUS``, so a tile with that halo (edge pixels repeated at the image
    border) gives the same values as the whole image. The Fourier shift moves the columns,
    then the rows (:func:`fourier_shift_axis`); each pass needs whole lines.
    """
    if np.ndim(image) != 2:
        raise ValueError(f"image must be one 2-D (Y, X) image; got shape {np.shape(image)}. Move a stack "
                         "with apply_alignment(stack, alignment), or image by image.")
    d = tuple(float(v) for v in np.asarray(shift, dtype=np.float64).ravel())
    if len(d) != 2 or not all(math.isfinite(v) for v in d):
        raise ValueError(f"shift must be two finite numbers (dy, dx) in pixels; got {shift!r}.")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}; got {order!r}.")
    if d == (0.0, 0.0):
        return image.copy()
    if order == "fourier":
        return fourier_shift_axis(fourier_shift_axis(image, d[0], axis=0), d[1], axis=1)
    if order == 0:
        return _separable_shift(image, tuple(float(np.round(v)) for v in d), _linear_taps)
    if order in _TAPS:
        return _separable_shift(image, d, _TAPS[order])
    return ndimage.shift(image, (-d[0], -d[1]), order=order, mode="nearest")


def common_field(shifts_px, shape: tuple[int, int],
                 order="fourier") -> tuple[tuple[slice, slice], np.ndarray]:
    """Return the crop and the (Y, X) mask of the pixels that every shifted image covers."""
    ny, nx = shape
    lo, hi = [0, 0], [ny, nx]
    for d in np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2):
        for axis, n in enumerate((ny, nx)):
            a, b = _valid_range(n, float(d[axis]), order)
            lo[axis], hi[axis] = max(lo[axis], a), min(hi[axis], b)
    crop = (slice(lo[0], max(lo[0], hi[0])), slice(lo[1], max(lo[1], hi[1])))
    common = np.zeros((ny, nx), bool)
    common[crop] = True
    return crop, common


def move_mask(mask, shift) -> np.ndarray:
    """Return a (Y, X) bool mask moved by the nearest whole pixels of ``shift`` (dy, dx).

    ``out[y, x] = mask[y - dy, x - dx]``: a mask in the reference image's frame moved by
    ``shifts_px[e]`` is where it lies in image ``e`` (False where that falls outside).

    Raises
    ------
    ValueError
        If ``mask`` is not a boolean 2-D array or ``shift`` not two finite numbers.

    Examples
    --------
    >>> m = np.zeros((3, 3), bool); m[1, 1] = True
    >>> np.argwhere(move_mask(m, (1.2, -0.8))).tolist()
    [[2, 0]]
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != bool:
        raise ValueError(f"mask must be a boolean (Y, X) array; got {m.dtype} {m.shape}. Pass e.g. "
                         "fit.mask, or compare a map with a threshold (a NaN is neither True nor False).")
    try:
        d = np.asarray(shift, dtype=np.float64)
    except (TypeError, ValueError):
        d = np.full(0, np.nan)
    if d.shape != (2,) or not np.isfinite(d).all():
        raise ValueError(f"shift must be two finite numbers (dy, dx) in pixels; got {shift!r}. Pass one row "
                         "of Alignment.shifts_px.")
    out = np.zeros_like(m)
    (ky, kx), (ny, nx) = (int(np.round(v)) for v in d), m.shape
    if abs(ky) < ny and abs(kx) < nx:
        out[max(ky, 0):ny + min(ky, 0), max(kx, 0):nx + min(kx, 0)] = \
            m[max(-ky, 0):ny + min(-ky, 0), max(-kx, 0):nx + min(-kx, 0)]
    return out


def repeat_field_edges(stack: np.ndarray, crop: tuple[slice, slice]) -> np.ndarray:
    """Fill the pixels of an (E, Y, X) stack outside ``crop`` with the crop's nearest edge pixel, in place.

    After alignment every image covers the common field; outside it each image holds its own
    edge, a different place of the sample at every energy, whose spectrum no mix of the
    references explains. Repeating the common field's edge instead gives every pixel one
    place's spectrum (what a denoiser or a low-rank background estimate sees there). Values
    are copied, so a block holding the pixels and the edge gives the same. An empty crop
    leaves the stack as it is.

    Returns
    -------
    numpy.ndarray
        ``stack`` itself.
    """
    (y0, y1), (x0, x1) = (crop[0].start, crop[0].stop), (crop[1].start, crop[1].stop)
    if y1 <= y0 or x1 <= x0:
        return stack
    stack[:, :y0] = stack[:, y0:y0 + 1]
    stack[:, y1:] = stack[:, y1 - 1:y1]
    stack[:, :, :x0] = stack[:, :, x0:x0 + 1]
    stack[:, :, x1:] = stack[:, :, x1 - 1:x1]
    return stack


def apply_alignment(transmission, alignment, *, order="fourier") -> AlignedStack:
    """Shift every image by ``-shifts_px[e]`` onto the reference image's grid.

    Parameters
    ----------
    transmission : array_like, shape (E, Y, X)
        The stack the alignment was estimated on (not modified).
    alignment : Alignment or array_like of shape (E, 2)
        The shifts (dy, dx), see :class:`Alignment`.
    order : {"fourier", "lanczos", 0, 1, 2, 3, 4, 5}
        Interpolation: "fourier" (default; :func:`fourier_shift_axis`, white noise stays white
        with its variance), "lanczos" (windowed sinc of radius :data:`LANCZOS_RADIUS`: local,
        noise variance 0.89-1 of itself per axis), 1 linear (local, but it averages
        neighbours: less and spatially correlated noise), 0 nearest pixel (no change to the
        noise, up to half a pixel of error), 2-5 splines (:func:`scipy.ndimage.shift`).

    Returns
    -------
    AlignedStack
        Aligned images (same dtype; outside the common field, the field's edge repeated:
        :func:`repeat_field_edges`), the mask and crop of the field that every image covers,
        and the per-image ``variance_factor`` of the noise.

    Notes
    -----
    Interpolation changes the noise: linear interpolation at fractional shift ``f`` reduces
    the per-pixel variance by ``(1 - f)**2 + f**2`` per axis and correlates neighbouring
    pixels. The shipped denoiser and its strength selection assume independent pixels; after
    linear interpolation its noise estimate falls to half and the selection turns the network
    down (issue 16), which the Fourier shift avoids. A per-pixel fit over energies that takes
    the noise variance of image e from the photon counts should multiply it by
    ``variance_factor[e]``; a noise estimate taken from the aligned images themselves already
    includes it. The spatial correlation matters for
    statistics pooled over regions (their variance is not reduced).

    Raises
    ------
    ValueError
        For a stack that is not (E, Y, X) finite numbers, a number of shifts that does not
        match, non-finite shifts, shifts as large as the field, or an unknown order.

    Examples
    --------
    >>> stack = np.zeros((2, 5, 5), np.float32)
    >>> stack[0, 2, 2] = stack[1, 3, 1] = 1.0  # image 1 moved by (dy, dx) = (1, -1)
    >>> out = apply_alignment(stack, [[0, 0], [1, -1]], order=1)
    >>> bool(out.transmission[1, 2, 2]), out.crop
    (True, (slice(0, 4, None), slice(1, 5, None)))
    """
    stack = check_stack(transmission, name="transmission")
    if not np.issubdtype(stack.dtype, np.floating):
        stack = stack.astype(np.float64)
    if order not in ORDERS or isinstance(order, bool):
        raise ValueError(f"order must be one of {ORDERS} (Fourier, Lanczos, 0 nearest, 1 linear, "
                         f"2-5 splines); got {order!r}.")
    n_e, ny, nx = stack.shape
    shifts = checked_shifts(alignment, n_e, (ny, nx))
    out = np.empty_like(stack)

    def one(e: int) -> None:
        out[e] = shift_image(stack[e], shifts[e], order)

    if order == "fourier":     # scipy.fft already uses every available core within an image
        for e in range(n_e):
            one(e)
    else:                      # numpy releases the GIL: one image per thread
        with ThreadPoolExecutor(max_workers=min(n_e, available_cores())) as pool:
            list(pool.map(one, range(n_e)))
    crop, common = common_field(shifts, (ny, nx), order)
    repeat_field_edges(out, crop)
    used = np.round(shifts) if order == 0 else shifts
    return AlignedStack(transmission=out, common_mask=common, crop=crop,
                        variance_factor=interpolation_variance(used, order=order), order=order)
