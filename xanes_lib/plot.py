"""Figures and the interactive explorer of the notebooks (matplotlib, ipywidgets)."""

from __future__ import annotations

import numpy as np

from .physics import absorbance, build_model

__all__ = [
    "show_map", "fitted_curve", "plot_pixel_fit", "explorer",
]


def show_map(ax, image, *, title: str, label: str, cmap: str = "viridis", mask=None, **kwargs):
    """Image with a colour bar; pixels outside ``mask`` are blank.

    Without ``vmin``/``vmax`` the colour range spans the 1st to 99th percentile, so that a
    few outliers do not wash out the map.
    """
    data = np.where(mask, image, np.nan) if mask is not None else image
    finite = np.asarray(data, dtype=np.float64)[np.isfinite(data)]
    if finite.size and "vmin" not in kwargs and "vmax" not in kwargs:
        kwargs["vmin"], kwargs["vmax"] = np.percentile(finite, [1, 99])
    im = ax.imshow(data, cmap=cmap, **kwargs)
    ax.set_title(title)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.figure.colorbar(im, ax=ax, label=label)
    return im


def fitted_curve(fit_result, references, y: int, x: int, half_width: int = 0):
    """Energies, region-mean coefficients and the model absorbance of a pixel or a region.

    The curve is rebuilt from the fitted coefficients with the same design matrix as the
    fit (:func:`xanes_lib.physics.build_model`), references evaluated at ``E - shift``.
    """
    e = fit_result.energies_eV
    basis = [r.spectrum(e - fit_result.shift_eV) for r in references]
    model = build_model(e, basis, background=fit_result.background)
    sl = np.s_[:, max(y - half_width, 0):y + half_width + 1, max(x - half_width, 0):x + half_width + 1]
    coeffs = np.nanmean(fit_result.coefficients[sl].reshape(model.n_params, -1), axis=1)
    return e, coeffs, model.predict(coeffs), model


def plot_pixel_fit(ax, stack, fit_result, references, y: int, x: int, half_width: int = 0):
    """Measured absorbance of a pixel (or a (2h+1)^2 region) with its fit and the references."""
    sl = np.s_[:, max(y - half_width, 0):y + half_width + 1, max(x - half_width, 0):x + half_width + 1]
    a = absorbance(stack.transmission[sl].astype(np.float64)).reshape(stack.energies_eV.size, -1).mean(1)
    e, coeffs, curve, model = fitted_curve(fit_result, references, y, x, half_width)
    ax.plot(stack.energies_eV, a, ".k", ms=3, label="measured")
    ax.plot(e, curve, "-r", label=f"fit, state {fit_result.oxidation_state[y, x]:.2f}"
            f" +/- {fit_result.oxidation_state_std[y, x]:.2f}")
    k = len(references)
    bg = model.matrix[:, k:] @ coeffs[k:]
    for i, r in enumerate(references):
        ax.plot(e, bg + model.matrix[:, i] * coeffs[:k].sum(), "--", lw=0.8, label=f"{r.name} alone")
    where = f"pixel ({y}, {x})" if half_width == 0 else f"region {2 * half_width + 1}^2 at ({y}, {x})"
    ax.set(title=where, xlabel="energy (eV)", ylabel="-ln T")
    ax.legend(fontsize=8)


def explorer(stack, fit_result, references):
    """Interactive explorer: energy slider on the image, pixel/region picker with the fit.

    Returns an ipywidgets widget; without ipywidgets (or without a widget front end, e.g.
    under papermill) call :func:`plot_pixel_fit` and :func:`show_map` for static figures.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    n_e, ny, nx = stack.transmission.shape

    def draw(energy_index, y, x, half_width):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
        show_map(a0, stack.transmission[energy_index], cmap="gray", label="transmission",
                 title=f"T at {stack.energies_eV[energy_index]:.1f} eV")
        a0.add_patch(plt.Rectangle((x - half_width - 0.5, y - half_width - 0.5), 2 * half_width + 1,
                                   2 * half_width + 1, fill=False, color="r"))
        plot_pixel_fit(a1, stack, fit_result, references, y, x, half_width)
        plt.show()

    return w.interactive(draw, energy_index=w.IntSlider(n_e // 2, 0, n_e - 1, description="energy"),
                         y=w.IntSlider(ny // 2, 0, ny - 1), x=w.IntSlider(nx // 2, 0, nx - 1),
                         half_width=w.IntSlider(0, 0, 10, description="region"))
