"""Phases outside the references: the per-pixel test of :func:`unexplained_pixels` and its flags.

The foreign-phase particle of the in-family simulator (edge +3 eV, white line damped by 0.6)
must be flagged at 300 and 1000 photons, and few other sample pixels with it; pixels whose
spectrum the references explain are flagged at about the chosen false-flag rate, whatever
their own noise level.
"""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage, stats

from xanes_lib import evaluation
from xanes_lib.denoising.beam import estimate_background
from xanes_lib.mapping import (
    FALSE_FLAG_RATE,
    ReferenceFit,
    UnexplainedPixels,
    fit_references,
    flag_unexplained,
    mark_unexplained,
    residual_map,
    significant_mask,
    unexplained_pixels,
)
from xanes_lib.physics import absorbance, reference_model
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references, load_measured_reference

REFS = default_references("Ni")
E = np.linspace(8250.0, 8450.0, 80)


def _mixture(shape, *, step=0.3, f3=None):
    """Absorbance (E, Y, X) of a mix of the two Ni references on a smooth background."""
    f3 = np.full(shape, 0.4) if f3 is None else f3
    s2, s3 = (r.spectrum(E)[:, None, None] for r in REFS)
    background = 0.4 + 0.5 * (E[:, None, None] / E[0]) ** -3
    return np.broadcast_to(step, shape) * ((1 - f3) * s2 + f3 * s3) + background


def _noisy(a, sigma, seed):
    return np.exp(-(a + np.random.default_rng(seed).normal(0.0, 1.0, a.shape) * sigma))


def _pipeline(stack, references):
    """What notebook 04 does: sample mask, beam background divided out, then the test."""
    e = stack.energies_eV
    sample = significant_mask(absorbance(stack.transmission.astype(np.float64)), e, references).mask
    beam = estimate_background(stack.transmission, e, reference_model(e, references=references))
    return unexplained_pixels(stack.transmission / beam.background, e, references, mask=sample), sample


def _scores(test, sample, truth):
    foreign = truth.foreign_mask
    others = sample & truth.mask & ~foreign
    matched = evaluation.matched_negatives(truth.areal_density, foreign, sample & truth.mask)
    return dict(auc=evaluation.roc_auc(test.statistic, foreign & sample, matched),
                recall=float(test.flags[foreign & sample].mean()),
                false=float(test.flags[others].mean()),
                false_away=float(test.flags[others & (ndimage.distance_transform_edt(~foreign) > 6)].mean()))


@pytest.fixture(scope="module", params=[300, 1000], ids=lambda d: f"dose{d}")
def foreign_run(request):
    stack, truth = simulate_stack(SimulationConfig().replace(dose=request.param, foreign_particles=1), seed=0)
    test, sample = _pipeline(stack, REFS)
    return request.param, stack, truth, test, sample


# ------------------------------------------------------------------ the simulator's foreign phase

def test_foreign_particle_is_flagged_and_few_others(foreign_run):
    """Measured (seed 0): 300 photons AUC 0.996, recall 0.88, false 0.1 %; 1000: 1.000, 0.999, 0.03 %."""
    dose, _, truth, test, sample = foreign_run
    s = _scores(test, sample, truth)
    assert s["auc"] >= 0.98, s
    assert s["recall"] >= (0.85 if dose == 300 else 0.97), s
    assert s["false"] <= 0.005 and s["false_away"] <= 0.005, s
    assert test.null_scale < 1.2, "raw photon noise: the noise model holds"
    # two tests per pixel (pooled, alone), each at half the rate
    assert test.threshold == pytest.approx(test.null_scale * stats.chi2.isf(FALSE_FLAG_RATE / 2, test.dof))
    assert test.pixel_threshold >= stats.chi2.isf(FALSE_FLAG_RATE / 2, test.dof)
    assert test.n_flagged == int(test.flags.sum()) and 0 < test.share < 0.5


