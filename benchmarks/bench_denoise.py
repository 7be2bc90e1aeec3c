"""Benchmark of the denoisers against classical pipelines, in-family and on the foreign family.

Two families of simulated stacks, reported separately: in-family (the simulator the networks
were trained on): the held-out stacks of notebook 01 (files in ``data/derived``), three at the
doses notebook 01 does not write (Ni 5000, Co 300 and 5000 photons, :data:`IN_FAMILY_DOSES`) and
two stacks with one particle in a foreign phase, simulated here (:data:`IN_FAMILY_FOREIGN`); and the
foreign family of :mod:`xanes_lib.simulation.foreign` (another phantom generator, chemistry,
beam, energy grid and perturbed references; never used to train or choose anything). On each
stack it scores the raw stack; Gaussian smoothing, total variation, non-local means and PCA truncation, each
at its best parameter chosen with the truth; the same after our low-rank beam background
(``lowrank+<method>``); the Gaussian width chosen without the truth (``self_tuned`` and
``lowrank+self_tuned``, :func:`xanes_lib.denoising.strength.self_tuned_gaussian`); the paper
variant (tiled and resized to 256); our network alone (``ours_network``) and our pipeline
with the strength chosen per stack (``ours``), and the same after adapting the network to the
stack without its truth (``ours_adapted``: notebook 03's ``denoising.adapt`` with its defaults;
``--skip-adapt`` leaves it out). Scores: oxidation-state RMSE and bias inside
the mask, RMSE within 3 px of boundaries, 2-sigma coverage, the unseen-phase ROC AUC of the
fit residual where the stack has a foreign phase, background error. Its ``limits``: the
Cramer-Rao bound of the state for the stack's photon counts (per pixel and pooled over 5 x 5
pixels, :func:`xanes_lib.evaluation.physical_limits`) and the spread of the true state (the
RMSE of a map of one value), each with ours over it in the summary. Where it has one, the
stack's ``unexplained`` entry gives what to read those AUCs against: ``ceiling_auc``, the same
AUC for the fit of the noise-free truth (:func:`xanes_lib.evaluation.unexplained_auc_ceiling`),
``gaussian2_auc`` for a Gaussian of 2 px of the raw stack (issue 14's yardstick), and
``flag_auc``, ``flagged_foreign``, ``flagged_others``: the AUC and the flags of the test
notebook 04 flags the phase with, on the raw stack
(:func:`xanes_lib.evaluation.unexplained_flag_scores`). Every pipeline of a foreign-family
stack is fitted with the references' energy shift that notebook 04 calibrates on its raw
stack (:func:`xanes_lib.evaluation.notebook_shift_eV`; the family's references are
perturbed). Notebook 01's held-out stacks drift by up to about a pixel between energies, as
measured stacks do: every pipeline gets them as notebook 04 maps them, aligned first
(:func:`xanes_lib.evaluation.aligned_like_notebook04`; the truth moved into the reference
image's frame, the stack's ``alignment`` entry says what was done; the strength selections
estimate their risk on the common field, as notebook 04 passes it). It
also times the inference of a 60 x 1024 x 1024 stack. Writes JSON to
``benchmarks/results/`` and prints the ratio of ours to each baseline.

Usage::

    python benchmarks/bench_denoise.py [--data-dir data/derived] [--skip-timing]
                                       [--skip-in-family] [--skip-adapt] [--paper-tiled]
                                       [--only NAME [NAME ...]] [--out FILE]

``--only`` scores only the named stacks (keys of ``TESTS``, :data:`IN_FAMILY_DOSES`,
:data:`IN_FAMILY_FOREIGN` or ``simulation.FOREIGN_FAMILIES``), e.g.
``--only Ni_300_foreign_phase Ni_NMC811_dose300_foreign``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from xanes_lib import __version__, denoising, evaluation, io, simulation

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"Ni_NMC811_dose300": "test_Ni_NMC811_dose300_000.h5",
         "Ni_NMC811_dose1000": "test_Ni_NMC811_dose1000_000.h5",
         "Ni_NMC811_dose3000": "test_Ni_NMC811_dose3000_000.h5",
         "Co_NMC811_dose1000": "test_Co_NMC811_dose1000_000.h5",
         "Co_NMC811_dose3000": "test_Co_NMC811_dose3000_000.h5"}
#: In-family stacks with one particle in a foreign phase (``SimulationConfig.foreign_particles``:
#: edge +3 eV, white line damped by 60 %), simulated on the fly: notebook 01's held-out Ni NMC811
#: setting (256 x 256 px of 100 nm, 2 % background, shipped references) at the dose, without
#: drift (notebook 04 aligns before its test, the pipelines here do not). Their seeds follow
#: notebook 01's scheme, a split of their own: ``split_seeds(0, "foreign_phase", n)`` in this order
#: (0: its default master seed). ``split_seeds`` keys a split by the first 4 bytes of its name, so
#: ``"fore"`` differs from notebook 01's ``"trai"``, ``"val"``, ``"new"`` and ``"test"`` (from which its
#: held-out stacks take one seed each); checked: no training or validation seed of 64 + 8 stacks.
IN_FAMILY_FOREIGN = {"Ni_NMC811_dose300_foreign": 300.0, "Ni_NMC811_dose1000_foreign": 1000.0}
#: In-family held-out stacks at the doses notebook 01 does not write (the dose grid 300 / 1000 /
#: 5000 photons for Ni and Co), simulated on the fly as notebook 01 makes its held-out stacks
#: (256 x 256 px of 100 nm, NMC811, 2 % background of gradients and blobs, the shipped
#: references, drawn blur and drift: aligned like notebook 04's). Seeds: a split of their own,
#: ``split_seeds(0, "dose_grid", n)`` in this order; checked: none among the 64 + 8 training
#: and validation seeds, notebook 01's held-out, new-measurement and foreign-phase seeds.
IN_FAMILY_DOSES = {"Ni_NMC811_dose5000": ("Ni", 5000.0), "Co_NMC811_dose300": ("Co", 300.0),
                   "Co_NMC811_dose5000": ("Co", 5000.0)}
#: Baselines ours is compared with: (summary label, pipelines among which the best is taken).
BASELINES = {"classical": list(evaluation.CLASSICAL_GRID) + ["raw"], "self_tuned": ["self_tuned"],
             "lowrank_self_tuned": ["lowrank+self_tuned"]}


def _round(d):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def simulate_in_family_foreign(name: str):
    """Simulate the stack of :data:`IN_FAMILY_FOREIGN` named ``name``: (stack, truth, settings)."""
    seed = dict(zip(IN_FAMILY_FOREIGN, simulation.split_seeds(0, "foreign_phase", len(IN_FAMILY_FOREIGN)),
                    strict=True))[name]
    base = simulation.SimulationConfig(element="Ni").replace(phantom_shape=(256, 256),
                                                             phantom_pixel_size_nm=100.0)
    dose = IN_FAMILY_FOREIGN[name]
    cfg = simulation.sample_config(np.random.default_rng([seed, 1]), base, dose_range=(dose, dose),
                                   background_range=(0.02, 0.02), compositions=("NMC811",))
    cfg = cfg.replace(reference_jitter=0.0, drift_px=0.0, foreign_particles=1)
    st, gt = simulation.simulate_stack(cfg, seed=seed)
    return st, gt, {"seed": seed, "dose": dose, "config": cfg.to_attrs()}


def simulate_in_family_dose(name: str):
    """Simulate the stack of :data:`IN_FAMILY_DOSES` named ``name``: (stack, truth, settings)."""
    seed = dict(zip(IN_FAMILY_DOSES, simulation.split_seeds(0, "dose_grid", len(IN_FAMILY_DOSES)),
                    strict=True))[name]
    element, dose = IN_FAMILY_DOSES[name]
    base = simulation.SimulationConfig(element=element).replace(phantom_shape=(256, 256),
                                                                phantom_pixel_size_nm=100.0)
    cfg = simulation.sample_config(np.random.default_rng([seed, 1]), base, dose_range=(dose, dose),
                                   background_range=(0.02, 0.02), compositions=("NMC811",))
    cfg = cfg.replace(reference_jitter=0.0)
    st, gt = simulation.simulate_stack(cfg, seed=seed)
    return st, gt, {"seed": seed, "dose": dose, "config": cfg.to_attrs()}


def score_unexplained(st, gt, *, fit_shift: bool | float = False) -> dict:
    """What the unseen-phase AUCs of a stack with a foreign phase are to be read against."""
    # Issue 14's yardstick: the residual of a Gaussian of sigma 2 px of the raw stack.
    smoothed = ndimage.gaussian_filter(st.transmission, (0, 2.0, 2.0))
    gaussian2 = evaluation.oxidation_state_fit(smoothed, st.energies_eV, st.element, mask=gt.mask,
                                               fit_shift=fit_shift)
    return {"ceiling_auc": evaluation.unexplained_auc_ceiling(st, gt, fit_shift=fit_shift),
            "gaussian2_auc": evaluation.unexplained_auc(gaussian2, gt),
            **evaluation.unexplained_flag_scores(st, gt)}


def score_adapted(denoiser, st, gt, *, fit_shift: bool | float = False, field=None) -> dict:
    """Ours after adaptation to the stack (notebook 03's ``adapt``, defaults), then as ``ours``."""
    adapted = denoising.adapt(denoiser, st.transmission, st.energies_eV, element=st.element, progress=False)
    sc = evaluation.run_network(adapted.denoiser, st, gt, select=True, fit_shift=fit_shift, field=field)
    sc["params"].update(kept_round=adapted.best_epoch, rounds=len(adapted.history) - 1,
                        stop_reason=adapted.stop_reason)
    sc["seconds"] = round(adapted.seconds + sc["seconds"], 1)
    return sc


def score_stack(st, gt, models: dict, *, fit_shift: bool | float = False, adapt=None, field=None) -> dict:
    """All pipelines on one stack (``adapt``: the denoiser to adapt to it, or None; ``field``: the
    common field of an aligned stack, where the risk of the strength selections is estimated)."""
    out = evaluation.run_classical(st, gt, fit_shift=fit_shift)
    hybrid = evaluation.run_hybrid(st, gt, fit_shift=fit_shift)
    out.update(hybrid)
    out["self_tuned"] = evaluation.run_self_tuned(st, gt, fit_shift=fit_shift, field=field)
    out["lowrank+self_tuned"] = evaluation.run_self_tuned(st, gt, lowrank=True, fit_shift=fit_shift,
                                                          field=field)
    for name, (ck, resize, select) in models.items():
        out[name] = evaluation.run_network(ck, st, gt, resize_to=resize, select=select, fit_shift=fit_shift,
                                           field=field)
    ours_names = ("ours", "ours_network")
    if adapt is not None:
        out["ours_adapted"] = score_adapted(adapt, st, gt, fit_shift=fit_shift, field=field)
        ours_names += ("ours_adapted",)
    summary = {}
    for label, names in {**BASELINES, "hybrid": list(hybrid)}.items():
        best = min(names, key=lambda k: out[k]["rmse"])
        best_b = min(names, key=lambda k: out[k]["rmse_boundary"])
        summary[f"best_{label}"], summary[f"best_{label}_boundary"] = best, best_b
        for ours in ours_names:
            summary[f"{ours}_over_best_{label}_rmse"] = out[ours]["rmse"] / out[best]["rmse"]
            summary[f"{ours}_over_best_{label}_boundary_rmse"] = (out[ours]["rmse_boundary"]
                                                                  / out[best_b]["rmse_boundary"])
    limits = evaluation.physical_limits(st, gt)
    for ours in ours_names:
        summary[f"{ours}_over_pooled_bound_rms"] = out[ours]["rmse"] / limits["pooled_rms"]
        summary[f"{ours}_over_truth_state_std"] = out[ours]["rmse"] / limits["truth_state_std"]
    scores = {"pipelines": {k: _round(v) for k, v in out.items()}, "summary": _round(summary),
              "limits": _round(limits)}
    if gt.foreign_mask is not None and gt.foreign_mask.any():
        scores["unexplained"] = _round(score_unexplained(st, gt, fit_shift=fit_shift))
    return scores


def _print_stack(name: str, s: dict, seconds: float) -> None:
    print(f"{name} ({seconds:.0f} s):")
    for k, v in s["pipelines"].items():
        auc = v.get("unexplained_auc", np.nan)
        auc = "" if np.isnan(auc) else f"  unseen-phase AUC {auc:.2f}"
        print(f"  {k:22s} RMSE {v['rmse']:.3f}  bias {v['bias']:+.3f}  boundary {v['rmse_boundary']:.3f}  "
              f"coverage {v['coverage_2sigma']:.2f}{auc}  {v.get('params') or ''}")
    for label in (*BASELINES, "hybrid"):
        sm = s["summary"]
        adapted = sm.get(f"ours_adapted_over_best_{label}_rmse")
        print(f"  ours / best {label} ({sm[f'best_{label}']}): {sm[f'ours_over_best_{label}_rmse']:.2f}, "
              f"near boundaries {sm[f'ours_over_best_{label}_boundary_rmse']:.2f} "
              f"(network alone {sm[f'ours_network_over_best_{label}_rmse']:.2f}"
              + ("" if adapted is None else f", after adaptation {adapted:.2f}") + ")")
    lim, sm = s["limits"], s["summary"]
    print(f"  limits: Cramer-Rao per pixel (median) {lim['per_pixel_median']:.3f}, pooled 5 x 5 RMS "
          f"{lim['pooled_rms']:.3f} (ours {sm['ours_over_pooled_bound_rms']:.2f}x); "
          f"a map of one value {lim['truth_state_std']:.3f} (ours {sm['ours_over_truth_state_std']:.2f}x)")
    u = s.get("unexplained")
    if u is not None:
        print(f"  unseen phase: noise-free ceiling AUC {u['ceiling_auc']:.2f}; Gaussian 2 px of the raw "
              f"stack {u['gaussian2_auc']:.2f}; notebook 04's test on the raw "
              f"stack: AUC {u['flag_auc']:.2f}, flags {u['flagged_foreign']:.1%} of the phase and "
              f"{u['flagged_others']:.2%} of the other sample pixels (shift {u['shift_eV']:+.2f} eV)")


def time_inference(models: dict, path: Path, size: int = 1024, n_energies: int = 60) -> dict:
    """Seconds to denoise an (n_energies, size, size) stack built by tiling a test stack."""
    st = io.read_stack(path)
    idx = np.linspace(0, st.energies_eV.size - 1, n_energies).round().astype(int)
    reps = int(np.ceil(size / st.transmission.shape[1]))
    big = np.tile(st.transmission[idx], (1, reps, reps))[:, :size, :size]
    times = {}
    for name, (ck, resize, select) in models.items():
        if ck.variant == "paper" and resize is None:
            # Full resolution is too slow to run whole on a CPU: time one 512 x 512 tile of all
            # energies and scale by the number of tiles.
            one = ck.denoise(big[:, :512, :512], st.energies_eV[idx], element=st.element, tile=512, margin=64)
            n_tiles = int(np.ceil(size / 384)) ** 2
            times[name] = {"seconds": one.seconds / one.tiles * n_tiles, "extrapolated_from_tiles": one.tiles}
            continue
        res = ck.denoise(big, st.energies_eV[idx], element=st.element, resize_to=resize, select=select)
        times[name] = {"seconds": res.seconds, "tiles": res.tiles}
    return {"shape": [n_energies, size, size], **times}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / "data" / "derived"))
    ap.add_argument("--paper", default=str(ROOT / "data" / "denoiser_paper.pt"))
    ap.add_argument("--ours", default=str(ROOT / "data" / "denoiser_latent.pt"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_denoise.json"))
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-in-family", action="store_true")
    ap.add_argument("--skip-adapt", action="store_true", help="do not score ours after adaptation")
    ap.add_argument("--paper-tiled", action="store_true", help="also score the paper variant tiled")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="score only these stacks (in-family or foreign names; default: all)")
    return ap


def _stack_names(args, ap) -> tuple[list, list, list, list]:
    """The in-family files, in-family dose-grid and foreign-phase stacks, and foreign-family stacks."""
    in_family = not args.skip_in_family
    groups = [list(TESTS) if in_family else [], list(IN_FAMILY_DOSES) if in_family else [],
              list(IN_FAMILY_FOREIGN) if in_family else [], list(simulation.FOREIGN_FAMILIES)]
    if args.only is None:
        return groups
    known = [*TESTS, *IN_FAMILY_DOSES, *IN_FAMILY_FOREIGN, *simulation.FOREIGN_FAMILIES]
    unknown = sorted(set(args.only) - set(known))
    if unknown:
        ap.error(f"unknown stack name(s) {unknown} for --only; choose from {known}")
    return [[n for n in g if n in args.only] for g in groups]


def _scored(label: str, st, gt, models: dict, *, fit_shift: bool | float = False, adapt=None, field=None,
            **meta) -> dict:
    """Score one stack (:func:`score_stack`), print it and return its report entry."""
    t0 = time.perf_counter()
    entry = {**meta, **score_stack(st, gt, models, fit_shift=fit_shift, adapt=adapt, field=field)}
    _print_stack(label, entry, time.perf_counter() - t0)
    return entry


def _scored_aligned(label: str, st, gt, models: dict, *, adapt=None, **meta) -> dict:
    """Score a drifting in-family stack as notebook 04 maps it: aligned first where it drifts."""
    st, gt, aligned = evaluation.aligned_like_notebook04(st, gt)
    field = aligned.pop("common_mask")
    return _scored(label, st, gt, models, adapt=adapt, field=field, **meta,
                   alignment={**aligned, "common_field_share": round(float(field.mean()), 4)})


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    files, in_family_doses, in_family_foreign, foreign = _stack_names(args, ap)
    data = Path(args.data_dir)
    missing = [data / TESTS[n] for n in files if not (data / TESTS[n]).is_file()]
    if missing:
        print(f"missing {missing[0]}: run notebook 01 first", file=sys.stderr)
        return 1
    paper, ours = denoising.load_checkpoint(args.paper), denoising.load_checkpoint(args.ours)
    # The paper variant at full resolution (tiled) takes minutes per stack on a CPU: only with --paper-tiled.
    models = {"paper_resize256": (paper, 256, False), "ours_network": (ours, None, False),
              "ours": (ours, None, True)}
    if args.paper_tiled:
        models["paper_tiled"] = (paper, None, False)
    report = {"package_version": __version__, "torch": torch.__version__, "machine": platform.machine(),
              "threads": torch.get_num_threads(),
              "checkpoints": {k: {"variant": ck.variant, "steps": ck.meta["step"], "seed": ck.meta["seed"]}
                              for k, (ck, _, _) in models.items()},
              "in_family": {}, "foreign_family": {}}
    adapt = None if args.skip_adapt else ours
    in_family, foreign_family = report["in_family"], report["foreign_family"]
    for name in files:
        path = data / TESTS[name]
        st, gt = io.read_stack(path), io.read_ground_truth(path)
        in_family[name] = _scored_aligned(f"in-family {name}", st, gt, models, adapt=adapt, file=TESTS[name])
    for name in in_family_doses:
        st, gt, settings = simulate_in_family_dose(name)
        in_family[name] = _scored_aligned(f"in-family {name}", st, gt, models, adapt=adapt,
                                          simulated=settings)
    for name in in_family_foreign:
        st, gt, settings = simulate_in_family_foreign(name)
        in_family[name] = _scored(f"in-family {name}", st, gt, models, adapt=adapt, simulated=settings)
    for name in foreign:
        st, gt = simulation.simulate_foreign_family(name)
        # Every pipeline is fitted with the shift notebook 04 calibrates on the raw stack (the
        # references are perturbed); a calibration per denoised output was measured to be
        # hijacked by the foreign phase on one pipeline's output (+0.50 eV, bias -0.18).
        foreign_family[name] = _scored(f"foreign {name}", st, gt, models,
                                       fit_shift=evaluation.notebook_shift_eV(st), adapt=adapt,
                                       settings=simulation.FOREIGN_FAMILIES[name])
    if not args.skip_timing:
        timing_models = {"ours_network": models["ours_network"], "ours": models["ours"]}
        report["timing"] = time_inference(timing_models, data / TESTS["Ni_NMC811_dose300"])
        print("inference of", report["timing"]["shape"], {k: round(v["seconds"], 1) for k, v in
                                                           report["timing"].items() if isinstance(v, dict)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
