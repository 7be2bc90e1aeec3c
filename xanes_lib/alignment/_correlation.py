"""Private helpers of the registration: feature images, their spectra, correlation peaks.

Feature images are real, zero-mean, unit-norm and tapered to zero at the border; their
spectra are half spectra (``numpy.fft.rfft2``) in complex64. A shift ``s`` of a feature
image (content moved by ``+s``) multiplies its spectrum by :func:`shift_phase` ``(s)``.
The cross-correlation ``cc(r) = sum_x f(x + r) g(x)`` of two feature images is the inverse
transform of ``F * conj(G)``; it peaks at the displacement of ``f`` relative to ``g``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from ..resources import available_cores

#: Transmission floor before the logarithm (counts can make it zero or negative).
T_FLOOR = 1e-3
#: Share of each side of the field over which the feature images taper to zero.
TAPER = 0.125
#: Feature kinds: band-passed absorbance (difference of Gaussians), or its gradient magnitude.
FEATURES = ("bandpass", "gradient")
#: Ratio of the wide to the narrow Gaussian of the "bandpass" features.
BANDPASS_RATIO = 6.0


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (the remainder rows/columns are dropped)."""
    if factor == 1:
        return np.asarray(image, dtype=np.float32)
    ny, nx = (n // factor for n in image.shape)
    blocks = image[:ny * factor, :nx * factor].reshape(ny, factor, nx, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _tukey(n: int, fraction: float) -> np.ndarray:
    """1-D Tukey window: a raised-cosine ramp over ``fraction`` of each end, flat between.

    The same as ``scipy.signal.windows.tukey(n, 2 * fraction)``, written out because
    scipy.signal imports scipy.stats, which fails to import where torch is blocked (the
    rooms other than denoising must import there).
    """
    alpha = 2.0 * fraction
    if n < 2 or alpha <= 0:
        return np.ones(n)
    width = int(np.floor(alpha * (n - 1) / 2.0))
    k = np.arange(n, dtype=np.float64)
    w = np.ones(n)
    w[:width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * k[:width + 1] / alpha / (n - 1))))
    tail = k[n - width - 1:]
    w[n - width - 1:] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * tail / alpha / (n - 1))))
    return w


def taper(shape: tuple[int, int], fraction: float = TAPER) -> np.ndarray:
    """Separable Tukey window that falls to zero over ``fraction`` of each side."""
    wy = _tukey(shape[0], fraction).astype(np.float32)
    wx = _tukey(shape[1], fraction).astype(np.float32)
    return wy[:, None] * wx[None, :]


def absorbance_image(transmission: np.ndarray, sigma: float) -> np.ndarray:
    """``-ln`` of the Gaussian-smoothed transmission, floored at :data:`T_FLOOR`."""
    t = ndimage.gaussian_filter(transmission, sigma, mode="nearest") if sigma > 0 else transmission
    return -np.log(np.maximum(t, T_FLOOR, dtype=np.float32))


def feature_spectrum(transmission: np.ndarray, *, sigma: float, kind: str, window: np.ndarray) -> np.ndarray:
    """Half spectrum (complex64) of the edge-enhanced absorbance: zero mean, unit norm, tapered.

    ``kind="bandpass"``: the smoothed absorbance minus its Gaussian blur of width
    ``BANDPASS_RATIO * max(sigma, 1)`` (a difference of Gaussians, in real space so that
    the taper does not leave a fixed pattern); ``kind="gradient"``: the gradient magnitude of
    the smoothed absorbance. Either is then tapered by ``window``.
    """
    a = absorbance_image(transmission, sigma)
    if kind == "gradient":
        gy, gx = np.gradient(a)
        f = np.hypot(gy, gx)
    else:
        f = a - ndimage.gaussian_filter(a, BANDPASS_RATIO * max(sigma, 1.0), mode="nearest", truncate=3.0)
    f -= np.sum(f * window) / max(float(np.sum(window)), 1e-12)
    f *= window
    spec = scipy.fft.rfft2(f, workers=available_cores()).astype(np.complex64, copy=False)
    norm = math.sqrt(norm2(spec, f.shape))
    return spec / np.float32(norm) if norm > 0 else spec