def test_flagged_pixels_get_no_oxidation_state(foreign_run):
    _, stack, truth, test, sample = foreign_run
    fit = fit_references(stack, None, REFS, mask=sample, mode="nonneg_sum_to_one")
    marked = mark_unexplained(fit, test)
    assert np.array_equal(marked.unexplained, test.flags & fit.mask)
    assert np.isnan(marked.oxidation_state[test.flags]).all()
    assert np.isnan(marked.oxidation_state_std[test.flags]).all()
    assert np.isnan(marked.fractions[:, test.flags]).all()
    assert np.isnan(marked.fractions_std[:, test.flags]).all()
    kept = fit.mask & ~test.flags
    assert np.array_equal(marked.oxidation_state[kept], fit.oxidation_state[kept], equal_nan=True)
    assert np.array_equal(marked.coefficients, fit.coefficients, equal_nan=True)   # the fit itself stays
    assert marked.unexplained_test == test.to_attrs()
    assert marked.unexplained_test["n_flagged"] == test.n_flagged
    assert fit.unexplained is None and np.isfinite(fit.oxidation_state[test.flags]).any(), "input untouched"


def test_the_test_beats_the_plain_residual_threshold(foreign_run):
    """The RMS residual map (no noise model, no pooling) barely separates the phase at these doses."""
    _, stack, truth, test, sample = foreign_run
    matched = evaluation.matched_negatives(truth.areal_density, truth.foreign_mask, sample & truth.mask)
    pos = truth.foreign_mask & sample
    residual = residual_map(stack.transmission, stack.energies_eV, element="Ni")
    plain = evaluation.roc_auc(residual, pos, matched)
    assert evaluation.roc_auc(test.statistic, pos, matched) > plain + 0.2


def test_plain_stack_flags_few_pixels():
    stack, truth = simulate_stack(SimulationConfig().replace(dose=1000), seed=1)
    test, sample = _pipeline(stack, REFS)
    assert test.flags[sample & truth.mask].mean() < 0.003
    assert abs(np.median(test.statistic[test.mask]) / test.dof - 1.0) < 0.1


def test_the_empty_field_sets_a_floor_a_beam_residual_under_thin_sample_stays_below():
    """Foreign family, Ni, 5000 photons: hollow particles' thin centres (edge step ~5e-3) under a
    residual beam background. Without the floor 1969 sample pixels were flagged (no phase outside
    the references there); with it 10. The residual is the part of the beam inside the physics
    model's span, left in by dropping those profiles (``min_unexplained=0.2``); the default
    estimate keeps them: bare then flags 1.2 % of the sample (15 % with them dropped)."""
    from xanes_lib.simulation import simulate_foreign_stack

    stack, truth = simulate_foreign_stack("mixed", element="Ni", composition="NMC811", dose=5000.0,
                                          seed=1502, shape=(192, 192), background=0.02)
    refs = default_references("Ni")
    e = stack.energies_eV
    sample = significant_mask(absorbance(stack.transmission.astype(np.float64)), e, refs).mask
    beam = estimate_background(stack.transmission, e, reference_model(e, references=refs),
                               min_unexplained=0.2)
    t = stack.transmission / beam.background
    test = unexplained_pixels(t, e, refs, mask=sample)
    bare = unexplained_pixels(t, e, refs, mask=sample, empty_field=None)
    on_sample = sample & truth.mask
    assert bare.flags[on_sample].mean() > 0.05 and bare.empty_field_floor == 0.0 and bare.n_empty_field == 0
    assert test.flags[on_sample].mean() < 0.005, test.n_flagged
    assert test.n_empty_field > 1000 and 0 < test.empty_field_floor < 0.02
    assert test.empty_field_pixel_floor > test.empty_field_floor      # one pixel is noisier than a pool
    assert not (test.flags & ~bare.flags).any()                       # the floor only removes flags
    assert test.to_attrs()["empty_field_floor"] == test.empty_field_floor
    # the empty field given as a map: the same floor where it is the same pixels
    outside = ~ndimage.binary_dilation(sample, iterations=3)
    given = unexplained_pixels(t, e, refs, mask=sample, empty_field=outside)
    assert given.empty_field_floor == pytest.approx(test.empty_field_floor)


