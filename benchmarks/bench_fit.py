"""Benchmark of the per-pixel valence fit (xanes_lib.mapping.fit_references).

A synthetic 100 x 2048 x 2048 float32 transmission stack (two Ni references, smooth random
thickness / fraction / background maps, 1 % Gaussian noise) is fitted:

- floor: one plain pass over the stack (``stack.sum()``, read only), one copy into a
  pre-touched buffer (read + write), ``stack.copy()`` into fresh memory, and one ``log2``
  pass (the transform the fit cannot avoid): the memory-bandwidth and compute floors;
- ``fit_references`` in the modes unconstrained (first call, a repeat, and on one thread),
  sum_to_one (with a known edge-step map) and
  nonneg_sum_to_one (free edge step), each with uncertainties and residuals;
- peers: per-pixel lmfit and per-pixel ``numpy.linalg.lstsq`` on a random sample of pixels,
  extrapolated to the whole image.

The first call pays for faulting in the fresh pages of its output maps (expensive on this
virtual machine: see ``stack.copy()``); repeated calls reuse freed memory. Peak memory of
each fit is the process's peak resident set (VmHWM, reset before each fit
through /proc/self/clear_refs), compared with the stack size; when the reset is not
available, tracemalloc's peak of numpy allocations plus the stack is reported instead.

Run from the repository root::

    python benchmarks/bench_fit.py                  # full size
    python benchmarks/bench_fit.py --shape 100 256 256 --out benchmarks/results/bench_fit_small.json

The JSON result goes to ``benchmarks/results/bench_fit.json`` by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from xanes_lib import __version__  # noqa: E402
from xanes_lib.io import Stack  # noqa: E402
from xanes_lib.mapping import fit_references  # noqa: E402
from xanes_lib.physics import build_model  # noqa: E402
from xanes_lib.simulation import default_energy_grid  # noqa: E402
from xanes_lib.spectra import default_references  # noqa: E402

GIB = float(1 << 30)


# ------------------------------------------------------------------ machine and memory

def _proc_bytes(path: str, key: str) -> float | None:
    """A "Key: N kB" field of a /proc file in bytes (None where /proc is missing)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _meminfo(key: str) -> float | None:
    return _proc_bytes("/proc/meminfo", key)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {}).get("name", "unknown")
    except (TypeError, AttributeError):
        pass
    return {
        "cpu": _cpu_model(), "cores_available": cores, "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "memory_total_GiB": round((_meminfo("MemTotal") or 0) / GIB, 2),
        "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
        "xanes_lib": __version__,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm(key: str) -> float | None:
    return _proc_bytes("/proc/self/status", key)


class PeakMemory:
    """Peak resident memory of a block (VmHWM after a reset), else tracemalloc's peak."""

    def __init__(self, baseline_bytes: float):
        self.baseline = baseline_bytes
        self.method = None
        self.peak = None

    def __enter__(self):
        if _reset_peak() and _vm("VmHWM") is not None:
            self.method = "VmHWM (peak resident set of the process, reset before the call)"
            self.before = _vm("VmRSS")
        else:
            self.method = "tracemalloc peak of numpy allocations + the stack"
            tracemalloc.start()
        return self

    def __exit__(self, *exc):
        if self.method.startswith("VmHWM"):
            self.peak = _vm("VmHWM")
        else:
            self.before = self.baseline
            self.peak = tracemalloc.get_traced_memory()[1] + self.baseline
            tracemalloc.stop()
        return False


# ------------------------------------------------------------------ synthetic stack

def energies_100() -> np.ndarray:
    """100 energies around the Ni K edge: 10 eV steps before and after, 0.5 eV across."""
    return default_energy_grid("Ni", start_eV=-90.0, fine_step_eV=0.5, fine_to_eV=30.0,
                               stop_eV=140.0)


def smooth_field(shape, rng, lo, hi, n_waves=6) -> np.ndarray:
    """A smooth random (Y, X) float32 field between lo and hi (sum of plane waves)."""
    y = np.linspace(0, 1, shape[0], dtype=np.float32)[:, None]
    x = np.linspace(0, 1, shape[1], dtype=np.float32)[None, :]
    f = np.zeros(shape, np.float32)
    for _ in range(n_waves):
        ky, kx = rng.uniform(-6, 6, 2)
        ph = rng.uniform(0, 2 * np.pi)
        f += np.cos(np.float32(2 * np.pi * ky) * y + np.float32(2 * np.pi * kx) * x + np.float32(ph))
    f -= f.min()
    f /= max(float(f.max()), 1e-12)
    return (lo + (hi - lo) * f).astype(np.float32)


def make_stack(shape, seed: int = 0, noise: float = 0.01):
    """Transmission stack (float32) and the true coefficient maps; built one energy at a time."""
    n_e, ny, nx = shape
    rng = np.random.default_rng(seed)
    e = energies_100() if n_e == 100 else np.linspace(8233.0, 8473.0, n_e)
    refs = default_references("Ni")
    model = build_model(e, np.stack([r.spectrum(e) for r in refs]))
    thickness = smooth_field((ny, nx), rng, 0.2, 1.5)
    frac3 = smooth_field((ny, nx), rng, 0.0, 1.0)
    coeffs = np.stack([thickness * (1 - frac3), thickness * frac3,
                       smooth_field((ny, nx), rng, 0.5, 1.5), smooth_field((ny, nx), rng, 0.0, 0.3)])
    stack = np.empty(shape, np.float32)
    m = model.matrix.astype(np.float32)
    for i in range(n_e):
        a = np.tensordot(m[i], coeffs, axes=(0, 0))
        noisy = np.exp(-a) * (1 + np.float32(noise) * rng.standard_normal((ny, nx), dtype=np.float32))
        stack[i] = noisy
    state_true = 2.0 + frac3
    return Stack(stack, e, "Ni"), refs, coeffs, state_true


# ------------------------------------------------------------------ timing helpers

def best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def log_pass(t: np.ndarray, pixels: int = 16384) -> None:
    """The one transform the fit cannot avoid: log of every value (into a small buffer)."""
    flat = t.reshape(t.shape[0], -1)
    buf = np.empty((t.shape[0], pixels), t.dtype)
    for p0 in range(0, flat.shape[1], pixels):
        raw = flat[:, p0:p0 + pixels]
        np.log2(raw, out=buf[:, :raw.shape[1]])


def time_fit(stack, refs, **kwargs):
    stack_bytes = stack.transmission.nbytes
    with PeakMemory(stack_bytes) as mem:
        t0 = time.perf_counter()
        fit = fit_references(stack, None, refs, **kwargs)
        elapsed = time.perf_counter() - t0
    return fit, elapsed, mem


def per_pixel_peers(stack, refs, fit, n_pixels: int, seed: int = 1) -> dict:
    import lmfit

    t = stack.transmission
    _, ny, nx = t.shape
    e = stack.energies_eV
    model = build_model(e, np.stack([r.spectrum(e) for r in refs]))
    m = model.matrix
    rng = np.random.default_rng(seed)
    ys, xs = rng.integers(0, ny, n_pixels), rng.integers(0, nx, n_pixels)
    spectra = -np.log(t[:, ys, xs].astype(np.float64))

    def one_lmfit(a):
        pars = lmfit.Parameters()
        for j in range(m.shape[1]):
            pars.add(f"c{j}", value=0.1)
        res = lmfit.minimize(lambda p: m @ np.array([p[f"c{j}"].value for j in range(m.shape[1])]) - a,
                             pars, method="leastsq")
        return np.array([res.params[f"c{j}"].value for j in range(m.shape[1])]), \
            np.array([res.params[f"c{j}"].stderr for j in range(m.shape[1])], dtype=float)

    t0 = time.perf_counter()
    lm = [one_lmfit(spectra[:, i]) for i in range(n_pixels)]
    t_lmfit = (time.perf_counter() - t0) / n_pixels
    t0 = time.perf_counter()
    for i in range(n_pixels):
        np.linalg.lstsq(m, spectra[:, i], rcond=None)
    t_lstsq = (time.perf_counter() - t0) / n_pixels
    c_lm = np.stack([c for c, _ in lm], axis=1)
    s_lm = np.stack([s for _, s in lm], axis=1)
    c_vec = fit.coefficients[:, ys, xs].astype(np.float64)
    s_vec = fit.coefficients_std[:, ys, xs].astype(np.float64)
    state_lm = (2 * c_lm[0] + 3 * c_lm[1]) / (c_lm[0] + c_lm[1])
    return {
        "sample_pixels": int(n_pixels),
        "lmfit_s_per_pixel": t_lmfit, "lstsq_s_per_pixel": t_lstsq,
        "lmfit_extrapolated_s": t_lmfit * ny * nx, "lstsq_extrapolated_s": t_lstsq * ny * nx,
        "max_rel_diff_coefficients_vs_lmfit": float(np.max(np.abs(c_vec - c_lm)
                                                           / (np.abs(c_lm) + 1e-3))),
        "max_rel_diff_std_vs_lmfit": float(np.nanmax(np.abs(s_vec - s_lm) / s_lm)),
        "max_abs_diff_oxidation_state_vs_lmfit": float(np.max(np.abs(
            fit.oxidation_state[ys, xs] - state_lm))),
    }


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(100, 2048, 2048),
                        metavar=("E", "Y", "X"))
    parser.add_argument("--lmfit-pixels", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "results" / "bench_fit.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="calls per fit configuration")
    args = parser.parse_args(argv)

    info = machine_info()
    shape = tuple(args.shape)
    requested = shape
    stack_bytes = int(np.prod(shape)) * 4
    available = _meminfo("MemAvailable")
    notes = []
    # the stack, a copy for the floor, the output maps and the peers' sample: ~2.6 x stack
    while available is not None and 2.8 * stack_bytes > available and shape[1] > 256:
        shape = (shape[0], shape[1] // 2, shape[2] // 2)
        stack_bytes = int(np.prod(shape)) * 4
    if shape != requested:
        msg = (f"MEMORY: only {available / GIB:.1f} GiB available, so the stack was shrunk from "
               f"{requested} to {shape}; times are NOT for the requested size.")
        notes.append(msg)
        print(msg)
    print(f"machine: {info['cpu']}, {info['cores_available']} cores, "
          f"{info['memory_total_GiB']} GiB; numpy {info['numpy']} ({info['blas']})")
    print(f"stack {shape} float32 = {stack_bytes / GIB:.2f} GiB; building it ...", flush=True)
    t0 = time.perf_counter()
    stack, refs, coeffs, state_true = make_stack(shape, seed=args.seed)
    print(f"  built in {time.perf_counter() - t0:.1f} s", flush=True)
    t = stack.transmission

    t_sum = best_of(lambda: t.sum(), 5)
    dst = np.empty_like(t)
    dst.fill(0.0)                                   # touch the pages: time the copy, not faults
    t_copy = best_of(lambda buf=dst: np.copyto(buf, t), 3)
    del dst
    t_copy_new = best_of(lambda: t.copy(), 1)       # includes faulting in fresh memory
    t_log = best_of(lambda: log_pass(t), 3)
    print(f"floor: stack.sum() {t_sum:.3f} s, copy into a buffer {t_copy:.3f} s, stack.copy() "
          f"(new memory) {t_copy_new:.3f} s, log2 pass {t_log:.3f} s", flush=True)

    results = {}
    peers = {}
    edge_step_map = coeffs[0] + coeffs[1]
    runs = [("unconstrained", dict(mode="unconstrained")),
            ("unconstrained_1_thread", dict(mode="unconstrained", n_threads=1)),
            ("sum_to_one_fixed_step", dict(mode="sum_to_one", edge_step=edge_step_map)),
            ("nonneg_sum_to_one", dict(mode="nonneg_sum_to_one"))]
    for label, kwargs in runs:
        fit, first, mem = time_fit(stack, refs, **kwargs)
        inside = np.isfinite(fit.oxidation_state)
        err = fit.oxidation_state[inside] - state_true[inside]
        z = err / fit.oxidation_state_std[inside]
        quality = {"oxidation_state_rmse": float(np.sqrt(np.mean(err ** 2))),
                   "fraction_within_2_std": float(np.mean(np.abs(z) < 2)),
                   "pixels_fitted": int(fit.mask.sum())}
        if fit.active is not None:
            quality["pixels_at_a_bound"] = int((fit.active > 0).sum())
        chunk_rows, n_threads = fit.chunk_rows, fit.n_threads
        if label == "unconstrained":             # peers compare with this fit, then it goes
            print(f"per-pixel peers on {args.lmfit_pixels} random pixels ...", flush=True)
            peers = per_pixel_peers(stack, refs, fit, args.lmfit_pixels)
        del fit
        times = [first]
        for _ in range(args.repeat - 1):
            t0 = time.perf_counter()
            fit = fit_references(stack, None, refs, **kwargs)
            times.append(time.perf_counter() - t0)
            del fit
        best, median = min(times), float(np.median(times))
        results[label] = {
            "seconds": best, "median_seconds": median, "first_call_seconds": first,
            "all_seconds": times, "ratio_to_sum": best / t_sum, "ratio_to_copy": best / t_copy,
            "ratio_to_log_pass": best / t_log, "median_ratio_to_sum": median / t_sum,
            "median_ratio_to_copy": median / t_copy,
            "peak_memory_GiB": mem.peak / GIB, "peak_memory_over_stack": mem.peak / stack_bytes,
            "peak_memory_method": mem.method,
            "resident_before_call_GiB": mem.before / GIB,
            "extra_memory_of_call_GiB": (mem.peak - mem.before) / GIB,
            "extra_memory_over_stack": (mem.peak - mem.before) / stack_bytes,
            "chunk_rows": chunk_rows, "n_threads": n_threads,
            **quality,
        }
        print(f"{label:>23}: best {best:.3f} s (median {median:.3f}, first {first:.3f}) = "
              f"{best / t_sum:4.1f} x sum, {best / t_copy:3.1f} x copy, {best / t_log:3.1f} x log "
              f"(median {median / t_sum:4.1f} / {median / t_copy:3.1f} / {median / t_log:3.1f}); "
              f"peak {mem.peak / GIB:.2f} GiB = {mem.peak / stack_bytes:.2f} x stack (the call "
              f"itself +{(mem.peak - mem.before) / stack_bytes:.2f} x); "
              f"ox RMSE {quality['oxidation_state_rmse']:.4f}", flush=True)

    t_u = results["unconstrained"]["seconds"]
    peers["lmfit_ratio_to_vectorised"] = peers["lmfit_extrapolated_s"] / t_u
    peers["lstsq_ratio_to_vectorised"] = peers["lstsq_extrapolated_s"] / t_u
    print(f"  lmfit: {peers['lmfit_s_per_pixel'] * 1e3:.2f} ms/pixel -> "
          f"{peers['lmfit_extrapolated_s'] / 3600:.2f} h for the image = "
          f"{peers['lmfit_ratio_to_vectorised']:.0f} x the vectorised fit; lstsq: "
          f"{peers['lstsq_s_per_pixel'] * 1e6:.0f} us/pixel -> {peers['lstsq_extrapolated_s']:.0f} s "
          f"= {peers['lstsq_ratio_to_vectorised']:.0f} x")
    print(f"  agreement with lmfit on the sample: coefficients "
          f"{peers['max_rel_diff_coefficients_vs_lmfit']:.1e} "
          f"(relative), stds {peers['max_rel_diff_std_vs_lmfit']:.1e}, oxidation state "
          f"{peers['max_abs_diff_oxidation_state_vs_lmfit']:.1e}")

    targets = {
        "unconstrained_within_5x_sum": results["unconstrained"]["ratio_to_sum"] <= 5.0,
        "unconstrained_within_5x_copy": results["unconstrained"]["ratio_to_copy"] <= 5.0,
        "unconstrained_median_within_5x_sum": results["unconstrained"]["median_ratio_to_sum"] <= 5.0,
        "unconstrained_median_within_5x_copy": results["unconstrained"]["median_ratio_to_copy"] <= 5.0,
        "peak_memory_below_3x_stack": all(r["peak_memory_over_stack"] < 3.0 for r in results.values()),
    }
    print("targets:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in targets.items()))
    doc = {
        "benchmark": "bench_fit",
        "timing": ("seconds = best of --repeat calls (the first call included); the machine is "
                   "shared, so median and first-call times are given too; ratios divide by the "
                   "best-of floors"),
        "requested_shape": list(requested), "shape": list(shape),
        "dtype": "float32", "stack_GiB": stack_bytes / GIB, "references": [r.name for r in refs],
        "notes": notes, "machine": info,
        "floor": {"sum_seconds": t_sum, "copy_into_buffer_seconds": t_copy,
                  "copy_new_memory_seconds": t_copy_new, "log2_pass_seconds": t_log},
        "fits": results, "per_pixel_peers": peers, "targets": targets,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "maxrss_GiB": _maxrss() / GIB,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {os.path.relpath(out)}")
    return 0


def _maxrss() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


if __name__ == "__main__":
    sys.exit(main())
