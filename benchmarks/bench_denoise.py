"""Benchmark of the denoisers against classical pipelines on held-out simulated stacks.

For the held-out Ni NMC811 low-dose stack and the Co NMC811 stack of notebook 01 it scores
the raw stack, Gaussian smoothing, total variation, non-local means and PCA truncation (each
at its best parameter, chosen with the truth), the paper variant (tiled at full resolution
and with the published resize-to-256), ours, and the ablation of ours without the physics
terms: oxidation-state RMSE and bias inside the mask, RMSE near edges and chemical
boundaries, 2-sigma coverage, background error inside and outside particles. The same
classical denoisers are also scored after our low-rank beam background (:mod:`xanes_lib.denoising.beam`),
as hybrid pipelines ``lowrank+<method>``: they tell how much of our gain is the background
correction and how much the network. It also times the inference of a 60 x 1024 x 1024
stack. Writes JSON to ``benchmarks/results/``
and prints the ratio of ours to the best classical pipeline.

Usage::

    python benchmarks/bench_denoise.py [--data-dir data/derived] [--skip-timing]
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

from xanes_lib import __version__, denoising, evaluation, io

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"Ni_NMC811_dose300": "test_Ni_NMC811_dose300_000.h5",
         "Co_NMC811_dose1000": "test_Co_NMC811_dose1000_000.h5"}


def _round(d):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def score_stack(path: Path, models: dict) -> dict:
    """All pipelines on one stack."""
    st, gt = io.read_stack(path), io.read_ground_truth(path)
    out = evaluation.run_classical(st, gt)
    hybrid = evaluation.run_hybrid(st, gt)
    out.update(hybrid)
    for name, (ck, resize) in models.items():
        out[name] = evaluation.run_network(ck, st, gt, resize_to=resize)
    summary = {}
    for label, names in (("classical", list(evaluation.CLASSICAL_GRID) + ["raw"]),
                         ("hybrid", list(hybrid))):
        best = min(names, key=lambda k: out[k]["rmse"])
        best_b = min(names, key=lambda k: out[k]["rmse_boundary"])
        summary[f"best_{label}"], summary[f"best_{label}_boundary"] = best, best_b
        if "ours" in out:
            summary[f"ours_over_best_{label}_rmse"] = out["ours"]["rmse"] / out[best]["rmse"]
            summary[f"ours_over_best_{label}_boundary_rmse"] = (out["ours"]["rmse_boundary"]
                                                                / out[best_b]["rmse_boundary"])
    return {"file": path.name, "pipelines": {k: _round(v) for k, v in out.items()},
            "summary": _round(summary)}


def time_inference(models: dict, path: Path, size: int = 1024, n_energies: int = 60) -> dict:
    """Seconds to denoise an (n_energies, size, size) stack built by tiling a test stack."""
    st = io.read_stack(path)
    idx = np.linspace(0, st.energies_eV.size - 1, n_energies).round().astype(int)
    reps = int(np.ceil(size / st.transmission.shape[1]))
    big = np.tile(st.transmission[idx], (1, reps, reps))[:, :size, :size]
    times = {}
    for name, (ck, resize) in models.items():
        if ck.variant == "paper" and resize is None:
            # Full resolution is too slow to run whole on a CPU: time one 512 x 512 tile of all
            # energies and scale by the number of tiles.
            one = ck.denoise(big[:, :512, :512], st.energies_eV[idx], element=st.element, tile=512, margin=64)
            n_tiles = int(np.ceil(size / 384)) ** 2
            times[name] = {"seconds": one.seconds / one.tiles * n_tiles, "extrapolated_from_tiles": one.tiles}
            continue
        res = ck.denoise(big, st.energies_eV[idx], element=st.element, resize_to=resize)
        times[name] = {"seconds": res.seconds, "tiles": res.tiles}
    return {"shape": [n_energies, size, size], **times}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT / "data" / "derived"))
    ap.add_argument("--paper", default=str(ROOT / "data" / "denoiser_paper.pt"))
    ap.add_argument("--ours", default=str(ROOT / "data" / "denoiser_latent.pt"))
    ap.add_argument("--ablation", default=str(ROOT / "data" / "derived" / "denoiser_latent_nophysics.pt"),
                    help="ours trained without the physics terms (notebook 02 writes it); skipped if missing")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_denoise.json"))
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    paper = denoising.load_checkpoint(args.paper)
    models = {"paper_tiled": (paper, None), "paper_resize256": (paper, 256),
              "ours": (denoising.load_checkpoint(args.ours), None)}
    if Path(args.ablation).is_file():
        models["ours_without_physics"] = (denoising.load_checkpoint(args.ablation), None)
    report = {"package_version": __version__, "torch": torch.__version__, "machine": platform.machine(),
              "threads": torch.get_num_threads(),
              "checkpoints": {k: {"variant": ck.variant, "steps": ck.meta["step"], "seed": ck.meta["seed"]}
                              for k, (ck, _) in models.items()},
              "stacks": {}}
    data = Path(args.data_dir)
    for name, fname in TESTS.items():
        path = data / fname
        if not path.is_file():
            print(f"missing {path}: run notebook 01 first", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        report["stacks"][name] = score_stack(path, models)
        s = report["stacks"][name]
        print(f"{name} ({time.perf_counter() - t0:.0f} s):")
        for k, v in s["pipelines"].items():
            print(f"  {k:22s} RMSE {v['rmse']:.3f}  bias {v['bias']:+.3f}  "
                  f"boundary {v['rmse_boundary']:.3f}  coverage {v['coverage_2sigma']:.2f}  "
                  f"background in/out {v['background_ratio_inside']:.2f}/"
                  f"{v['background_ratio_outside']:.2f}")
        for label in ("classical", "hybrid"):
            print(f"  ratio ours / best {label} ({s['summary'][f'best_{label}']}): "
                  f"{s['summary'].get(f'ours_over_best_{label}_rmse', float('nan')):.2f}, "
                  "near boundaries "
                  f"{s['summary'].get(f'ours_over_best_{label}_boundary_rmse', float('nan')):.2f}")
    if not args.skip_timing:
        report["timing"] = time_inference(models, data / TESTS["Ni_NMC811_dose300"])
        print("inference of", report["timing"]["shape"], {k: round(v["seconds"], 1) for k, v in
                                                           report["timing"].items() if isinstance(v, dict)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
