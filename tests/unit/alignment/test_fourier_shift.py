"""The Fourier shift of apply_alignment: exact for band-limited images, white noise stays white,
and outside the common field every image repeats the field's edge (issue 16)."""

import numpy as np
import pytest

from xanes_lib.alignment import (
    ORDERS,
    apply_alignment,
    fourier_shift_axis,
    interpolation_variance,
    repeat_field_edges,
)


def _neighbour_correlation(image: np.ndarray) -> float:
    """Correlation of horizontally adjacent pixels."""
    a, b = image[:, :-1].ravel(), image[:, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _blob(shape, cy, cx, width=6.0):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))


@pytest.fixture(scope="module")
def white_noise():
    return np.random.default_rng(11).standard_normal((2, 256, 256))


def test_fourier_shift_keeps_white_noise_white_where_linear_interpolation_does_not(white_noise):
    shifts = [[0.0, 0.0], [0.5, 0.5]]           # the worst case for interpolation
    fourier = apply_alignment(white_noise, shifts)
    linear = apply_alignment(white_noise, shifts, order=1)
    inner = (1, slice(8, -8), slice(8, -8))
    assert np.var(fourier.transmission[inner]) == pytest.approx(1.0, abs=0.03)
    assert abs(_neighbour_correlation(fourier.transmission[inner])) < 0.03
    # Linear interpolation at half a pixel: a quarter of the variance, neighbours correlated.
    assert np.var(linear.transmission[inner]) == pytest.approx(0.25, rel=0.05)
    assert _neighbour_correlation(linear.transmission[inner]) > 0.4      # 0.5 in theory
    assert fourier.variance_factor[1] == pytest.approx(np.var(fourier.transmission[inner]), abs=0.03)


@pytest.mark.parametrize("order", ["fourier", "lanczos", 1, 3])
def test_variance_factor_matches_the_noise_of_shifted_white_noise(white_noise, order):
    shifts = np.array([[0.0, 0.0], [0.3, 0.6]])
    out = apply_alignment(white_noise, shifts, order=order)
    ys, xs = out.crop
    measured = np.var(out.transmission[1, ys, xs][4:-4, 4:-4])
    expected = interpolation_variance(shifts, order=order)
    assert expected[0] == 1.0
    assert measured == pytest.approx(expected[1], rel=0.05)


def test_fourier_variance_factor_is_close_to_one_for_any_fraction():
    fractions = np.linspace(0.0, 0.95, 20)
    factors = interpolation_variance(np.stack([fractions, fractions], axis=1))
    assert np.all(factors > 0.94) and np.all(factors <= 1.0 + 1e-9)


def test_fourier_shift_moves_a_smooth_image_exactly():
    """Image e shows the reference content moved by (dy, dx); aligning brings it back."""
    shape, (dy, dx) = (96, 80), (1.3, -2.7)
    reference = _blob(shape, 45.0, 40.0)
    moved = _blob(shape, 45.0 + dy, 40.0 + dx)
    out = apply_alignment(np.stack([reference, moved]), [[0.0, 0.0], [dy, dx]])
    np.testing.assert_allclose(out.transmission[1], reference, atol=1e-4)
    # Linear interpolation misses the peak by far more.
    linear = apply_alignment(np.stack([reference, moved]), [[0.0, 0.0], [dy, dx]], order=1)
    error = np.abs(out.transmission[1] - reference).max()
    assert np.abs(linear.transmission[1] - reference).max() > 10 * error


def test_fourier_shift_along_one_axis_follows_the_convention():
    """``out[i] = line[i + shift]`` on every line of a block (a peak at 64 moves to 63.75)."""
    x = np.arange(128.0)
    line = 2.0 + np.exp(-(x - 64.0) ** 2 / (2 * 5.0 ** 2))
    out = fourier_shift_axis(line[None].repeat(3, 0), 0.25, axis=1)
    expected = 2.0 + np.exp(-(x + 0.25 - 64.0) ** 2 / (2 * 5.0 ** 2))
    np.testing.assert_allclose(out, np.broadcast_to(expected, (3, 128)), atol=1e-6)
    np.testing.assert_array_equal(fourier_shift_axis(line, 0.0, axis=0), line)
    assert fourier_shift_axis(line.astype(np.float32), 0.3, axis=0).dtype == np.float32