def _column_weights(shape: tuple[int, int]) -> np.ndarray:
    """Multiplicity of each half-spectrum column in the full spectrum (1 or 2)."""
    w = np.full(shape[1] // 2 + 1, 2.0)
    w[0] = 1.0
    if shape[1] % 2 == 0:
        w[-1] = 1.0
    return w


def norm2(spec: np.ndarray, shape: tuple[int, int]) -> float:
    """Squared norm of the real image whose half spectrum is ``spec`` (Parseval)."""
    power = np.abs(spec) ** 2
    return float(np.sum(power.sum(axis=0) * _column_weights(shape)) / (shape[0] * shape[1]))


def shift_phase(shape: tuple[int, int], shift) -> np.ndarray:
    """Half-spectrum factor that moves an image's content by ``shift`` = (dy, dx) pixels."""
    ky = scipy.fft.fftfreq(shape[0])
    kx = scipy.fft.rfftfreq(shape[1])
    py = np.exp(-2j * np.pi * ky * shift[0]).astype(np.complex64)
    px = np.exp(-2j * np.pi * kx * shift[1]).astype(np.complex64)
    return py[:, None] * px[None, :]


#: Largest ``m * n * k`` of one matrix product: OpenBLAS runs smaller products on one thread.
#: Its threads cost milliseconds per call to wake on a busy machine, far more than these
#: small products take, so larger ones are split into blocks below this size.
_BLOCK_MNK = 1 << 16


def _blocked_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multiply ``a @ b`` in blocks small enough to stay on one BLAS thread."""
    m, k = a.shape
    n = b.shape[1]
    if m * n * k <= _BLOCK_MNK:
        return a @ b
    if m >= k:                                        # split the rows of a
        step = max(1, _BLOCK_MNK // (n * k))
        return np.concatenate([a[i:i + step] @ b for i in range(0, m, step)])
    step = max(1, _BLOCK_MNK // (m * n))              # split the inner dimension
    out = a[:, :step] @ b[:step]
    for i in range(step, k, step):
        out += a[:, i:i + step] @ b[i:i + step]
    return out


def _upsampled_correlation(cross: np.ndarray, shape: tuple[int, int], center, upsample: int,
                           half_width: int) -> np.ndarray:
    """Correlation on a grid of step ``1/upsample`` around ``center`` (matrix DFT, no padding)."""
    offsets = np.arange(-half_width, half_width + 1) / upsample
    ry = center[0] + offsets
    rx = center[1] + offsets
    ky = scipy.fft.fftfreq(shape[0])
    kx = scipy.fft.rfftfreq(shape[1])
    ey = np.exp(2j * np.pi * np.outer(ry, ky)).astype(np.complex64)
    ex = (np.exp(2j * np.pi * np.outer(kx, rx)) * _column_weights(shape)[:, None]).astype(np.complex64)
    return np.real(_blocked_matmul(ey, _blocked_matmul(cross, ex))) / (shape[0] * shape[1])


def _parabola(c_minus: float, c0: float, c_plus: float) -> float:
    """Vertex offset (in grid steps, within +-0.5) of a parabola through three samples."""
    denom = c_minus - 2.0 * c0 + c_plus
    if denom >= 0:
        return 0.0
    return float(np.clip(0.5 * (c_minus - c_plus) / denom, -0.5, 0.5))


def correlation_peak(cross: np.ndarray, shape: tuple[int, int], *, upsample: int,
                     max_shift: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Sub-pixel position and height of the highest correlation peak within ``max_shift``.

    Parameters
    ----------
    cross : numpy.ndarray
        ``F * conj(G)``, half spectrum of the correlation of two feature images.
    shape : tuple of int
        Shape of the feature images.
    upsample : int
        Sub-pixel grid: the peak is located to ``1/upsample`` pixel, then refined by a parabola.
    max_shift : tuple of float
        Largest displacement searched, per axis (pixels).

    Returns
    -------
    shift : numpy.ndarray, shape (2,)
        Displacement (dy, dx) of the first image relative to the second, in pixels.
    height : float
        Correlation at the peak (the normalised cross-correlation for unit-norm images).
    """
    cc = scipy.fft.irfft2(cross, s=shape, workers=available_cores())
    offsets = [np.rint(scipy.fft.fftfreq(n) * n).astype(int) for n in shape]
    rows = np.flatnonzero(np.abs(offsets[0]) <= max_shift[0])
    cols = np.flatnonzero(np.abs(offsets[1]) <= max_shift[1])
    sub = cc[np.ix_(rows, cols)]
    i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
    center = np.array([offsets[0][rows[i]], offsets[1][cols[j]]], dtype=np.float64)
    height = float(sub[i, j])
    if upsample > 1:
        half = int(math.ceil(0.75 * upsample))
        up = _upsampled_correlation(cross, shape, center, upsample, half)
        i, j = np.unravel_index(int(np.argmax(up)), up.shape)
        height = float(up[i, j])
        di = _parabola(up[i - 1, j], up[i, j], up[i + 1, j]) if 0 < i < up.shape[0] - 1 else 0.0
        dj = _parabola(up[i, j - 1], up[i, j], up[i, j + 1]) if 0 < j < up.shape[1] - 1 else 0.0
        center = center + (np.array([i, j]) - half + np.array([di, dj])) / upsample
    return center, height


def shift_std(spec: np.ndarray, template: np.ndarray, shift, shape: tuple[int, int]) -> np.ndarray:
    """Estimate the standard error (dy, dx) of a correlation shift from the residual's spectrum.

    Linearising the correlation peak: the shift error is ``-g / H`` with ``g`` the
    correlation gradient due to the noise and ``H`` the peak curvature. The variance of
    ``g`` is ``sum_k P(k) (2 pi k)^2 |T(k)|^2 / N^2`` for noise of power spectrum ``P``,
    estimated by the periodogram of the residual ``F shifted back - alpha T`` (noise of both
    images plus any contrast mismatch, so the error is not underestimated).
    """
    n = shape[0] * shape[1]
    w = _column_weights(shape)
    aligned = spec * shift_phase(shape, -np.asarray(shift, dtype=np.float64))
    cross = np.real(aligned * np.conj(template))
    t_power = np.abs(template) ** 2
    alpha = float(np.sum(cross.sum(axis=0) * w)) / max(float(np.sum(t_power.sum(axis=0) * w)), 1e-30)
    aligned -= np.complex64(alpha) * template
    noise = np.abs(aligned) ** 2 * t_power
    ky2 = (2 * np.pi * scipy.fft.fftfreq(shape[0])) ** 2
    kx2 = (2 * np.pi * scipy.fft.rfftfreq(shape[1])) ** 2 * w
    # Plain sums, not BLAS products (see _blocked_matmul).
    var_g = np.array([np.sum(ky2 * (noise * w).sum(axis=1)), np.sum(noise.sum(axis=0) * kx2)]) / n ** 2
    curvature = np.array([np.sum(ky2 * (cross * w).sum(axis=1)), np.sum(cross.sum(axis=0) * kx2)]) / n
    with np.errstate(divide="ignore"):
        return np.where(curvature != 0, np.sqrt(var_g) / np.abs(curvature), np.inf)
