"""The linear absorbance model and its closed-form fit."""

import numpy as np
import pytest
import torch

from xanes_lib.physics import absorbance, build_model


def _toy_model():
    e = np.linspace(8300, 8400, 30)
    s1 = 1 / (1 + np.exp(-(e - 8340) / 2.0))
    s2 = 1 / (1 + np.exp(-(e - 8342) / 2.0))
    return build_model(e, [s1, s2], names=["a", "b"])


def test_fit_recovers_coefficients_exactly(rng):
    model = _toy_model()
    coeffs = rng.uniform(0.1, 1.0, (model.n_params, 5, 7))
    a = model.predict(coeffs)
    np.testing.assert_allclose(model.fit(a), coeffs, rtol=1e-8, atol=1e-10)


def test_numpy_and_torch_agree(rng):
    model = _toy_model()
    a = rng.uniform(0, 1, (30, 4, 4)).astype(np.float64)
    np.testing.assert_allclose(model.fit(torch.from_numpy(a)).numpy(), model.fit(a), rtol=1e-10)


def test_absorbance_clips_nonpositive():
    a = absorbance(np.array([1.0, np.exp(-2.0), 0.0]))
    assert a[0] == 0 and a[1] == pytest.approx(2.0) and np.isfinite(a[2])


def test_bad_inputs():
    e = np.linspace(8300, 8400, 3)
    with pytest.raises(ValueError, match="cannot determine"):
        build_model(e, [np.ones(3), e / e[0]])
    with pytest.raises(ValueError, match="resample"):
        build_model(e, [np.ones(4)])
    with pytest.raises(ValueError, match="unknown background term"):
        build_model(np.linspace(8300, 8400, 10), [np.ones(10)], background=("quartic",))
    with pytest.raises(ValueError, match="increase strictly"):
        build_model([8300.0, 8300.0, 8310.0, 8320.0], [np.ones(4)], background=())


def test_metrics_of_oxidation_state():
    from xanes_lib.evaluation import oxidation_state_metrics
    truth = np.full((4, 4), 2.5)
    est = truth + np.array([0.1, -0.1] * 8).reshape(4, 4)
    m = oxidation_state_metrics(est, np.full((4, 4), 0.04), truth, np.ones((4, 4), bool))
    assert m["rmse"] == pytest.approx(0.1) and m["bias"] == pytest.approx(0.0, abs=1e-12)
    assert m["coverage_2sigma"] == 0.0
    m = oxidation_state_metrics(est, np.full((4, 4), 0.06), truth, np.ones((4, 4), bool))
    assert m["coverage_2sigma"] == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        oxidation_state_metrics(est, est, truth[:2], np.ones((4, 4), bool))