def test_outside_the_common_field_every_image_repeats_the_field_edge():
    rng = np.random.default_rng(3)
    stack = rng.random((3, 40, 50)).astype(np.float32) + 0.5
    out = apply_alignment(stack, [[0.0, 0.0], [2.4, -1.6], [-1.2, 3.3]])
    (y0, y1), (x0, x1) = (out.crop[0].start, out.crop[0].stop), (out.crop[1].start, out.crop[1].stop)
    assert (y0, y1, x0, x1) == (2, 37, 2, 46)
    t = out.transmission
    iy = np.clip(np.arange(40), y0, y1 - 1)
    ix = np.clip(np.arange(50), x0, x1 - 1)
    # Every pixel holds the spectrum (all energies) of its nearest pixel of the common field.
    np.testing.assert_array_equal(t, t[:, iy][:, :, ix])


def test_repeat_field_edges_leaves_a_full_or_empty_field_alone():
    stack = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    np.testing.assert_array_equal(repeat_field_edges(stack.copy(), (slice(0, 3), slice(0, 4))), stack)
    np.testing.assert_array_equal(repeat_field_edges(stack.copy(), (slice(2, 2), slice(0, 4))), stack)


def test_unknown_order_is_refused():
    assert "fourier" in ORDERS
    with pytest.raises(ValueError, match="order must be one of"):
        apply_alignment(np.ones((2, 8, 8)), np.zeros((2, 2)), order="cubic")


def test_fourier_shift_of_a_sharp_dark_edge_stays_positive():
    # A step from a thick particle (T = 0.02) to the empty field: the phase ramp rings (Gibbs),
    # but a transmission must not become negative.
    line = np.where(np.arange(128) < 64, 0.02, 1.0)
    image = np.tile(line, (8, 1))
    out = fourier_shift_axis(image, 0.5, axis=1)
    assert out.min() >= 0.01
    assert 0.02 < out[0, 63] < 1.0 or 0.02 < out[0, 64] < 1.0  # the edge itself is interpolated


def test_lanczos_shift_is_local_keeps_most_noise_and_moves_a_smooth_image():
    """The windowed sinc of the chunked pipeline: near the Fourier shift on smooth content, most
    of the noise variance kept at the worst (half-pixel) shift, and a pixel depends only on
    input pixels within ``|shift| + LANCZOS_RADIUS``."""
    from xanes_lib.alignment import LANCZOS_RADIUS, shift_image

    shape, (dy, dx) = (96, 80), (1.3, -2.7)
    reference = _blob(shape, 45.0, 40.0)
    moved = _blob(shape, 45.0 + dy, 40.0 + dx)
    out = apply_alignment(np.stack([reference, moved]), [[0.0, 0.0], [dy, dx]], order="lanczos")
    np.testing.assert_allclose(out.transmission[1], reference, atol=2e-3)
    noise = np.random.default_rng(3).standard_normal((2, 128, 128))
    half = apply_alignment(noise, [[0.0, 0.0], [0.5, 0.5]], order="lanczos").transmission[1, 8:-8, 8:-8]
    assert 0.75 < np.var(half) < 0.85                         # linear interpolation: 0.25
    assert abs(_neighbour_correlation(half)) < 0.2             # linear: 0.5
    # locality: changing a pixel farther than |shift| + radius leaves the output pixel alone
    image = noise[0].copy()
    base = shift_image(image, (0.4, -0.6), "lanczos")[64, 64]
    image[64, 64 + 1 + LANCZOS_RADIUS + 1] += 100.0
    image[64 + 1 + LANCZOS_RADIUS, 64] += 100.0
    assert shift_image(image, (0.4, -0.6), "lanczos")[64, 64] == base


def _gathered(image: np.ndarray, shift, taps) -> np.ndarray:
    """The definition of a separable shift: ``sum_k w_k image[clip(i + floor(d) + k)]`` per axis."""
    out = image.astype(np.float64)
    for axis, d in enumerate(shift):
        n, base = image.shape[axis], int(np.floor(d))
        offsets, weights = taps(d - base)
        out = sum(w * np.take(out, np.clip(np.arange(n) + base + k, 0, n - 1), axis=axis)
                  for k, w in zip(offsets, weights, strict=True))
    return out


@pytest.mark.parametrize("shift", [(0.3, -0.7), (-5.5, 4.25), (12.6, -0.01), (2.0, -3.4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_shifts_equal_their_definition_at_the_edges_too(shift, dtype):
    from xanes_lib.alignment.shifts import _lanczos_taps, _linear_taps, shift_image
    image = np.random.default_rng(3).random((40, 33)).astype(dtype)
    for order, taps in ((1, _linear_taps), ("lanczos", _lanczos_taps)):
        out = shift_image(image, shift, order)
        assert out.dtype == dtype
        atol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out, _gathered(image, shift, taps), atol=atol)


def test_a_float32_fourier_shift_matches_the_float64_one():
    image = np.random.default_rng(5).random((64, 48))
    single = fourier_shift_axis(image.astype(np.float32), 2.37, axis=1)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, fourier_shift_axis(image, 2.37, axis=1), atol=2e-5)