def test_measured_references_explain_a_plain_stack_and_flag_the_foreign_one(shared_ni_dir):
    """Measured NiO/LiNiO2 never match the simulator's parametric spectra exactly: the shared misfit
    is removed (common_residual) instead of flagging every thick particle."""
    refs = [load_measured_reference(shared_ni_dir / "ref_NiO.txt", element="Ni", oxidation_state=2),
            load_measured_reference(shared_ni_dir / "ref_LiNiO2.txt", element="Ni", oxidation_state=3)]
    stack, truth = simulate_stack(SimulationConfig().replace(dose=1000), seed=0)
    test, sample = _pipeline(stack, refs)
    assert test.flags[sample & truth.mask].mean() < 0.005
    assert test.common_residual is not None and test.common_residual.shape == (test.dof,)
    stack, truth = simulate_stack(SimulationConfig().replace(dose=1000, foreign_particles=1), seed=0)
    test, sample = _pipeline(stack, refs)
    s = _scores(test, sample, truth)
    assert s["auc"] >= 0.98 and s["recall"] >= 0.9 and s["false"] <= 0.005, s


# ------------------------------------------------------------------ the statistic on synthetic stacks

def test_null_statistic_is_chi_square_with_the_pixel_noise():
    a = _mixture((96, 96))
    test = unexplained_pixels(_noisy(a, 0.02, 1), E, REFS, mask=np.ones((96, 96), bool))
    assert test.dof == int(((E >= np.mean([r.edge_energy() for r in REFS]) - 15)
                            & (E <= np.mean([r.edge_energy() for r in REFS]) + 40)).sum())
    assert abs(np.mean(test.statistic) / test.dof - 1.0) < 0.08
    assert test.flags.mean() < 5 * FALSE_FLAG_RATE
    assert np.median(test.noise_rms) == pytest.approx(0.02, rel=0.1)     # measured from the stack
    assert np.median(test.residual_rms) == pytest.approx(0.02, rel=0.1)


def test_each_pixel_is_judged_against_its_own_noise():
    """A quarter of the field four times noisier: the plain residual threshold flags it, the test not."""
    a = _mixture((64, 128))
    noisy = np.arange(128) >= 96
    t = _noisy(a, np.where(noisy, 0.04, 0.01)[None, None, :], 2)
    mask = np.ones((64, 128), bool)
    test = unexplained_pixels(t, E, REFS, mask=mask)
    assert test.flags.mean() < 0.005
    ratio = np.median(test.noise_rms[:, 108:]) / np.median(test.noise_rms[:, :80])
    assert ratio == pytest.approx(4.0, rel=0.1)
    plain, _ = flag_unexplained(residual_map(t, E, references=REFS), mask)
    assert plain[:, noisy].mean() > 0.9


def test_an_injected_phase_is_flagged_with_its_effect_size():
    ny = nx = 96
    a = _mixture((ny, nx))
    yy, xx = np.mgrid[:ny, :nx]
    disk = (yy - 48) ** 2 + (xx - 48) ** 2 < 15 ** 2
    shifted = 0.3 * REFS[0].spectrum(E - 3.0) + 0.4 + 0.5 * (E / E[0]) ** -3      # edge moved by +3 eV
    a = np.where(disk[None], shifted[:, None, None], a)
    test = unexplained_pixels(_noisy(a, 0.02, 3), E, REFS, mask=np.ones((ny, nx), bool))
    inner = ndimage.binary_erosion(disk, iterations=3)
    assert test.flags[inner].mean() > 0.95
    assert test.flags[~ndimage.binary_dilation(disk, iterations=8)].mean() < 0.005
    assert 0.03 < np.median(test.relative_residual[inner]) < 0.3
    assert np.median(test.relative_residual[~disk]) < 0.01
    # the same phase, asked for a larger effect than it has: not flagged
    strict = unexplained_pixels(_noisy(a, 0.02, 3), E, REFS, mask=np.ones((ny, nx), bool),
                                min_relative_residual=0.5)
    assert not strict.flags.any() and np.array_equal(strict.statistic, test.statistic)


