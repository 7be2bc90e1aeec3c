"""Benchmark: self-supervised adaptation of the shipped latent denoiser to a 60 x 512 x 512 Co stack.

Simulates a Co K-edge NMC811 stack (60 energies across the edge, 512 x 512 pixels, 1000
photons, bands and rings background, one particle in a phase outside the references), adapts
the shipped weights to it with the default settings and writes the wall time, the rounds and
the true oxidation-state RMSE of the pre-trained model as is and of the adapted one to
``benchmarks/results/bench_adapt.json``. Run: ``python benchmarks/bench_adapt.py``.
"""

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from xanes_lib import denoising, evaluation, simulation

HERE = Path(__file__).resolve().parent


def main(seed: int = 0) -> dict:
    e = simulation.default_energy_grid("Co")
    e = e[np.linspace(0, e.size - 1, 60).round().astype(int)]
    cfg = simulation.SimulationConfig(element="Co", dose=1000.0, energies_eV=tuple(e), foreign_particles=1,
                                      background_patterns=("bands", "rings")).replace(
        phantom_shape=(512, 512), phantom_pixel_size_nm=100.0)
    stack, truth = simulation.simulate_stack(cfg, seed=seed)
    ck = denoising.load_checkpoint(HERE.parent / "data" / "denoiser_latent.pt", device="cpu")

    def rmse(t):
        fitted = evaluation.oxidation_state_fit(t, stack.energies_eV, "Co", mask=truth.mask)
        return evaluation.score_pipeline(fitted, truth)["rmse"]

    as_is = ck.denoise(stack.transmission, stack.energies_eV, element="Co")
    t0 = time.perf_counter()
    res = denoising.adapt(ck, stack.transmission, stack.energies_eV, element="Co",
                          config=denoising.AdaptConfig(seed=seed), progress=False)
    seconds = time.perf_counter() - t0
    out = {"shape": list(stack.transmission.shape), "seed": seed, "adapt_seconds": round(seconds, 1),
           "rounds": res.history[-1]["epoch"], "best_epoch": res.best_epoch, "stop_reason": res.stop_reason,
           "rmse_pretrained_as_is": round(rmse(as_is.denoised), 4),
           "rmse_adapted": round(rmse(res.result.denoised), 4),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_adapt.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
