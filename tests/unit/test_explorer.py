"""The click explorer (xanes_lib.explorer): a click selects a pixel, a drag a region; the spectrum follows.

Mouse events are sent through the figure canvas as a backend would send them (Agg here; the
same handlers run under ipympl in a browser, see tests/browser).
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402

from xanes_lib import mapping  # noqa: E402
from xanes_lib.explorer import MapExplorer  # noqa: E402
from xanes_lib.physics import absorbance  # noqa: E402
from xanes_lib.simulation import SimulationConfig, simulate_stack  # noqa: E402
from xanes_lib.spectra import default_references  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    cfg = SimulationConfig(element="Ni", dose=3000.0).replace(phantom_shape=(48, 56),
                                                              phantom_pixel_size_nm=150.0)
    stack, _ = simulate_stack(cfg, seed=4)
    refs = default_references("Ni")
    fit = mapping.fit_references(stack, None, refs, mode="nonneg_sum_to_one")
    return stack, fit, refs


def _send(explorer, name, row, col):
    x, y = explorer.ax_map.transData.transform((col, row))
    event = MouseEvent(name, explorer.fig.canvas, x, y, button=1)
    explorer.fig.canvas.callbacks.process(name, event)


def test_click_selects_a_pixel_and_the_spectrum_follows(fitted):
    stack, fit, refs = fitted
    ex = MapExplorer(stack, fit, refs, start=(0, 0))
    before = ex.spectrum.copy()
    _send(ex, "button_press_event", 30, 20)
    _send(ex, "button_release_event", 30, 20)
    assert ex.selection == (slice(30, 31), slice(20, 21))
    expected = absorbance(stack.transmission[:, 30, 20].astype(np.float64))
    np.testing.assert_allclose(ex.spectrum, expected)
    assert not np.allclose(ex.spectrum, before)
    assert ex.ax_fit.get_title() == "pixel (30, 20)"
    assert len(ex.ax_residual.lines) == 2          # zero line and the residual


def test_drag_selects_a_region(fitted):
    stack, fit, refs = fitted
    ex = MapExplorer(stack, fit, refs)
    _send(ex, "button_press_event", 10, 40)
    _send(ex, "button_release_event", 14, 33)
    rows, cols = ex.selection
    assert (rows, cols) == (slice(10, 15), slice(33, 41))
    a = absorbance(stack.transmission[:, rows, cols].astype(np.float64)).reshape(stack.energies_eV.size, -1)
    used = fit.mask[rows, cols].ravel()
    np.testing.assert_allclose(ex.spectrum, a[:, used if used.any() else slice(None)].mean(axis=1))
    assert ex.ax_fit.get_title().startswith("region rows 10-14, columns 33-40")


def test_clicks_outside_the_map_change_nothing(fitted):
    stack, fit, refs = fitted
    ex = MapExplorer(stack, fit, refs, start=(5, 5))
    x, y = ex.ax_fit.transAxes.transform((0.5, 0.5))
    for name in ("button_press_event", "button_release_event"):
        ex.fig.canvas.callbacks.process(name, MouseEvent(name, ex.fig.canvas, x, y, button=1))
    assert ex.selection == (slice(5, 6), slice(5, 6))