def test_common_residual_is_removed_and_a_minority_phase_is_not():
    """A misfit shared by every pixel (in proportion to its step) is not a phase: removed, it
    leaves the null distribution as it was, and a phase covering a minority is still flagged."""
    ny = nx = 96
    step = np.broadcast_to(np.linspace(0.2, 1.0, nx), (ny, nx))
    a = _mixture((ny, nx), step=step)
    bump = np.exp(-0.5 * ((E - 8350.0) / 4.0) ** 2)[:, None, None]
    a = a + 0.1 * step * bump                                                    # the references' mismatch
    yy, xx = np.mgrid[:ny, :nx]
    disk = (yy - 48) ** 2 + (xx - 60) ** 2 < 12 ** 2
    phase = step * (REFS[0].spectrum(E - 3.0) - REFS[0].spectrum(E))[:, None, None]
    t = _noisy(a + 0.5 * np.where(disk[None], phase, 0.0), 0.01, 4)
    mask = np.ones((ny, nx), bool)
    weak = {"min_relative_residual": 0.02}     # a weak phase: flagged at 0.02, below the default 0.05
    corrected = unexplained_pixels(t, E, REFS, mask=mask, **weak)
    raw = unexplained_pixels(t, E, REFS, mask=mask, common_residual=False, **weak)
    assert corrected.null_scale < 1.2 and raw.null_scale > 3.0 and raw.common_residual is None
    assert corrected.flags[ndimage.binary_erosion(disk, iterations=3)].mean() > 0.95
    assert corrected.flags[~ndimage.binary_dilation(disk, iterations=8)].mean() < 0.005
    peak = corrected.energies_eV[np.argmax(np.abs(corrected.common_residual))]
    assert abs(peak - 8350.0) < 3.0


def test_a_corrupted_border_is_flagged_alone_and_not_spread():
    """A border row left by alignment (energy-dependent offsets): flagged on its own test, its
    neighbours are not, and without pooling the two tests are one."""
    a = _mixture((64, 64))
    a[:, 0, :] += np.random.default_rng(10).normal(0.0, 0.06, (E.size, 1))      # the same per row
    t = _noisy(a, 0.02, 10)
    mask = np.ones((64, 64), bool)
    test = unexplained_pixels(t, E, REFS, mask=mask)
    assert test.flags[0].mean() > 0.9
    assert test.flags[1:].mean() < 0.005
    single = unexplained_pixels(t, E, REFS, mask=mask, smooth_px=0.0)
    assert single.threshold == single.pixel_threshold
    assert np.array_equal(single.statistic, single.pixel_statistic, equal_nan=True)
    assert single.threshold == pytest.approx(single.null_scale * stats.chi2.isf(FALSE_FLAG_RATE, single.dof))


def test_same_input_same_result():
    t = _noisy(_mixture((48, 48)), 0.02, 5)
    one, two = (unexplained_pixels(t, E, REFS, mask=np.ones((48, 48), bool)) for _ in range(2))
    for name in ("flags", "statistic", "relative_residual", "noise_rms"):
        assert np.array_equal(getattr(one, name), getattr(two, name), equal_nan=True), name
    assert one.to_attrs() == two.to_attrs()


def test_untested_pixels_are_nan_and_never_flagged():
    t = _noisy(_mixture((48, 48)), 0.02, 6)
    mask = np.zeros((48, 48), bool)
    mask[8:40, 8:40] = True
    test = unexplained_pixels(t, E, REFS, mask=mask)
    assert np.isnan(test.statistic[~mask]).all() and not test.flags[~mask].any()
    assert np.isfinite(test.statistic[mask]).all() and np.array_equal(test.mask, mask)



