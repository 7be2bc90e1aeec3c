"""The chunked pipeline (xanes_lib.chunked) gives the in-memory maps, on every scheduler.

The in-memory reference is notebook 04's path on the whole stack: ``significant_mask`` of
the float64 absorbance, ``fit_references`` with that mask, the half-step edge energy, and
``apply_alignment`` first when the stack drifts. The chunked path runs on chunks that do not
divide the field evenly.
"""

import dataclasses

import numpy as np
import pytest

from xanes_lib import alignment, chunked, io, mapping
from xanes_lib.denoising.beam import divide_beam_background
from xanes_lib.physics import absorbance
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references

CHUNKS = (None, 37, 45)         # chunks that do not divide the 96 x 104 field
TOL = 1e-6


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    cfg = SimulationConfig(element="Ni", dose=2000.0).replace(phantom_shape=(96, 104),
                                                              phantom_pixel_size_nm=150.0)
    stack, _ = simulate_stack(cfg, seed=3)
    path = tmp_path_factory.mktemp("chunked") / "stack.h5"
    io.write_stack(path, stack)
    return path, stack


def _in_memory(stack, shifts=None, beam=True, order=1):
    """Notebook 04's mapping of the whole stack (no denoiser): mask and edge energies on the stack
    as measured, the fit on the stack divided by its low-rank beam background. A drifting stack is
    divided by its background in the detector frame first (``align_with_beam_background``), then
    aligned."""
    refs = default_references(stack.element)
    t, e = stack.transmission, stack.energies_eV
    field = None
    if shifts is not None:
        if beam:
            t = divide_beam_background(t, e, refs, shifts_px=shifts)[0]
        aligned = alignment.apply_alignment(t, shifts, order=order)
        t, field = aligned.transmission, aligned.common_mask
    a = absorbance(t.astype(np.float64))
    sample = mapping.significant_mask(a, e, refs)
    mask = sample.mask if field is None else sample.mask & field
    fitted = divide_beam_background(t, e, refs)[0] if beam else t
    fit = mapping.fit_references(fitted, e, refs, mask=mask, mode="nonneg_sum_to_one",
                                 input_kind="transmission")
    edge = np.where(fit.mask, mapping.edge_energy(e, mapping.normalize_spectra(e, a).normalized), np.nan)
    return dataclasses.replace(fit, edge_energy_eV=edge)


def _chunks(stack):
    return (stack.energies_eV.size, CHUNKS[1], CHUNKS[2])


def _assert_same(results, fit):
    assert np.array_equal(results.mask, fit.mask)
    pairs = (("oxidation_state", fit.oxidation_state), ("oxidation_state_std", fit.oxidation_state_std),
             ("fractions", fit.fractions), ("fractions_std", fit.fractions_std),
             ("residual", fit.residual_rms), ("edge_energy_eV", fit.edge_energy_eV))
    for name, ref in pairs:
        got = getattr(results, name)
        assert np.array_equal(np.isnan(got), np.isnan(ref)), name
        ok = np.isfinite(ref)
        np.testing.assert_allclose(got[ok], ref[ok], rtol=TOL, atol=TOL, err_msg=name)


@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_chunked_maps_equal_in_memory(stack_file, tmp_path, suffix):
    path, stack = stack_file
    lazy = chunked.open_stack(path, chunks=_chunks(stack))
    assert lazy.transmission.numblocks == (1, 3, 3)
    out = tmp_path / f"results{suffix}"
    info = chunked.map_stack(lazy, out)
    fit = _in_memory(stack)
    if suffix == ".h5":
        res = io.read_results(out)
        _assert_same(res, fit)
        assert res.attrs["n_outside_mask"] == fit.n_outside_mask
        assert res.input_checksum == io.stack_checksum(path)
    else:
        import zarr

        g = zarr.open_group(str(out), mode="r")
        got = g["maps/oxidation_state"][...]
        ok = np.isfinite(fit.oxidation_state)
        assert np.array_equal(np.isfinite(got), ok)
        np.testing.assert_allclose(got[ok], fit.oxidation_state[ok], rtol=TOL, atol=TOL)
        assert g.attrs["references"] == list(fit.reference_names)
    assert info.n_fitted == int(fit.mask.sum()) > 100
    assert not list(tmp_path.glob(".xanes-chunked-*")), "the work directory was left behind"


@pytest.mark.parametrize("order", ["fourier", "lanczos", 1])
def test_aligned_chunked_equals_in_memory(stack_file, tmp_path, order):
    path, stack = stack_file
    n = stack.energies_eV.size
    rng = np.random.default_rng(1)
    shifts = np.cumsum(rng.normal(0, 0.4, (n, 2)), axis=0)
    shifts -= shifts[0]
    lazy = chunked.open_stack(path, chunks=_chunks(stack))
    aligned, common = chunked.align_lazy(lazy.transmission, shifts, order=order)
    ref = alignment.apply_alignment(stack.transmission, shifts, order=order)
    np.testing.assert_array_equal(aligned.compute(), ref.transmission)
    np.testing.assert_array_equal(common, ref.common_mask)
    if order == "lanczos":  # map_stack aligns by a windowed sinc (local, memory-safe)
        out = tmp_path / "aligned.h5"
        chunked.map_stack(lazy, out, alignment=shifts)
        res = io.read_results(out)
        _assert_same(res, _in_memory(stack, shifts, order="lanczos"))
        assert res.attrs["beam_background_before_alignment"].startswith("beam background divided out")


