"""The interactive explorer of the valence maps: click a pixel or drag a region on the map.

:class:`MapExplorer` draws a map (the oxidation state by default) beside the measured
spectrum of the selected pixel or region, its fit, each reference alone and the residual.
A click on the map selects a pixel, a drag selects the rectangle between press and release;
the spectrum panels follow. It works with any interactive matplotlib backend; in Jupyter use
ipympl, the widget backend (``%matplotlib widget``). Under a static backend (papermill, a
saved notebook) the figure shows the starting selection.
"""

from __future__ import annotations

import numpy as np

from .physics import absorbance, build_model
from .plot import show_map

__all__ = ["MapExplorer"]


class MapExplorer:
    """Map with a pixel / region picker and the spectrum, fit, references and residual.

    Parameters
    ----------
    stack : xanes_lib.io.Stack
        The stack that was fitted (its transmission gives the measured spectra).
    fit_result : xanes_lib.mapping.ReferenceFit
        The fit of ``stack``.
    references : sequence
        The references of the fit (objects with ``spectrum``, ``name``).
    image : array_like, optional
        (Y, X) map to click on; None: the oxidation state.
    label : str
        Colour-bar label of ``image``.
    start : (int, int), optional
        Pixel selected first; None: the fitted pixel with the largest edge step.
    figsize : (float, float)
        Figure size in inches.

    Attributes
    ----------
    fig, ax_map, ax_fit, ax_residual : matplotlib objects
    selection : tuple of slice
        (rows, columns) of the current selection.
    spectrum : numpy.ndarray
        Measured mean absorbance of the selection, on the stack's energies.
    """

    def __init__(self, stack, fit_result, references, *, image=None, label: str = "oxidation state",
                 start=None, figsize=(12.0, 5.0)):
        import matplotlib.pyplot as plt

        self.stack, self.fit, self.references = stack, fit_result, list(references)
        e = fit_result.energies_eV
        self.model = build_model(e, [r.spectrum(e - fit_result.shift_eV) for r in self.references],
                                 background=fit_result.background)
        self.fig = plt.figure(figsize=figsize, layout="constrained")
        grid = self.fig.add_gridspec(2, 2, height_ratios=[3, 1], width_ratios=[1, 1.2])
        self.ax_map = self.fig.add_subplot(grid[:, 0])
        self.ax_fit = self.fig.add_subplot(grid[0, 1])
        self.ax_residual = self.fig.add_subplot(grid[1, 1], sharex=self.ax_fit)
        shown = fit_result.oxidation_state if image is None else np.asarray(image)
        show_map(self.ax_map, shown, title="click a pixel or drag a region", label=label)
        from matplotlib.patches import Rectangle

        self.box = self.ax_map.add_patch(Rectangle((0, 0), 1, 1, fill=False, color="r", lw=1.5))
        self._press_at = None
        self.fig.canvas.mpl_connect("button_press_event", self._on_press)
        self.fig.canvas.mpl_connect("button_release_event", self._on_release)
        if start is None:
            step = np.where(fit_result.mask, fit_result.edge_step, np.nan)
            start = np.unravel_index(np.nanargmax(step), step.shape) if np.isfinite(step).any() else (0, 0)
        y, x = (int(v) for v in start)
        self.select(slice(y, y + 1), slice(x, x + 1))

    def _pixel(self, event):
        ny, nx = self.fit.mask.shape
        return (int(np.clip(np.floor(event.ydata + 0.5), 0, ny - 1)),
                int(np.clip(np.floor(event.xdata + 0.5), 0, nx - 1)))

    def _on_press(self, event) -> None:
        if event.inaxes is self.ax_map and event.button == 1 and event.xdata is not None:
            self._press_at = self._pixel(event)

    def _on_release(self, event) -> None:
        if self._press_at is None:
            return
        (y0, x0), self._press_at = self._press_at, None
        y1, x1 = self._pixel(event) if event.inaxes is self.ax_map and event.xdata is not None else (y0, x0)
        self.select(slice(min(y0, y1), max(y0, y1) + 1), slice(min(x0, x1), max(x0, x1) + 1))

    def select(self, rows: slice, cols: slice) -> None:
        """Show the pixel or region ``(rows, cols)``: its mean spectrum, fit, references, residual."""
        self.selection = (rows, cols)
        st = self.stack
        t = st.transmission[:, rows, cols].astype(np.float64)
        a = absorbance(t).reshape(st.energies_eV.size, -1)
        fitted = self.fit.mask[rows, cols].ravel()
        use = fitted if fitted.any() else np.ones_like(fitted)  # outside the mask: all, unfitted (NaN)
        self.spectrum = a[:, use].mean(axis=1)
        coeffs = self.fit.coefficients[:, rows, cols].reshape(self.model.n_params, -1)[:, use]
        coeffs = np.nanmean(coeffs, axis=1)
        e = self.fit.energies_eV
        curve = self.model.predict(coeffs)
        k = len(self.references)
        background = self.model.matrix[:, k:] @ coeffs[k:]
        measured_in_window = np.interp(e, st.energies_eV, self.spectrum)
        state = np.nanmean(self.fit.oxidation_state[rows, cols])
        std = np.nanmean(self.fit.oxidation_state_std[rows, cols])
        ax, axr = self.ax_fit, self.ax_residual
        ax.clear()
        axr.clear()
        n = int(use.sum())
        ax.plot(st.energies_eV, self.spectrum, ".k", ms=3, label=f"measured (mean of {n} px)")
        ax.plot(e, curve, "-r", label=f"fit: state {state:.2f} +/- {std:.2f}")
        for i, r in enumerate(self.references):
            ax.plot(e, background + self.model.matrix[:, i] * coeffs[:k].sum(), "--", lw=0.8,
                    label=f"{r.name} alone")
        (y0, y1), (x0, x1) = (rows.start, rows.stop), (cols.start, cols.stop)
        where = f"pixel ({y0}, {x0})" if (y1 - y0, x1 - x0) == (1, 1) else \
            f"region rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1}"
        ax.set(title=where, ylabel="-ln T")
        ax.legend(fontsize=8)
        axr.axhline(0.0, color="0.6", lw=0.8)
        axr.plot(e, measured_in_window - curve, ".-", ms=3, lw=0.8, color="C3")
        axr.set(xlabel="energy (eV)", ylabel="residual")
        self.box.set_bounds(x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0)
        self.fig.canvas.draw_idle()
