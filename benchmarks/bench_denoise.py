"""Benchmark of the denoisers against classical pipelines, in-family and on the foreign family.

Two families of simulated stacks, reported separately: the held-out stacks of notebook 01
(in-family: the simulator the networks were trained on) and the foreign family of
:mod:`xanes_lib.simulation.foreign` (another phantom generator, chemistry, beam, energy grid
and perturbed references; never used to train or choose anything). On each stack it scores
the raw stack; Gaussian smoothing, total variation, non-local means and PCA truncation, each
at its best parameter chosen with the truth; the same after our low-rank beam background
(``lowrank+<method>``); the Gaussian width chosen without the truth (``self_tuned`` and
``lowrank+self_tuned``, :func:`xanes_lib.denoising.strength.self_tuned_gaussian`); the paper
variant (tiled and resized to 256); our network alone (``ours_network``) and our pipeline
with the strength chosen per stack (``ours``), and the same after adapting the network to the
stack without its truth (``ours_adapted``: notebook 03's ``denoising.adapt`` with its defaults;
``--skip-adapt`` leaves it out). Scores: oxidation-state RMSE and bias inside
the mask, RMSE within 3 px of boundaries, 2-sigma coverage, the unseen-phase ROC AUC of the
fit residual where the stack has a foreign phase, background error. The foreign family is
fitted with the energy-shift calibration of notebook 04 (its references are perturbed). It
also times the inference of a 60 x 1024 x 1024 stack. Writes JSON to
``benchmarks/results/`` and prints the ratio of ours to each baseline.

Usage::

    python benchmarks/bench_denoise.py [--data-dir data/derived] [--skip-timing]
                                       [--skip-in-family] [--skip-adapt] [--paper-tiled]
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

from xanes_lib import __version__, denoising, evaluation, io, simulation

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"Ni_NMC811_dose300": "test_Ni_NMC811_dose300_000.h5",
         "Ni_NMC811_dose1000": "test_Ni_NMC811_dose1000_000.h5",
         "Ni_NMC811_dose3000": "test_Ni_NMC811_dose3000_000.h5",
         "Co_NMC811_dose1000": "test_Co_NMC811_dose1000_000.h5",
         "Co_NMC811_dose3000": "test_Co_NMC811_dose3000_000.h5"}
#: Baselines ours is compared with: (summary label, pipelines among which the best is taken).
BASELINES = {"classical": list(evaluation.CLASSICAL_GRID) + ["raw"], "self_tuned": ["self_tuned"],
             "lowrank_self_tuned": ["lowrank+self_tuned"]}


def _round(d):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def score_adapted(denoiser, st, gt, *, fit_shift: bool = False) -> dict:
    """Ours after adaptation to the stack (notebook 03's ``adapt``, defaults), then as ``ours``."""
    adapted = denoising.adapt(denoiser, st.transmission, st.energies_eV, element=st.element, progress=False)
    sc = evaluation.run_network(adapted.denoiser, st, gt, select=True, fit_shift=fit_shift)
    sc["params"].update(kept_round=adapted.best_epoch, rounds=len(adapted.history) - 1,
                        stop_reason=adapted.stop_reason)
    sc["seconds"] = round(adapted.seconds + sc["seconds"], 1)
    return sc


def score_stack(st, gt, models: dict, *, fit_shift: bool = False, adapt=None) -> dict:
    """All pipelines on one stack (``adapt``: the denoiser to adapt to it, or None)."""
    out = evaluation.run_classical(st, gt, fit_shift=fit_shift)
    hybrid = evaluation.run_hybrid(st, gt, fit_shift=fit_shift)
    out.update(hybrid)
    out["self_tuned"] = evaluation.run_self_tuned(st, gt, fit_shift=fit_shift)
    out["lowrank+self_tuned"] = evaluation.run_self_tuned(st, gt, lowrank=True, fit_shift=fit_shift)
    for name, (ck, resize, select) in models.items():
        out[name] = evaluation.run_network(ck, st, gt, resize_to=resize, select=select, fit_shift=fit_shift)
    ours_names = ("ours", "ours_network")
    if adapt is not None:
        out["ours_adapted"] = score_adapted(adapt, st, gt, fit_shift=fit_shift)
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
    return {"pipelines": {k: _round(v) for k, v in out.items()}, "summary": _round(summary)}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / "data" / "derived"))
    ap.add_argument("--paper", default=str(ROOT / "data" / "denoiser_paper.pt"))
    ap.add_argument("--ours", default=str(ROOT / "data" / "denoiser_latent.pt"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_denoise.json"))
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-in-family", action="store_true")
    ap.add_argument("--skip-adapt", action="store_true", help="do not score ours after adaptation")
    ap.add_argument("--paper-tiled", action="store_true", help="also score the paper variant tiled")
    args = ap.parse_args(argv)
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
    data = Path(args.data_dir)
    for name, fname in ({} if args.skip_in_family else TESTS).items():
        path = data / fname
        if not path.is_file():
            print(f"missing {path}: run notebook 01 first", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        scores = score_stack(io.read_stack(path), io.read_ground_truth(path), models, adapt=adapt)
        report["in_family"][name] = {"file": fname, **scores}
        _print_stack(f"in-family {name}", report["in_family"][name], time.perf_counter() - t0)
    for name, kwargs in simulation.FOREIGN_FAMILIES.items():
        t0 = time.perf_counter()
        st, gt = simulation.simulate_foreign_family(name)
        report["foreign_family"][name] = {"settings": kwargs,
                                          **score_stack(st, gt, models, fit_shift=True, adapt=adapt)}
        _print_stack(f"foreign {name}", report["foreign_family"][name], time.perf_counter() - t0)
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