def test_empty_field_in_the_mask_is_never_flagged_and_a_mostly_empty_mask_warns():
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    # the disk holds a mix of the references; the empty field has background only (no edge)
    a = np.where(disk, _mixture((64, 64)), _mixture((64, 64), step=0.0))
    t = _noisy(a, 0.02, 7)
    sample = unexplained_pixels(t, E, REFS, mask=disk)
    assert sample.to_attrs()["n_without_edge_step"] < 0.1 * disk.sum()
    with pytest.warns(UserWarning, match=r"\d+ of 4096 mask pixels have no significant edge step, not even "
                                         r"pooled.*significant_mask"):
        whole = unexplained_pixels(t, E, REFS, mask=np.ones_like(disk))
    assert not whole.flags[~ndimage.binary_dilation(disk, iterations=8)].any()


# ------------------------------------------------------------------ mark_unexplained

def test_mark_unexplained_takes_bare_flags_and_drops_flags_outside_the_fit():
    t = _noisy(_mixture((16, 16)), 0.02, 7)
    mask = np.ones((16, 16), bool)
    mask[0] = False
    fit = fit_references(t, E, REFS, mask=mask, input_kind="transmission")
    flags = np.zeros((16, 16), bool)
    flags[0, 0] = flags[5, 5] = True
    marked = mark_unexplained(fit, flags)
    assert isinstance(marked, ReferenceFit) and marked.unexplained_test is None
    assert marked.unexplained.sum() == 1 and marked.unexplained[5, 5]
    assert np.isnan(marked.oxidation_state[5, 5]) and np.isfinite(marked.oxidation_state[6, 6])
    with pytest.raises(ValueError, match="boolean"):
        mark_unexplained(fit, flags[:5])
    with pytest.raises(ValueError, match="boolean"):
        mark_unexplained(fit, flags.astype(int))
    with pytest.raises(TypeError, match="ReferenceFit"):
        mark_unexplained(dataclasses.asdict(marked), flags)


# ------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("kwargs, match", [
    (dict(smooth_px=-1.0), "smooth_px"),
    (dict(smooth_px=float("nan")), "smooth_px"),
    (dict(false_flag_rate=0.0), "false_flag_rate"),
    (dict(false_flag_rate=0.7), "false_flag_rate"),
    (dict(noise_sigma_px=0.0), "noise_sigma_px"),
    (dict(min_relative_residual=-0.1), "min_relative_residual"),
    (dict(relative_window_eV=(-1.0, 1.0)), "widen relative_window_eV"),
    (dict(mask=np.ones((4, 4), bool)), "mask must be a boolean"),
    (dict(mask=np.ones((24, 24), int)), "mask must be a boolean"),
    (dict(mask=np.eye(24, dtype=bool)), "no two neighbours"),
    (dict(mode="free"), "mode"),
    (dict(empty_field="outside"), "empty_field must be 'auto'"),
    (dict(empty_field=np.ones((4, 4), bool)), "empty_field must be a boolean"),
])
def test_bad_inputs_raise(kwargs, match):
    t = _noisy(_mixture((24, 24)), 0.02, 8)
    args = dict(mask=np.ones((24, 24), bool)) | kwargs
    with pytest.raises(ValueError, match=match):
        unexplained_pixels(t, E, REFS, **args)


def test_array_references_need_an_absolute_window():
    t = _noisy(_mixture((24, 24)), 0.02, 9)
    spectra_array = np.stack([r.spectrum(E) for r in REFS])
    with pytest.raises(ValueError, match="no edge energy"):
        unexplained_pixels(t, E, spectra_array, mask=np.ones((24, 24), bool))
    test = unexplained_pixels(t, E, spectra_array, mask=np.ones((24, 24), bool), relative_window_eV=None)
    assert isinstance(test, UnexplainedPixels) and test.dof == E.size