@pytest.mark.parametrize("scheduler", ["synchronous", "processes", "local-cluster"])
def test_same_maps_on_every_scheduler(stack_file, tmp_path, scheduler):
    path, stack = stack_file
    out = tmp_path / "r.h5"
    with chunked.dask_scheduler(scheduler, n_workers=2, memory_limit="1GiB") as info:
        assert info.n_workers == (1 if scheduler == "synchronous" else 2)
        if scheduler == "local-cluster":
            assert info.client is not None and info.memory_limit_bytes == 2 ** 30
        chunked.map_stack(path, out, chunks=_chunks(stack))
    _assert_same(io.read_results(out), _in_memory(stack))


def test_volume_is_mapped_slice_by_slice(stack_file, tmp_path):
    _, stack = stack_file
    vol = np.stack([stack.transmission, stack.transmission[:, ::-1]], axis=1)      # (E, 2, Y, X)
    store = chunked.write_zarr_stack(tmp_path / "vol.zarr", vol, stack.energies_eV, element="Ni")
    lazy = chunked.open_stack(store)
    assert lazy.is_volume and lazy.transmission.chunksize[1] == 1
    out = tmp_path / "vol_results.h5"
    chunked.map_stack(lazy, out)
    res = io.read_results(out)
    assert res.oxidation_state.shape == (2,) + stack.transmission.shape[1:]
    assert res.fractions.shape[:2] == (2, 2)
    fit = _in_memory(stack)
    for z, flip in ((0, slice(None)), (1, slice(None, None, -1))):
        got = res.oxidation_state[z][flip]
        ok = np.isfinite(fit.oxidation_state)
        np.testing.assert_allclose(got[ok], fit.oxidation_state[ok], rtol=TOL, atol=TOL)


def test_inputs_untouched_and_failed_run_leaves_nothing(stack_file, tmp_path):
    path, _ = stack_file
    before = io.stack_checksum(path)
    out = tmp_path / "r.h5"
    with pytest.raises(ValueError, match="mode must be"):      # fails in the fit pass, after the survey
        chunked.map_stack(path, out, mode="bogus")
    assert not list(tmp_path.iterdir()), "a failed run left files"
    with pytest.raises(ValueError, match="input file"):
        chunked.map_stack(path, path)
    assert io.stack_checksum(path) == before


def test_bad_chunks_and_raw_counts_refused(stack_file, tmp_path):
    path, stack = stack_file
    with pytest.raises(ValueError, match="every energy"):
        chunked.open_stack(path, chunks=(5, 32, 32))
    store = chunked.write_zarr_stack(tmp_path / "counts.zarr", stack.transmission * 3000.0, stack.energies_eV,
                                     element="Ni")
    with pytest.raises(ValueError, match="raw detector counts"):
        chunked.open_stack(store)


def test_simulated_volume_maps_to_its_truth(tmp_path):
    from xanes_lib.simulation import read_volume_truth, simulate_volume, write_volume

    vol = simulate_volume((4, 48, 48), dose=50000.0, n_energies=60, seed=2)
    store = write_volume(tmp_path / "vol.zarr", vol)
    truth = read_volume_truth(store)
    assert truth["oxidation_state"].shape == (4, 48, 48) and truth["mask"].any()
    assert np.isnan(truth["oxidation_state"][~truth["mask"]]).all()
    out = tmp_path / "vol.zarr.results.h5"
    chunked.map_stack(store, out)
    res = io.read_results(out)
    both = res.mask & truth["mask"]
    assert both.sum() > 0.8 * truth["mask"].sum()
    err = res.oxidation_state[both] - truth["oxidation_state"][both]
    rmse = float(np.sqrt(np.nanmean(err ** 2)))
    assert rmse < 0.1, rmse


def test_denoised_chunked_maps_equal_in_memory(stack_file, tmp_path):
    torch = pytest.importorskip("torch")
    from xanes_lib import denoising
    from xanes_lib.notebooks import NOTEBOOKS_DIR

    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # one thread in both paths; restored for the tests that follow
    try:
        path, stack = stack_file
        den = denoising.load_checkpoint(NOTEBOOKS_DIR.parent / "data" / "denoiser_latent.pt")
        options = {"tile": 64, "margin": 16}
        out = tmp_path / "den.h5"
        info = chunked.map_stack(path, out, chunks=_chunks(stack), denoiser=den, denoise_options=options)
        assert len(info.denoise) == 1, "the strength chosen is reported"
        res = den.denoise(stack.transmission, stack.energies_eV, element="Ni", progress=False, **options)
        fit = _in_memory(dataclasses.replace(stack, transmission=res.denoised), beam=False)
        fit = dataclasses.replace(fit, oxidation_state_std=res.oxidation_state_std(fit.oxidation_state_std))
        _assert_same(io.read_results(out), fit)
    finally:
        torch.set_num_threads(threads)
