"""Benchmark of the chunked pipeline (xanes_lib.chunked) on stacks larger than memory.

Data: a 512 x 512 stack of the in-family simulator (noise-free transmission and beam
background, 100 energies around the Ni K edge) tiled to the full field, with fresh Poisson
noise in every tile (seeded per tile), written to a Zarr store chunk by chunk; it is never
held in memory whole.

(a1) ``map_stack`` (beam background, survey pass, mask, fit pass, results written) of a
    100 x 2048 x 2048 stack on this machine's threads, with and without the division by the
    beam background: wall time and time of each stage, the process's peak memory, throughput, and
    one plain streaming pass over the same data (read every chunk and sum it) and an
    in-memory ``sum`` of the loaded stack for comparison; accuracy against the tiled truth.
(a2) the same on a 150 x 2048 x 2048 stack (2.3 GiB) on a ``LocalCluster`` of 2 worker
    processes limited to 512 MiB each (the stack is more than twice their total limit);
    each worker's resident memory sampled every 0.25 s.
(b) the whole pipeline (read, denoise with the shipped latent model, fit, write) of a
    65 x 1024 x 1024 stack on this machine's threads, against the in-memory path
    (``denoise_stack`` + the same mapping) on the same stack.
(c) scaling: ``map_stack`` of the (b) stack without denoiser on 1 and 2 workers.

Run from the repository root (about 10 minutes on 2 cores)::

    python benchmarks/bench_scale.py            # full sizes
    python benchmarks/bench_scale.py --quick    # small sizes, to check the script

The JSON result goes to ``benchmarks/results/bench_scale.json`` (``bench_scale_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_fit import PeakMemory, machine_info  # noqa: E402

from xanes_lib import chunked, io, mapping  # noqa: E402
from xanes_lib.evaluation import oxidation_state_metrics  # noqa: E402
from xanes_lib.physics import absorbance  # noqa: E402
from xanes_lib.simulation import write_tiled_stack  # noqa: E402
from xanes_lib.spectra import default_references  # noqa: E402

GIB = float(1 << 30)
TILE = 512


def make_store(path: Path, n_energies: int, size: int, *, seed: int = 0, chunk: int = 256):
    """Write the simulated (n_energies, size, size) stack (see the module docstring); return its truth."""
    return write_tiled_stack(path, n_energies=n_energies, size=size, tile=TILE, seed=seed,
                             chunks=(n_energies, chunk, chunk))


def streaming_pass(store: Path) -> float:
    """Seconds to read every chunk of the store and sum it (on the current scheduler)."""
    lazy = chunked.open_stack(store)
    t0 = time.perf_counter()
    lazy.transmission.sum().compute()
    return time.perf_counter() - t0


def accuracy(results_path: Path, truth) -> dict:
    """RMSE, bias and 2-sigma coverage of the written oxidation-state map against the tiled truth."""
    res = io.read_results(results_path)
    true_mask = truth.full("mask")
    score = oxidation_state_metrics(res.oxidation_state, res.oxidation_state_std,
                                    truth.full("oxidation_state"), res.mask & true_mask)
    return {"rmse": round(score["rmse"], 4), "bias": round(score["bias"], 4),
            "coverage_2sigma": round(score["coverage_2sigma"], 3),
            "mapped_share_of_true_sample": round(float((res.mask & true_mask).sum() / true_mask.sum()), 3)}


def _passes(info, streaming_s: float) -> dict:
    """Seconds of each stage of map_stack, and the fit pass alone over one streaming pass."""
    return {"stage_seconds": {k: round(v, 2) for k, v in info.pass_seconds.items()},
            "fit_pass_over_streaming_pass": round(info.pass_seconds["fit"] / streaming_s, 2)}


def part_a1(work: Path, n_e: int, size: int) -> dict:
    """The 100 x 2048 x 2048 stack on this machine's threads (no memory limit)."""
    truth = make_store(work / "a1.zarr", n_e, size)
    nbytes = n_e * size * size * 4
    out = {"shape": [n_e, size, size], "stack_GiB": round(nbytes / GIB, 3)}
    with chunked.dask_scheduler("threads") as sched:
        out["scheduler"] = sched.describe()
        out["streaming_pass_s"] = round(streaming_pass(work / "a1.zarr"), 2)
        plain = chunked.map_stack(work / "a1.zarr", work / "a1_plain.h5", beam=False)
        with PeakMemory(0.0) as mem:
            info = chunked.map_stack(work / "a1.zarr", work / "a1_results.h5")
    out["without_beam_division"] = {"map_stack_s": round(plain.seconds, 2),
                                    **_passes(plain, out["streaming_pass_s"]),
                                    "accuracy": accuracy(work / "a1_plain.h5", truth)}
    out.update(map_stack_s=round(info.seconds, 2), throughput_GB_s=round(nbytes / 1e9 / info.seconds, 3),
               map_over_streaming_pass=round(info.seconds / out["streaming_pass_s"], 2),
               **_passes(info, out["streaming_pass_s"]),
               process_peak_rss_GiB=round(mem.peak / GIB, 3), peak_memory_method=mem.method,
               accuracy=accuracy(work / "a1_results.h5", truth))
    t0 = time.perf_counter()
    loaded = chunked.open_stack(work / "a1.zarr").transmission.compute(scheduler="threads")
    out["load_into_memory_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    loaded.sum()
    out["in_memory_sum_pass_s"] = round(time.perf_counter() - t0, 2)
    del loaded
    shutil.rmtree(work / "a1.zarr", ignore_errors=True)
    print(f"(a1) {out}", flush=True)
    return out


def part_a2(work: Path, n_e: int, size: int, worker_limit: str) -> dict:
    """A stack more than twice the workers' total memory limit, on a LocalCluster."""
    truth = make_store(work / "a2.zarr", n_e, size, seed=2, chunk=128)
    nbytes = n_e * size * size * 4
    out = {"shape": [n_e, size, size], "stack_GiB": round(nbytes / GIB, 3), "chunks": [n_e, 128, 128]}
    with chunked.dask_scheduler("local-cluster", n_workers=2, memory_limit=worker_limit) as sched:
        limit = sched.memory_limit_bytes
        out.update(scheduler=sched.describe(), worker_memory_limit_GiB=round(limit / GIB, 3),
                   stack_over_total_limit=round(nbytes / (limit * sched.n_workers), 2))
        out["streaming_pass_s"] = round(streaming_pass(work / "a2.zarr"), 2)
        with chunked.WorkerMemory(sched.client) as mem:
            info = chunked.map_stack(work / "a2.zarr", work / "a2_results.h5")
        peaks = sorted(mem.peak.values())
    out.update(map_stack_s=round(info.seconds, 2), throughput_GB_s=round(nbytes / 1e9 / info.seconds, 3),
               map_over_streaming_pass=round(info.seconds / out["streaming_pass_s"], 2),
               **_passes(info, out["streaming_pass_s"]),
               peak_worker_rss_GiB=[round(v / GIB, 3) for v in peaks],
               any_worker_over_limit=bool(peaks and max(peaks) > limit),
               accuracy=accuracy(work / "a2_results.h5", truth))
    shutil.rmtree(work / "a2.zarr", ignore_errors=True)
    print(f"(a2) {out}", flush=True)
    return out


def map_in_memory(t: np.ndarray, e: np.ndarray, refs) -> np.ndarray:
    """Notebook 04's mapping of a whole stack in memory; returns the oxidation-state map."""
    a = absorbance(t.astype(np.float64))
    sample = mapping.significant_mask(a, e, refs)
    fit = mapping.fit_references(t, e, refs, mask=sample.mask, mode="nonneg_sum_to_one",
                                 input_kind="transmission")
    mapping.edge_energy(e, mapping.normalize_spectra(e, a).normalized)
    return fit.oxidation_state


def part_b(work: Path, n_e: int, size: int, checkpoint: Path) -> dict:
    from xanes_lib import denoising

    store = work / "b.zarr"
    truth = make_store(store, n_e, size, seed=1)
    den = denoising.load_checkpoint(checkpoint)
    out = {"shape": [n_e, size, size]}
    with chunked.dask_scheduler("threads") as sched:
        out["scheduler"] = sched.describe()
        info = chunked.map_stack(store, work / "b_results.h5", denoiser=den, checkpoint=checkpoint.name)
    out["chunked_pipeline_s"] = round(info.seconds, 2)
    out["stage_seconds"] = {k: round(v, 2) for k, v in info.pass_seconds.items()}
    out["accuracy_denoised"] = accuracy(work / "b_results.h5", truth)
    out["strength"] = info.denoise
    lazy = chunked.open_stack(store)
    refs = default_references("Ni")
    t0 = time.perf_counter()
    t = lazy.transmission.compute(scheduler="threads")
    res = denoising.denoise_stack(den, t, lazy.energies_eV, element="Ni", progress=False)
    state = map_in_memory(res.denoised, lazy.energies_eV, refs)
    out["in_memory_pipeline_s"] = round(time.perf_counter() - t0, 2)
    written = io.read_results(work / "b_results.h5").oxidation_state
    same = np.isfinite(state) & np.isfinite(written)
    out["max_abs_state_difference_vs_in_memory"] = (float(np.max(np.abs(written[same] - state[same])))
                                                     if same.any() else None)
    print(f"(b) {out}", flush=True)
    return out


def part_c(work: Path) -> dict:
    store = work / "b.zarr"
    out = {}
    for n in (1, 2):
        with chunked.dask_scheduler("local-cluster", n_workers=n, memory_limit="2GiB"):
            info = chunked.map_stack(store, work / f"c{n}.h5")
        out[f"local_cluster_{n}_workers_s"] = round(info.seconds, 2)
        with chunked.dask_scheduler("threads", n_workers=n):
            info = chunked.map_stack(store, work / f"c{n}t.h5")
        out[f"threads_{n}_s"] = round(info.seconds, 2)
    print(f"(c) {out}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the script)")
    parser.add_argument("--parts", default="a1,a2,b,c",
                        help="comma-separated parts to run (default a1,a2,b,c); the others are kept from an "
                             "existing result file")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    big, small, n_small, n_a2 = (1024, 512, 40, 60) if args.quick else (2048, 1024, 65, 150)
    out_path = args.out or HERE / "results" / ("bench_scale_quick.json" if args.quick else "bench_scale.json")
    result = {"machine": machine_info(), "quick": args.quick}
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        parts = set(args.parts.split(","))
        if out_path.exists() and parts != {"a1", "a2", "b", "c"}:
            result = {**json.loads(out_path.read_text()), **result}
        if "a1" in parts:
            result["a1_full_detector"] = part_a1(work, 100, big)
        if "a2" in parts:
            result["a2_larger_than_workers"] = part_a2(work, n_a2, big, "512MiB")
        if "b" in parts:
            weights = HERE.parent / "data" / "denoiser_latent.pt"
            result["b_whole_pipeline"] = part_b(work, n_small, small, weights)
        if "c" in parts:
            if "b" not in parts:
                make_store(work / "b.zarr", n_small, small, seed=1)
            result["c_scaling"] = part_c(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
