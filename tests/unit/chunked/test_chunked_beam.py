"""The chunked beam-background division equals the in-memory one (same stages, block by block)."""

import dask
import dask.array as da
import numpy as np
import pytest

from xanes_lib import simulation
from xanes_lib.chunked import divide_beam_background_chunked
from xanes_lib.denoising import divide_beam_background
from xanes_lib.spectra import default_references

TOL = 1e-6
#: Spatial chunks that do not divide the 96 x 104 field.
CHUNKS = (37, 45)


@pytest.fixture(scope="module")
def ni_stack():
    """A simulated Ni stack (E x 96 x 104, float32), its energies and references."""
    cfg = simulation.SimulationConfig(element="Ni", dose=2000.0).replace(phantom_shape=(96, 104),
                                                                         phantom_pixel_size_nm=150.0)
    stack, _ = simulation.simulate_stack(cfg, seed=3)
    return stack.transmission, np.asarray(stack.energies_eV), default_references("Ni")


@pytest.fixture(scope="module")
def in_memory(ni_stack):
    t, e, refs = ni_stack
    return divide_beam_background(t, e, refs)


def _lazy(t, chunks=CHUNKS):
    return da.from_array(t, chunks=(t.shape[0], *chunks) if len(chunks) == 2 else chunks)


@pytest.mark.parametrize("chunks", [CHUNKS, ((30, 37), (50, 46), (20, 84))],
                         ids=["every-energy", "energies-split"])
def test_chunked_equals_in_memory(ni_stack, in_memory, chunks, tmp_path):
    t, e, refs = ni_stack
    before = t.copy()
    x = _lazy(t, chunks)
    out, note = divide_beam_background_chunked(x, e, refs, workdir=tmp_path)
    assert isinstance(out, da.Array) and out.chunks == x.chunks
    assert note == in_memory[1] and note.startswith("beam background divided out (rank ")
    corrected = out.compute()
    assert corrected.dtype == in_memory[0].dtype
    np.testing.assert_allclose(corrected, in_memory[0], rtol=0, atol=TOL)
    np.testing.assert_array_equal(t, before)  # input not modified
    np.testing.assert_array_equal(x.compute(), before)


def test_chunked_same_under_synchronous_scheduler(ni_stack, tmp_path):
    t, e, refs = ni_stack
    threaded = divide_beam_background_chunked(_lazy(t), e, refs, workdir=tmp_path)[0].compute()
    with dask.config.set(scheduler="synchronous"):
        out, _ = divide_beam_background_chunked(_lazy(t), e, refs, workdir=tmp_path)
        synchronous = out.compute()
    np.testing.assert_array_equal(synchronous, threaded)


def test_chunked_float64_and_nonpositive_pixels_as_in_memory(ni_stack, tmp_path):
    t, e, refs = ni_stack
    t = t.astype(np.float64)
    t[:, 10, 10] = -1.0
    t[3, 50, 60] = 0.0
    ref, ref_note = divide_beam_background(t, e, refs)
    out, note = divide_beam_background_chunked(_lazy(t), e, refs, workdir=tmp_path)
    corrected = out.compute()
    assert note == ref_note and corrected.dtype == np.float64
    np.testing.assert_allclose(corrected, ref, rtol=0, atol=TOL)


def test_chunked_leaves_nonfinite_stack_as_in_memory(ni_stack, tmp_path):
    t, e, refs = ni_stack
    t = t.copy()
    t[5, 40, 50] = np.nan
    t[2, 90, 100] = np.inf  # the first in C order, in another block
    x = _lazy(t)
    out, note = divide_beam_background_chunked(x, e, refs, workdir=tmp_path)
    assert out is x
    assert note == divide_beam_background(t, e, refs)[1]
    assert "first at index (2, 90, 100)" in note
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_chunked_without_empty_field_returns_input(ni_stack, tmp_path):
    _, e, refs = ni_stack
    rng = np.random.default_rng(0)
    stripes = ((np.arange(70) // 6) % 2 == 0).astype(float)  # sample stripes 6 px apart: none empty
    t = np.exp(-(0.5 + stripes + 0.01 * rng.standard_normal((e.size, 60, 70)))).astype(np.float32)
    ref, ref_note = divide_beam_background(t, e, refs)
    assert ref is t and ref_note.startswith("beam background left in: ")
    x = _lazy(t)
    out, note = divide_beam_background_chunked(x, e, refs, workdir=tmp_path)
    assert out is x and note == ref_note


def test_chunked_bad_shape_refused_as_in_memory(ni_stack, tmp_path):
    t, e, refs = ni_stack
    said = rf"transmission has {t.shape[0] - 1} images but there are {e.size} energies"
    with pytest.raises(ValueError, match=said):
        divide_beam_background_chunked(_lazy(t[:-1]), e, refs, workdir=tmp_path)
    with pytest.raises(ValueError, match=said):
        divide_beam_background(t[:-1], e, refs)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_chunked_drifting_stack_equals_in_memory(tmp_path):
    """A drifting stack given as measured: the background in the detector frame (issue 16),
    block by block as in memory."""
    cfg = simulation.SimulationConfig(element="Ni", dose=1000.0, blur_px=1.0, background_amplitude=0.03,
                                      drift_px=1.5).replace(phantom_shape=(96, 104),
                                                            phantom_pixel_size_nm=150.0)
    stack, truth = simulation.simulate_stack(cfg, seed=0)
    t, e, refs = stack.transmission, np.asarray(stack.energies_eV), default_references("Ni")
    shifts = truth.drift_px - truth.drift_px[0]
    assert np.abs(shifts).max() > 2.0
    ref, ref_note = divide_beam_background(t, e, refs, shifts_px=shifts)
    still, _ = divide_beam_background(t, e, refs)  # the estimate that ignores the drift differs
    out, note = divide_beam_background_chunked(_lazy(t), e, refs, shifts_px=shifts, workdir=tmp_path)
    assert note == ref_note
    np.testing.assert_allclose(out.compute(), ref, rtol=0, atol=TOL)
    assert np.abs(still - ref).max() > 100 * TOL
    # no drift: the call without shifts
    zero, _ = divide_beam_background_chunked(_lazy(t), e, refs, shifts_px=np.zeros_like(shifts),
                                             workdir=tmp_path)
    np.testing.assert_allclose(zero.compute(), still, rtol=0, atol=TOL)
