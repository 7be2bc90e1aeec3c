"""The multiplicative beam background."""

import numpy as np
import pytest

from xanes_lib.simulation import PATTERNS, beam_background, illumination_profile


@pytest.mark.parametrize("patterns", [("gradient", "blobs"), ("bands",), ("rings",), PATTERNS])
def test_background_mean_one_rms_amplitude(patterns):
    b = beam_background((96, 128), 12, 7, amplitude=0.03, patterns=patterns)
    assert b.shape == (12, 96, 128)
    np.testing.assert_allclose(b.mean(axis=(1, 2)), 1.0, atol=1e-12)
    assert np.sqrt(np.mean((b - 1) ** 2)) == pytest.approx(0.03, rel=1e-6)


def test_background_power_at_low_spatial_frequencies():
    b = beam_background((128, 128), 6, 3, amplitude=0.02, patterns=PATTERNS)
    power = np.abs(np.fft.fft2(b - 1.0)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    low = np.hypot(fy, fx) < 0.05  # cycles per pixel: periods longer than 20 pixels
    share = power[:, low].sum() / power.sum()
    assert share > 0.95, share
    # Pure noise of the same size would put only ~1 % of its power there.
    noise = np.abs(np.fft.fft2(np.random.default_rng(0).standard_normal((128, 128)))) ** 2
    assert noise[low].sum() / noise.sum() < 0.05


def test_background_differs_between_energies_but_correlates():
    b = beam_background((64, 64), 20, 1, amplitude=0.02, energy_correlation=0.8)
    d = (b - 1).reshape(20, -1)
    corr = [np.corrcoef(d[i], d[i + 1])[0, 1] for i in range(19)]
    assert 0.3 < np.mean(corr) < 0.999
    assert not np.allclose(b[0], b[1])


def test_background_same_seed_same_field():
    np.testing.assert_array_equal(beam_background((32, 32), 4, 5), beam_background((32, 32), 4, 5))
    assert not np.array_equal(beam_background((32, 32), 4, 5), beam_background((32, 32), 4, 6))


def test_zero_amplitude_is_one():
    np.testing.assert_array_equal(beam_background((16, 16), 3, 0, amplitude=0.0), 1.0)


@pytest.mark.parametrize("kwargs, match", [({"amplitude": -0.1}, "amplitude"),
                                           ({"patterns": ("stripes",)}, "unknown background pattern"),
                                           ({"energy_correlation": 1.5}, "energy_correlation")])
def test_background_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        beam_background((16, 16), 3, 0, **kwargs)


def test_illumination_profile_mean_one_positive():
    p = illumination_profile((64, 80), 0, falloff=0.3)
    assert p.mean() == pytest.approx(1.0) and p.min() > 0.5
