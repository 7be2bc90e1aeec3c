"""What the strength selection measures on an aligned stack (issue 16).

The selection (:mod:`xanes_lib.denoising.strength`) takes each pixel's photon noise from a
spatial high-pass of the fit residual, assuming independent pixels. After the default Fourier
alignment that estimate is the still stack's; after linear interpolation it falls to about half,
and the selection then turns the network down. Outside the field that every image covers, the
aligned images repeat the field's edge: those pixels are no measurements, and the selection
scores only the field it is given.
"""

import numpy as np
import pytest

from xanes_lib.alignment import apply_alignment
from xanes_lib.denoising.strength import residual_noise_std, select_strength
from xanes_lib.physics import absorbance, reference_model
from xanes_lib.simulation import SimulationConfig, simulate_stack
from xanes_lib.spectra import default_references


def _noise(transmission, energies, crop):
    model = reference_model(energies, "Ni")
    a = absorbance(transmission.astype(np.float64))
    return float(np.median(residual_noise_std(a - model.predict(model.fit(a)), model)[crop]))


@pytest.fixture(scope="module")
def stacks():
    cfg = SimulationConfig(element="Ni", dose=1000.0, blur_px=1.0).replace(phantom_shape=(96, 96),
                                                                           phantom_pixel_size_nm=150.0)
    still, _ = simulate_stack(cfg, seed=2)
    drifting, truth = simulate_stack(cfg.replace(drift_px=1.5), seed=2)
    return still, drifting, truth.drift_px


def test_noise_estimate_after_fourier_alignment_is_the_still_stacks(stacks):
    still, drifting, shifts = stacks
    assert np.abs(shifts - np.round(shifts)).max() > 0.3, "the drift is sub-pixel"
    fourier = apply_alignment(drifting.transmission, shifts)
    linear = apply_alignment(drifting.transmission, shifts, order=1)
    crop = fourier.crop
    reference = _noise(still.transmission, still.energies_eV, crop)
    assert _noise(fourier.transmission, still.energies_eV, crop) == pytest.approx(reference, rel=0.05)
    assert _noise(linear.transmission, still.energies_eV, crop) < 0.75 * reference


def test_selection_scores_only_the_field_every_image_covers(stacks):
    _, drifting, shifts = stacks
    aligned = apply_alignment(drifting.transmission, shifts)
    field = aligned.common_mask
    assert not field.all(), "the drift leaves a band outside the common field"
    e = drifting.energies_eV
    model = reference_model(e, "Ni")
    a = absorbance(aligned.transmission.astype(np.float64))
    c = model.fit(a)
    noise = residual_noise_std(a - model.predict(c), model)
    states = [r.oxidation_state for r in default_references("Ni")]
    _, everywhere = select_strength(c, noise, model, states)
    _, inside = select_strength(c, noise, model, states, field=field)
    assert everywhere.scored[~field].any(), "the repeated edges hold sample and are scored without a field"
    assert not inside.scored[~field].any()
    np.testing.assert_array_equal(inside.scored[field], everywhere.scored[field])
