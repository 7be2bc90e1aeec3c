r"""Calibration of the shipped reference library on measured spectra, and its command line.

Recalibrate the shipped library with::

    python -m xanes_lib.spectra calibrate --measured-dir ../shared/data/reference_spectra/Ni \
        --out data/reference_library.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .edge_fit import derive_params, fit_edge_model
from .measured import load_measured_reference
from .parametric import EdgeParams, edge_model, half_step_energy, model_edge_energy, model_white_line_energy
from .references import (
    _LIBRARY_FORMAT,
    _LIBRARY_VERSION,
    ParametricReference,
    default_library_path,
    save_reference_library,
)

__all__ = [
    "DERIVED", "calibrate_library", "main",
]


_MEASURED = MappingProxyType({"Ni2+": ("ref_NiO.txt", "NiO", 2),
                              "Ni3+": ("ref_LiNiO2.txt", "LiNiO2", 3)})
_LICENCE = ("Measured spectra from the PyXAS project (Mingyuan Ge, Brookhaven National "
            "Laboratory), Modified BSD licence (see LICENSE-pyxas beside the measured files); "
            "only fitted model parameters are shipped here, not the measured data.")
_RELATIVE_NEAR_EDGE_WINDOW_EV = (-30.0, 100.0)   # eV around e0, for the reported near-edge RMS

#: Assumptions behind the derived references (targets in eV); see data/REFERENCES.md.
DERIVED: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "Ni4+": MappingProxyType(dict(
        base="Ni3+", element="Ni", oxidation_state=4, half_step_shift_eV=1.2,
        wl_amp_scale=0.85, wl_width_scale=1.15,
        assumptions=(
            "Not fitted to a measured Ni4+ standard (none is shipped). Shape of the fitted Ni3+ "
            "(LiNiO2) model with the half-step edge moved +1.2 eV above Ni3+ (literature on "
            "charged LiNiO2 / Ni-rich NMC reports about +1 to +1.5 eV from Ni3+ to Ni4+), and a "
            "weaker (x0.85 height) and broader (x1.15 FWHM) white line, as reported "
            "qualitatively for delithiated layered oxides. Pre-edge, post-edge peaks and "
            "oscillations move with the edge unchanged."))),
    "Co3+": MappingProxyType(dict(
        base="Ni3+", element="Co", oxidation_state=3, half_step_eV=7721.0, peak_eV=7727.0,
        pre_edge_eV=7709.5, wl_amp_scale=1.0, wl_width_scale=1.0,
        assumptions=(
            "Not fitted to a measured Co spectrum (none is shipped). Shape parameters (widths, "
            "amplitudes, post-edge peaks and oscillations in k) of the fitted Ni3+ (LiNiO2) "
            "model, assuming isostructural layered LiCoO2 (Co3+) has a similar K-edge shape "
            "(this carries over LiNiO2's small split first-shell oscillation term, which "
            "undistorted LiCoO2 lacks), moved to the Co K-edge (tabulated 7709 eV, xraydb): "
            "half-step edge at 7721.0 eV, white-line maximum at 7727.0 eV and pre-edge peak at "
            "7709.5 eV, typical literature values for LiCoO2. The Co energy scale is the "
            "literature's, independent of the beamline calibration of the measured Ni "
            "spectra."))),
    "Co4+": MappingProxyType(dict(
        base="Co3+", element="Co", oxidation_state=4, half_step_shift_eV=0.9,
        wl_amp_scale=0.92, wl_width_scale=1.08,
        assumptions=(
            "Not fitted to a measured Co4+ standard. Derived from the Co3+ model with the "
            "half-step edge moved +0.9 eV (delithiated LiCoO2 / charged NMC show a small Co "
            "K-edge shift, below about 1 eV, which is why Co oxidation states are hard to "
            "resolve) and a slightly weaker (x0.92) and broader (x1.08) white line. Pre-edge, "
            "post-edge peaks and oscillations move with the edge unchanged."))),
})


def _rounded(p: EdgeParams, ndigits: int = 6) -> EdgeParams:
    return EdgeParams(**{k: round(v, ndigits) for k, v in p.to_dict().items()})


def calibrate_library(measured_dir, *, verbose: bool = False) -> dict:
    """Fit the model to the measured NiO / LiNiO2 spectra and derive Ni4+, Co3+, Co4+.

    Parameters
    ----------
    measured_dir : str or Path
        Folder holding ``ref_NiO.txt`` and ``ref_LiNiO2.txt`` (energy in keV or eV,
        normalised absorption).
    verbose : bool
        Print a summary of each fit.

    Returns
    -------
    dict
        The library document, ready for :func:`save_reference_library`.

    Raises
    ------
    FileNotFoundError
        If a measured file is missing.
    """
    d = Path(measured_dir)
    missing = [f for f, _, _ in _MEASURED.values() if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} lacks the measured spectra {missing}; pass the folder "
                                "holding ref_NiO.txt and ref_LiNiO2.txt as --measured-dir.")
    refs: dict[str, ParametricReference] = {}
    for name, (fname, compound, ox) in _MEASURED.items():
        meas = load_measured_reference(d / fname, name=name, element="Ni", oxidation_state=ox)
        e, mu = meas.energies_eV, meas.values
        fit = fit_edge_model(e, mu)
        params = _rounded(fit.params)
        resid = edge_model(e, params) - mu
        sel = ((e >= params.e0 + _RELATIVE_NEAR_EDGE_WINDOW_EV[0])
               & (e <= params.e0 + _RELATIVE_NEAR_EDGE_WINDOW_EV[1]))
        prov = {
            "kind": "fitted",
            "compound": compound,
            "source_file": fname,
            "licence": _LICENCE,
            "fit_range_eV": [round(float(e[0]), 2), round(float(e[-1]), 2)],
            "fit_points": int(e.size),
            "fit_rms_residual": round(float(np.sqrt(np.mean(resid ** 2))), 5),
            "fit_rms_residual_near_edge": round(float(np.sqrt(np.mean(resid[sel] ** 2))), 5),
            "near_edge_window_eV": [round(params.e0 + _RELATIVE_NEAR_EDGE_WINDOW_EV[0], 1),
                                    round(params.e0 + _RELATIVE_NEAR_EDGE_WINDOW_EV[1], 1)],
            "fit_max_abs_residual": round(float(np.max(np.abs(resid))), 5),
            "fit_stderr": {k: (None if v is None else float(f"{v:.3g}")) for k, v in fit.stderr.items()},
            "measured_half_step_eV": round(half_step_energy(e, mu), 3),
            "model_half_step_eV": round(model_edge_energy(params), 3),
            "assumptions": (f"Fitted by least squares (lmfit) over the whole measured range of "
                            f"{fname} ({compound}, Ni{ox}+), energy unit (keV or eV) detected from its "
                            "magnitude and converted to eV; "
                            "the spectrum is taken as normalised as published (edge step 1)."),
        }
        refs[name] = ParametricReference(name, "Ni", "K", ox, params, prov)
        if verbose:
            print(f"{name}: {fname}: RMS residual {prov['fit_rms_residual']:.4f} (near edge "
                  f"{prov['fit_rms_residual_near_edge']:.4f}, max {prov['fit_max_abs_residual']:.4f}); "
                  f"half-step {prov['measured_half_step_eV']:.2f} eV measured, "
                  f"{prov['model_half_step_eV']:.2f} eV model")
    for name, spec in DERIVED.items():
        base = refs[spec["base"]]
        base_half = model_edge_energy(base.params)
        target = spec.get("half_step_eV", base_half + spec.get("half_step_shift_eV", 0.0))
        params = _rounded(derive_params(base.params, half_step_eV=target,
                                        peak_eV=spec.get("peak_eV"),
                                        pre_edge_eV=spec.get("pre_edge_eV"),
                                        wl_amp_scale=spec["wl_amp_scale"],
                                        wl_width_scale=spec["wl_width_scale"]))
        prov = {
            "kind": "derived",
            "derived_from": spec["base"],
            "target_half_step_eV": round(float(target), 3),
            "target_white_line_peak_eV": spec.get("peak_eV"),
            "target_pre_edge_eV": spec.get("pre_edge_eV"),
            "white_line_amplitude_scale": spec["wl_amp_scale"],
            "white_line_width_scale": spec["wl_width_scale"],
            "model_half_step_eV": round(model_edge_energy(params), 3),
            "model_white_line_peak_eV": round(model_white_line_energy(params), 3),
            "assumptions": spec["assumptions"],
        }
        refs[name] = ParametricReference(name, spec["element"], "K", spec["oxidation_state"],
                                         params, prov)
        if verbose:
            print(f"{name}: derived from {spec['base']}: half-step {prov['model_half_step_eV']:.2f} eV, "
                  f"white-line peak {prov['model_white_line_peak_eV']:.2f} eV")
    return {
        "format": _LIBRARY_FORMAT,
        "format_version": _LIBRARY_VERSION,
        "energy_unit": "eV",
        "model": ("xanes_lib.spectra.edge_model: error-function edge step (e0, edge_width FWHM) "
                  "+ Gaussian pre-edge, white line, peak2, peak3 (amp, offset from e0, FWHM) + "
                  "W x [sum of 3 damped oscillations amp sin(2 k r + phase) exp(-2 sigma2 k^2), "
                  "k = sqrt(0.2625 (E - e0)) 1/A], W = 0.5 (1 + erf((E - e0 - osc_onset) / 5 eV)) "
                  "+ step x post_slope (E - e0)/1000. Energies, offsets, widths in eV; r in "
                  "Angstrom; sigma2 in Angstrom^2; post_slope per keV."),
        "calibration_command": ("python -m xanes_lib.spectra calibrate --measured-dir "
                                "../shared/data/reference_spectra/Ni --out data/reference_library.json"),
        "documentation": "data/REFERENCES.md",
        "references": {n: r.to_dict() for n, r in refs.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m xanes_lib.spectra calibrate --measured-dir DIR --out FILE``.

    Returns 0 on success and 2 (with the reason on stderr) when the measured spectra are
    missing or unreadable; the output file is then left untouched.
    """
    parser = argparse.ArgumentParser(
        prog="python -m xanes_lib.spectra",
        description="Reference spectra of xanes_lib. 'calibrate' refits the parametric model to "
                    "the measured NiO / LiNiO2 spectra, derives Ni4+, Co3+ and Co4+, and writes "
                    "the reference library (JSON, atomically).")
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="rebuild the reference library from measured spectra")
    cal.add_argument("--measured-dir", required=True, type=Path,
                     help="folder holding ref_NiO.txt and ref_LiNiO2.txt")
    cal.add_argument("--out", type=Path, default=default_library_path(),
                     help="output JSON (default: the package's data/reference_library.json)")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        try:
            doc = calibrate_library(args.measured_dir, verbose=True)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = save_reference_library(doc, args.out)
        print(f"wrote {out}")
    return 0

