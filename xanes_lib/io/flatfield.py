"""Dark and flat-field correction of raw transmission images.

The data contract stores ``img_xanes`` as transmission, ``(I - dark) / (flat - dark)``;
this module turns raw detector counts into that quantity.
"""

from __future__ import annotations

import numpy as np

from ..validate import check_stack, find_nonfinite

__all__ = ["flat_field_correct"]


def _as_real_array(values, name: str) -> np.ndarray:
    a = np.asarray(values)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers (integer or float counts); got dtype {a.dtype}. "
                         f"Convert it, e.g. np.asarray({name}, dtype=np.float32).")
    return a


def _check_finite(a: np.ndarray, name: str) -> None:
    count, first = find_nonfinite(a)
    if count:
        raise ValueError(f"{name} holds {count} NaN or inf value(s), first at index {first}; "
                         "repair those pixels (e.g. replace them by a median of their neighbours) "
                         "before flat-field correction.")


def _check_frame_shape(a: np.ndarray, name: str, images_shape: tuple[int, ...]) -> None:
    if a.shape == images_shape or a.shape == images_shape[1:]:
        return
    raise ValueError(f"{name} has shape {a.shape}, but the images have shape {images_shape}: it must be "
                     f"one averaged frame {images_shape[1:]} (used for every energy) or one frame per "
                     f"energy {images_shape}. Average repeated frames first (e.g. {name}.mean(axis=0)) "
                     "and check that rows and columns are not swapped.")


def flat_field_correct(images, flat, dark=None) -> np.ndarray:
    """Convert raw images to transmission, ``(images - dark) / (flat - dark)``.

    The arithmetic is done in float32 on new arrays; the inputs are never modified.

    Parameters
    ----------
    images : array_like, shape (E, Y, X)
        Raw detector counts with the sample in the beam, one image per energy.
    flat : array_like, shape (Y, X) or (E, Y, X)
        Averaged flat field (beam without sample, FXI ``img_bkg``); a single frame is used
        for every energy.
    dark : array_like, shape (Y, X) or (E, Y, X), optional
        Averaged dark frame (no beam, FXI ``img_dark``). None means no dark offset (zero).

    Returns
    -------
    numpy.ndarray, shape (E, Y, X), float32
        Transmission.

    Raises
    ------
    ValueError
        If the images are not 3-D, a frame shape matches neither ``(Y, X)`` nor
        ``(E, Y, X)``, an input holds NaN or inf or a non-numeric dtype, or ``flat - dark``
        is zero or negative anywhere ("zero flat field"; the count and the first index are
        given).

    Examples
    --------
    >>> import numpy as np
    >>> images = np.full((2, 2, 2), 60.0)
    >>> flat, dark = np.full((2, 2), 110.0), np.full((2, 2), 10.0)
    >>> flat_field_correct(images, flat, dark)[0]
    array([[0.5, 0.5],
           [0.5, 0.5]], dtype=float32)
    """
    images = check_stack(_as_real_array(images, "images"), name="images", allow_nonfinite=True)
    flat = _as_real_array(flat, "flat")
    _check_frame_shape(flat, "flat", images.shape)
    if dark is not None:
        dark = _as_real_array(dark, "dark")
        _check_frame_shape(dark, "dark", images.shape)
    _check_finite(images, "images")
    _check_finite(flat, "flat")
    if dark is not None:
        _check_finite(dark, "dark")

    flat32 = np.asarray(flat, dtype=np.float32)
    dark32 = np.zeros((), dtype=np.float32) if dark is None else np.asarray(dark, dtype=np.float32)
    denominator = flat32 - dark32          # a new array; flat and dark stay untouched
    bad = denominator <= 0
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise ValueError(f"zero flat field: flat - dark <= 0 at {n_bad} pixel(s) of "
                         f"{bad.size}, first at index {first} (flat shape {flat.shape}). "
                         "Check that flat and dark are not swapped, and repair dead pixels "
                         "(e.g. replace them by the median of their neighbours) before correcting.")
    out = np.asarray(images, dtype=np.float32) - dark32   # a new array
    out /= denominator
    return out
