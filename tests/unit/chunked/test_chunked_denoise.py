"""The chunked denoiser equals the in-memory one (same stages, block by block on a dask array)."""

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from xanes_lib import denoising, simulation
from xanes_lib.chunked.denoise import ChunkedDenoiseResult, denoise_chunked

ROOT = Path(__file__).resolve().parents[3]
#: Tiles of 128 px with a 32 px margin: inner regions of 64 px, 4 x 3 tiles on the stack below.
TILING = {"tile": 128, "margin": 32}
#: Spatial chunks that do not line up with the tile grid.
CHUNKS = (45, 70)
TOL = 1e-6


@pytest.fixture(scope="module")
def denoiser():
    torch.set_num_threads(2)
    return denoising.load_checkpoint(ROOT / "data" / "denoiser_latent.pt", device="cpu")


@pytest.fixture(scope="module")
def ni_stack():
    """A simulated Ni stack, 30 energies x 200 x 180 px (float32) and its energies."""
    e = simulation.default_energy_grid("Ni")
    e = e[np.linspace(0, e.size - 1, 30).round().astype(int)]
    cfg = simulation.SimulationConfig(element="Ni", dose=500.0, background_amplitude=0.02,
                                      energies_eV=tuple(float(v) for v in e)).replace(
        phantom_shape=(200, 180), phantom_pixel_size_nm=300.0)
    stack, _ = simulation.simulate_stack(cfg, seed=11)
    return stack.transmission.astype(np.float32), np.asarray(stack.energies_eV)


@pytest.fixture(scope="module")
def nan_stack(ni_stack):
    """The same stack with a few pixels NaN, inf or <= 0 at some energy."""
    t = ni_stack[0].copy()
    t[3, 10, 20] = np.nan
    t[:, 150, 100] = -1.0
    t[7, 199, 179] = np.inf
    t[12, 64:67, 63:65] = np.nan  # across a tile and a chunk boundary
    return t, ni_stack[1]


def _in_memory(denoiser, t, e, select):
    return denoising.denoise_stack(denoiser, t, e, element="Ni", select=select, progress=False, device="cpu",
                                   **TILING)


def _chunked(denoiser, t, e, select, workdir) -> ChunkedDenoiseResult:
    x = da.from_array(t, chunks=(t.shape[0], *CHUNKS))
    return denoise_chunked(denoiser, x, e, element="Ni", select=select, workdir=workdir, device="cpu",
                           **TILING)


def _assert_same(chunked: ChunkedDenoiseResult, ref, denoised=None):
    """Denoised stack, coefficients, strength choice and reported state error agree to TOL."""
    denoised = chunked.denoised.compute() if denoised is None else denoised
    assert denoised.dtype == np.float32 and denoised.shape == ref.denoised.shape
    np.testing.assert_allclose(denoised, ref.denoised, rtol=0, atol=TOL)
    np.testing.assert_allclose(chunked.coefficients, ref.coefficients, rtol=0, atol=TOL)
    assert chunked.scale == pytest.approx(ref.scale, rel=1e-6) and chunked.tiles == ref.tiles == 12
    assert (chunked.strength is None) == (ref.strength is None)
    if ref.strength is not None:
        assert chunked.strength.candidates == ref.strength.candidates
        np.testing.assert_array_equal(chunked.strength.choice, ref.strength.choice)
        np.testing.assert_allclose(chunked.strength.pooled_risk, ref.strength.pooled_risk, rtol=1e-6)
        fit_std = np.full(ref.coefficients.shape[1:], 0.5, np.float32)
        np.testing.assert_allclose(chunked.oxidation_state_std(fit_std), ref.oxidation_state_std(fit_std),
                                   rtol=0, atol=TOL)
    if ref.invalid is None:
        assert chunked.invalid is None
    else:
        np.testing.assert_array_equal(chunked.invalid, ref.invalid)


@pytest.mark.parametrize("select", [True, False])
def test_chunked_equals_in_memory(denoiser, ni_stack, select, tmp_path):
    t, e = ni_stack
    before = t.copy()
    res = _chunked(denoiser, t, e, select, tmp_path)
    assert isinstance(res.denoised, da.Array)  # lazy
    assert res.denoised.chunks[1][0] == CHUNKS[0] and res.denoised.chunks[2][0] == CHUNKS[1]
    assert res.beam is not None and res.beam.rank > 0 and res.beam.background is None
    _assert_same(res, _in_memory(denoiser, t, e, select))
    np.testing.assert_array_equal(t, before)  # input not modified


def test_chunked_leaves_out_invalid_pixels(denoiser, nan_stack, tmp_path):
    t, e = nan_stack
    before = t.copy()
    with pytest.warns(UserWarning, match="left out of the denoising"):
        ref = _in_memory(denoiser, t, e, True)
    with pytest.warns(UserWarning, match="left out of the denoising"):
        res = _chunked(denoiser, t, e, True, tmp_path)
    assert res.invalid.sum() == 9
    denoised = res.denoised.compute()
    assert np.isnan(denoised[:, res.invalid]).all() and np.isfinite(denoised[:, ~res.invalid]).all()
    _assert_same(res, ref, denoised)
    np.testing.assert_array_equal(t, before, strict=True)


def test_chunked_same_under_local_schedulers(denoiser, ni_stack, tmp_path):
    t, e = ni_stack
    results = {}
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler):
            res = _chunked(denoiser, t, e, True, tmp_path)
            results[scheduler] = (res.denoised.compute(), res.coefficients)
    np.testing.assert_array_equal(results["synchronous"][0], results["threads"][0])
    np.testing.assert_array_equal(results["synchronous"][1], results["threads"][1])


def test_chunked_runs_on_a_distributed_client(denoiser, ni_stack, tmp_path):
    distributed = pytest.importorskip("distributed")
    t, e = ni_stack
    with (distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                   dashboard_address=":0") as cluster,
          distributed.Client(cluster)):
        res = _chunked(denoiser, t, e, True, tmp_path)
        denoised = res.denoised.compute()
    _assert_same(res, _in_memory(denoiser, t, e, True), denoised)


def test_chunked_rejects_bad_input(denoiser, ni_stack, tmp_path):
    t, e = ni_stack
    with pytest.raises(ValueError, match="3-D"):
        denoise_chunked(denoiser, da.from_array(t[0]), e, element="Ni", workdir=tmp_path)
    with pytest.raises(ValueError, match="must match one to one"):
        denoise_chunked(denoiser, da.from_array(t[:-1]), e, element="Ni", workdir=tmp_path)
