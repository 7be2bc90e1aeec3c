"""Tests of xanes_lib.io.flatfield."""

import numpy as np
import pytest

from xanes_lib.io import flat_field_correct

E, Y, X = 4, 3, 5


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    dark = rng.uniform(90, 110, (Y, X))
    flat = dark + rng.uniform(800, 1000, (Y, X))
    transmission = rng.uniform(0.2, 1.0, (E, Y, X))
    images = dark + transmission * (flat - dark)
    return images, flat, dark, transmission


def test_recovers_transmission_in_float32():
    images, flat, dark, transmission = make_inputs()
    out = flat_field_correct(images, flat, dark)
    assert out.dtype == np.float32 and out.shape == (E, Y, X)
    np.testing.assert_allclose(out, transmission, rtol=1e-5)


def test_per_energy_frames_and_no_dark():
    images, flat, dark, transmission = make_inputs(1)
    flat3 = np.broadcast_to(flat, (E, Y, X)).copy()
    dark3 = np.broadcast_to(dark, (E, Y, X)).copy()
    np.testing.assert_allclose(flat_field_correct(images, flat3, dark3), transmission, rtol=1e-5)
    np.testing.assert_allclose(flat_field_correct(images, flat), images / flat, rtol=1e-6)


def test_integer_counts():
    images = np.full((E, Y, X), 600, np.uint16)
    flat, dark = np.full((Y, X), 1100, np.uint16), np.full((Y, X), 100, np.uint16)
    np.testing.assert_array_equal(flat_field_correct(images, flat, dark), np.full((E, Y, X), 0.5, np.float32))


def test_inputs_not_modified():
    images, flat, dark, _ = make_inputs(2)
    images32 = images.astype(np.float32)
    copies = [a.copy() for a in (images32, flat, dark)]
    out = flat_field_correct(images32, flat, dark)
    for original, copy in zip((images32, flat, dark), copies, strict=True):
        np.testing.assert_array_equal(original, copy)
    assert not np.shares_memory(out, images32)


def test_zero_flat_field_pixels():
    images, flat, dark, _ = make_inputs(3)
    flat = flat.copy()
    flat[1, 2] = dark[1, 2]
    flat[2, 4] = dark[2, 4] - 1.0
    with pytest.raises(ValueError, match=r"zero flat field: flat - dark <= 0 at 2 pixel\(s\) of 15, "
                                         r"first at index \(1, 2\)"):
        flat_field_correct(images, flat, dark)


@pytest.mark.parametrize("which, shape", [("flat", (Y, X + 1)), ("flat", (E + 1, Y, X)),
                                          ("dark", (X, Y)), ("dark", (Y,))])
def test_shape_mismatch(which, shape):
    images, flat, dark, _ = make_inputs()
    args = {"flat": flat, "dark": dark}
    args[which] = np.ones(shape)
    with pytest.raises(ValueError, match=rf"{which} has shape .* images have shape \(4, 3, 5\)"):
        flat_field_correct(images, **args)


def test_images_must_be_3d():
    images, flat, dark, _ = make_inputs()
    with pytest.raises(ValueError, match="images must be 3-D"):
        flat_field_correct(images[0], flat, dark)


@pytest.mark.parametrize("which", ["images", "flat", "dark"])
def test_nonfinite_inputs(which):
    images, flat, dark, _ = make_inputs()
    args = {"images": images.copy(), "flat": flat.copy(), "dark": dark.copy()}
    args[which][(0,) * args[which].ndim] = np.nan
    with pytest.raises(ValueError, match=rf"{which} holds 1 NaN or inf value\(s\), first at index \(0, 0"):
        flat_field_correct(args["images"], args["flat"], args["dark"])
