"""Linear-combination fit of reference spectra to every pixel, with uncertainties.

:func:`fit_references` -> :class:`ReferenceFit`: reference spectra plus a smooth background
fitted to the absorbance ``-ln T`` of every pixel, vectorised over pixels, in chunks of rows
and on several threads, optionally with the fractions constrained (sum to one,
non-negative). The design matrix is :func:`xanes_lib.physics.build_model`, the same code the
denoiser's loss uses. The model per pixel::

    A(E) = -ln T(E) = sum_k c_k S_k(E) + a (E/E0)^-3 + b

The *edge step* of a pixel is ``sum_k c_k``; the fraction of reference k is
``f_k = c_k / sum_j c_j``; the oxidation state is ``sum_k f_k ox_k``.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np

from ..physics import LinearAbsorbanceModel, build_model
from ..resources import available_cores
from ..validate import check_image_mask
from ._arrays import _check_window, _window_indices, _work_dtype
from ._basis import _is_spectra_array, _reference_basis, check_edge_inside, check_reference_edges
from ._input import (
    _refuse_absorbance_as_transmission,
    _refuse_nothing_fitted,
    _refuse_transmission_as_absorbance,
    _resolve_input,
)

__all__ = [
    "FIT_MODES", "MAX_NONNEG_REFERENCES", "ReferenceFit", "fit_references",
]

#: Modes of :func:`fit_references`.
FIT_MODES = ("unconstrained", "sum_to_one", "nonneg_sum_to_one")

#: Largest number of references the exact active-set search of "nonneg_sum_to_one" accepts
#: (it tries 2^K patterns).
MAX_NONNEG_REFERENCES = 8
_LN2 = math.log(2.0)
#: Bytes of the per-thread buffer of the logarithm pass in :func:`fit_references`.
_PASS_BYTES = 6 << 20
#: Largest BLAS product (multiply-adds) of one call in :func:`fit_references`: OpenBLAS
#: runs products below about 1e6 on the calling thread; above, its own threads spin and
#: thrash when the cores are busy (measured: 10-100x slower on a loaded 2-core machine).
_BLAS_MAX_MNK = 900_000
#: Pixels per task of the thread pool in :func:`fit_references` (default ``chunk_rows``).
_BLOCK_PIXELS = 1 << 16


@dataclass(frozen=True, eq=False)
class ReferenceFit:
    """Result of :func:`fit_references`. Maps are NaN outside ``mask``.

    Attributes
    ----------
    fractions, fractions_std : numpy.ndarray
        (K, Y, X) fraction ``c_k / sum_j c_j`` of each reference and its standard deviation
        (propagated through the full covariance of the coefficients). NaN where the edge
        step is 0, except for "nonneg_sum_to_one" (see the Notes of :func:`fit_references`).
    coefficients, coefficients_std : numpy.ndarray
        (P, Y, X) fitted coefficients (references, then background terms) and standard
        deviations ``sqrt(diag(pinv(M^T M)) * SSR / (n - p))`` (see the Notes of
        :func:`fit_references` for the constrained modes).
    coefficient_names : tuple of str
        Names of the P coefficients.
    reference_names : tuple of str
        Names of the K references.
    oxidation_states : numpy.ndarray
        (K,) oxidation state of each reference.
    oxidation_state, oxidation_state_std : numpy.ndarray
        (Y, X) ``sum_k f_k ox_k`` and its standard deviation (full covariance).
    edge_step : numpy.ndarray
        (Y, X) ``sum_k c_k``, the edge step in the references' scale.
    residual_rms : numpy.ndarray
        (Y, X) root mean square of the fit residual over the fitted energies.
    dof : int
        Degrees of freedom ``n - p`` (``n - p + 1`` with a fixed edge step) that scale the
        covariance.
    active : numpy.ndarray or None
        (Y, X) for "nonneg_sum_to_one": bit k set where reference k was held at 0 by the
        non-negativity constraint; None for the other modes.
    mask : numpy.ndarray
        (Y, X) bool: the pixels that were fitted.
    n_masked_nonfinite, n_masked_nonpositive, n_outside_mask : int
        Pixels left out because a fitted energy held NaN/inf (absorbance or transmission),
        because the transmission was <= 0, and because ``mask`` excluded them. A pixel with
        both kinds of bad values is counted in both.
    mode : str
        The constraint mode.
    edge_step_constraint : str
        "free" (the edge step is fitted), or "fixed" (``sum_k c_k`` held at ``edge_step``).
    background : tuple of str
        Background terms of the model.
    energy_window_eV : tuple of float
        The energy window, as given or (first, last energy) when None was given.
    energies_eV : numpy.ndarray
        The energies inside the window that were fitted.
    shift_eV : float
        Energy shift applied to the references (``ref.spectrum(E - shift)``).
    chunk_rows, n_threads : int
        Rows per task of the thread pool and worker threads used.
    edge_energy_eV : numpy.ndarray or None
        Optional (Y, X) edge-energy map attached by the caller
        (``dataclasses.replace(fit, edge_energy_eV=edge_energy(...))``); written by
        :func:`xanes_lib.io.results.write_results`.
    unexplained : numpy.ndarray or None
        Optional (Y, X) bool: pixels that no mix of the references explains, where the
        oxidation state and fractions are NaN; ``unexplained_test`` (dict) describes the test.
        Both set by :func:`xanes_lib.mapping.mark_unexplained`; written by ``write_results``.
    """

    fractions: np.ndarray
    fractions_std: np.ndarray
    coefficients: np.ndarray
    coefficients_std: np.ndarray
    coefficient_names: tuple[str, ...]
    reference_names: tuple[str, ...]
    oxidation_states: np.ndarray
    oxidation_state: np.ndarray
    oxidation_state_std: np.ndarray
    edge_step: np.ndarray
    residual_rms: np.ndarray
    dof: int
    active: np.ndarray | None
    mask: np.ndarray
    n_masked_nonfinite: int
    n_masked_nonpositive: int
    n_outside_mask: int
    mode: str
    edge_step_constraint: str
    background: tuple[str, ...]
    energy_window_eV: tuple[float, float]
    energies_eV: np.ndarray
    shift_eV: float
    chunk_rows: int
    n_threads: int
    edge_energy_eV: np.ndarray | None = None
    unexplained: np.ndarray | None = None
    unexplained_test: dict | None = None

    @property
    def n_references(self) -> int:
        """Number of references K."""
        return len(self.reference_names)


@dataclass(frozen=True)
class _Pattern:
    """One active set of the constrained fit: references held at 0 and its linear algebra."""

    bits: int             # bit k set: reference k held at 0
    free: np.ndarray      # indices of the free coefficients
    qinv: np.ndarray      # (f, f) inverse Gram matrix of the free columns
    v: np.ndarray | None  # (f,) correction direction of the equality constraint


def _patterns(q: np.ndarray, k: int, *, fixed_step: bool, nonneg: bool) -> list[_Pattern]:
    """Active sets to try; the first one holds no reference at 0."""
    p = q.shape[0]
    subsets = [()]
    if nonneg:
        subsets = [z for r in range(k + 1) for z in combinations(range(k), r)]
        if fixed_step:
            subsets = [z for z in subsets if len(z) < k]   # someone must carry the step
    out = []
    for z in subsets:
        free = np.array([j for j in range(p) if j not in z])
        qinv = np.linalg.pinv(q[np.ix_(free, free)])
        a = np.array([1.0 if j < k else 0.0 for j in free])
        v = qinv @ a / float(a @ qinv @ a) if fixed_step and a.any() else None
        out.append(_Pattern(bits=sum(1 << j for j in z), free=free, qinv=qinv, v=v))
    return out


def _derived(c: np.ndarray, ssr: np.ndarray, dof: int, cov: np.ndarray, ox: np.ndarray, k: int):
    """Stds of coefficients, fractions and oxidation state from c (P, n) and SSR (n,).

    ``cov`` is the (P, P) unscaled covariance (``pinv(M^T M)``, or its projection under the
    equality constraint); it is scaled by ``SSR / dof`` per pixel.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = ssr / dof if dof > 0 else np.full_like(ssr, np.nan)
        step = c[:k].sum(axis=0)
        frac = c[:k] / step
        frac[:, step == 0] = np.nan
        state = ox @ frac
        h = cov[:k, :k]
        h1 = h.sum(axis=1)[:, None]                 # (K, 1)
        one_h_one = float(h.sum())
        hox = h @ ox
        ox_h_ox, ox_h_one = float(ox @ hox), float(hox.sum())
        coef_std = np.sqrt(np.clip(np.diag(cov), 0, None)[:, None] * s2)
        scale = s2 / (step * step)
        # f_k = c_k / S: var = (H_kk - 2 f_k (H 1)_k + f_k^2 1'H1) s2 / S^2
        var_f = np.diag(h)[:, None] - 2.0 * frac * h1 + frac * frac * one_h_one
        frac_std = np.sqrt(np.clip(var_f, 0, None) * scale)
        # ox = sum f_k ox_k: gradient (ox_j - ox) / S
        var_ox = ox_h_ox - 2.0 * state * ox_h_one + state * state * one_h_one
        state_std = np.sqrt(np.clip(var_ox, 0, None) * scale)
    return coef_std, frac, frac_std, state, state_std, step


def _bounded(frac: np.ndarray, frac_std: np.ndarray, state: np.ndarray, state_std: np.ndarray,
             step: np.ndarray, ox: np.ndarray) -> None:
    """Cap stds at the largest possible error; equal mix without an edge step (Notes of fit_references)."""
    none = step <= 0
    if none.any():
        frac[:, none], state[none] = 1.0 / frac.shape[0], float(np.mean(ox))
    lo, hi = float(np.min(ox)), float(np.max(ox))
    state_bound = np.maximum(state - lo, hi - state)
    frac_bound = np.maximum(frac, 1.0 - frac)
    state_std[...] = np.where(none, state_bound, np.minimum(state_std, state_bound))
    frac_std[...] = np.where(none, frac_bound, np.minimum(frac_std, frac_bound))


class _Fitter:
    """Model, buffers and output maps of one :func:`fit_references` call.

    Work is split into blocks of ``block_rows`` rows (one task of the thread pool each; the
    derived quantities are computed per block) and each block into chunks of
    ``chunk_pixels`` pixels for the pass over the energies (cache-sized buffers).
    """

    def __init__(self, data, i0, i1, transmission, model, k, ox, mode, step_map, mask,
                 out_dtype, block_rows):
        self.data, self.i0, self.i1, self.transmission = data, i0, i1, transmission
        self.k, self.ox, self.mode = k, ox, mode
        self.step_map, self.mask = step_map, mask
        self.fixed_step = step_map is not None
        self.block_rows = block_rows
        m = model.matrix
        self.n_energies, self.p = m.shape
        # pixels per BLAS call: at most ~1e6 multiply-adds, so that OpenBLAS runs each product
        # on the calling thread (its own threads thrash when the cores are busy); the buffer
        # (E x chunk) then also fits a core's L2 cache. Parallelism comes from the pool.
        self.chunk_pixels = max(64, _BLAS_MAX_MNK // (self.p * self.n_energies))
        # pixels per logarithm call: ~6 MiB of float32 buffer per thread (stays in L3)
        self.pass_pixels = max(self.chunk_pixels, _PASS_BYTES // (4 * self.n_energies))
        self.work = _work_dtype(data.dtype)
        self.pinv_w = np.ascontiguousarray(model.pinv.astype(self.work))
        self.matrix_w = np.ascontiguousarray(m.astype(self.work))
        self.q = m.T @ m
        self.nonneg = mode == "nonneg_sum_to_one"
        self.patterns = _patterns(self.q, k, fixed_step=self.fixed_step, nonneg=self.nonneg)
        base = self.patterns[0]
        cov = np.linalg.pinv(self.q)
        self.dof = self.n_energies - self.p
        if self.fixed_step:
            v = np.zeros(self.p)
            v[base.free] = base.v
            a = np.r_[np.ones(k), np.zeros(self.p - k)]
            self.v_full = v
            self.vqv = float(v @ self.q @ v)
            cov = cov - np.outer(cov @ a, a @ cov) / float(a @ cov @ a)
            self.dof += 1
        self.cov = cov
        self.cov_w = cov.astype(self.work)
        self.ox_w = np.asarray(ox, dtype=self.work)
        if self.fixed_step:
            self.v_full_w = self.v_full.astype(self.work)
        self.bits = np.array([pt.bits for pt in self.patterns], np.uint16)
        _, y, x = data.shape
        p = self.p
        # every block writes all its pixels (NaN where not fitted): no need to pre-fill
        self.out = dict(
            fractions=np.empty((k, y, x), out_dtype),
            fractions_std=np.empty((k, y, x), out_dtype),
            coefficients=np.empty((p, y, x), out_dtype),
            coefficients_std=np.empty((p, y, x), out_dtype),
            oxidation_state=np.empty((y, x), out_dtype),
            oxidation_state_std=np.empty((y, x), out_dtype),
            edge_step=np.empty((y, x), out_dtype),
            residual_rms=np.empty((y, x), out_dtype),
            fitted=np.zeros((y, x), bool),
            active=np.zeros((y, x), np.uint16) if self.nonneg else None,
        )
        self.counts = np.zeros(3, np.int64)    # nonfinite, nonpositive, outside mask
        self.lock = threading.Lock()
        self.local = threading.local()

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        loc = self.local
        if getattr(loc, "n", 0) < n:
            loc.buf = np.empty((self.n_energies, n), self.work)
            loc.tmp = np.empty((self.n_energies, self.chunk_pixels), self.work)
            loc.n = n
        return loc.buf[:, :n], loc.tmp

    def _pass(self, raw: np.ndarray, c_out: np.ndarray, ssr_out: np.ndarray) -> None:
        """Least-squares coefficients and SSR of the (E, n) pixels ``raw``: the data pass.

        The logarithm runs over the whole piece (long rows stream fastest from memory); the
        products run on slices of at most ``chunk_pixels`` pixels (single-threaded BLAS).
        """
        n = raw.shape[1]
        buf, tmp = self._buffers(n)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # bad pixels: below
            if self.transmission:
                np.log2(raw, out=buf)             # = -A / ln 2 (log2 is the faster ufunc)
            else:
                np.copyto(buf, raw)
            for s0 in range(0, n, self.chunk_pixels):
                s1 = min(s0 + self.chunk_pixels, n)
                sub, t, cw = buf[:, s0:s1], tmp[:, :s1 - s0], c_out[:, s0:s1]
                np.matmul(self.pinv_w, sub, out=cw)               # (P, m)
                np.matmul(self.matrix_w, cw, out=t)
                np.subtract(sub, t, out=t)
                ssr_out[s0:s1] = np.einsum("ij,ij->j", t, t)
        if self.transmission:
            c_out *= -_LN2
            ssr_out *= _LN2 * _LN2

    def block(self, b0: int) -> None:
        b1 = min(b0 + self.block_rows, self.data.shape[1])
        x = self.data.shape[2]
        n = (b1 - b0) * x
        # a view for a C-ordered stack (rows of one image are contiguous); else a block copy
        flat = self.data[self.i0:self.i1, b0:b1, :].reshape(self.n_energies, n)
        c = np.empty((self.p, n), self.work)      # float32 for float32 input: half the traffic
        ssr = np.empty(n, self.work)
        for p0 in range(0, n, self.pass_pixels):
            sl = slice(p0, min(p0 + self.pass_pixels, n))
            self._pass(flat[:, sl], c[:, sl], ssr[sl])

        # a NaN/inf value, or a non-finite coefficient, makes that pixel's SSR non-finite
        finite = np.isfinite(ssr)
        user = self.mask[b0:b1].ravel() if self.mask is not None else np.ones(n, bool)
        n_nonfinite = n_nonpos = 0
        if not finite.all():
            bad = np.flatnonzero(~finite)
            vals = np.asarray(flat[:, bad], dtype=np.float64)
            nonfinite = ~np.isfinite(vals).all(axis=0)
            if self.transmission:
                with np.errstate(invalid="ignore"):
                    nonpos = (vals <= 0).any(axis=0)
            else:
                nonpos = np.zeros(bad.size, bool)
            nonfinite |= ~nonpos & ~nonfinite     # finite values whose fit overflowed
            n_nonfinite = int((nonfinite & user[bad]).sum())
            n_nonpos = int((nonpos & user[bad]).sum())
        n_outside = int(n - user.sum())
        fit = finite & user

        step_target = None
        c_u, ssr_u = c, ssr                       # unconstrained solution and its SSR
        if self.fixed_step:
            step_target = np.broadcast_to(self.step_map, self.data.shape[1:])[b0:b1].ravel()
            t = (c[:self.k].sum(axis=0) - step_target).astype(self.work, copy=False)
            c = c - np.outer(self.v_full_w, t)    # closed-form equality-constrained solution
            ssr = ssr + t * t * self.vqv          # SSR(c) = SSR_u + (c - c_u)^T Q (c - c_u)
        active = None
        if self.nonneg:
            active = np.zeros(n, np.uint16)
            with np.errstate(invalid="ignore"):
                infeasible = fit & (c[:self.k] < 0).any(axis=0)
            if infeasible.any():
                sel = np.flatnonzero(infeasible)
                c_sel, ssr_sel, pat = self._active_set(      # in float64 on the few pixels
                    c_u[:, sel].astype(np.float64), ssr_u[sel].astype(np.float64),
                    None if step_target is None else step_target[sel])
                c[:, sel], ssr[sel] = c_sel, ssr_sel
                active[sel] = self.bits[pat]

        coef_std, frac, frac_std, state, state_std, step = _derived(
            c, ssr, self.dof, self.cov_w, self.ox_w, self.k)
        if self.nonneg:
            _bounded(frac, frac_std, state, state_std, step, self.ox_w)
        rms = np.sqrt(np.clip(ssr, 0, None) / self.n_energies)
        nofit = ~fit
        any_nofit = bool(nofit.any())
        maps = dict(fractions=frac, fractions_std=frac_std, coefficients=c,
                    coefficients_std=coef_std, oxidation_state=state,
                    oxidation_state_std=state_std, edge_step=step, residual_rms=rms)
        o = self.out
        for key, val in maps.items():
            if any_nofit:
                val[..., nofit] = np.nan
            o[key][..., b0:b1, :] = val.reshape(val.shape[:-1] + (b1 - b0, x))
        o["fitted"][b0:b1] = fit.reshape(b1 - b0, x)
        if active is not None:
            o["active"][b0:b1] = np.where(fit, active, 0).reshape(b1 - b0, x)
        with self.lock:
            self.counts += (n_nonfinite, n_nonpos, n_outside)

    def _active_set(self, c_u, ssr_u, target):
        """Exact constrained solution by trying every active set, for a few pixels.

        ``c_u``, ``ssr_u``: unconstrained solution and SSR of those pixels (P, m), (m,).
        Every candidate is computed from ``b = M^T A = Q c_u`` and scored with the exact
        identity ``SSR(c) = SSR_u + (c - c_u)^T Q (c - c_u)``; no pass over the data.
        """
        b = self.q @ c_u
        m = c_u.shape[1]
        n_bg = self.p - self.k
        best = np.full(m, np.inf)
        best_pat = np.zeros(m, np.intp)
        best_c = np.full_like(c_u, np.nan)
        for ip, pat in enumerate(self.patterns):
            if ip == 0:
                continue                          # the base solution is infeasible here
            free = pat.free
            cf = pat.qinv @ b[free]
            if pat.v is not None:
                t = cf[:free.size - n_bg].sum(axis=0) - target
                cf = cf - np.outer(pat.v, t)
            cand = np.zeros_like(c_u)
            cand[free] = cf
            with np.errstate(invalid="ignore"):
                ok = (cand[:self.k] >= 0).all(axis=0)
            d = cand - c_u
            obj = np.einsum("pn,pq,qn->n", d, self.q, d)
            better = ok & (obj < best)
            best[better] = obj[better]
            best_pat[better] = ip
            best_c[:, better] = cand[:, better]
        return best_c, ssr_u + best, best_pat


def fit_references(stack_or_absorbance, energies_eV, references, *, mask=None,
                   mode: str = "unconstrained", edge_step=None,
                   background: Sequence[str] = ("inverse_cube", "constant"),
                   energy_window_eV: tuple[float, float] | None = None, shift_eV: float = 0.0,
                   oxidation_states=None, names=None, input_kind: str | None = None,
                   chunk_rows: int | None = None, n_threads: int | None = None,
                   warn_empty: bool = True) -> ReferenceFit:
    """Linear-combination fit of reference spectra to every pixel of a stack.

    Per pixel, the absorbance ``A = -ln T`` over the energy window is fitted by least
    squares with ``A(E) = sum_k c_k S_k(E - shift) + background`` (design matrix of
    :func:`xanes_lib.physics.build_model`). The fit is one matrix product for all pixels,
    done in chunks of rows on ``n_threads`` threads (float32 arithmetic for float32 input,
    float64 for float64), so the extra memory is the output maps plus a few small buffers.

    Parameters
    ----------
    stack_or_absorbance : xanes_lib.io.Stack or numpy.ndarray
        A Stack (its transmission is used), or an (E, Y, X) float array: absorbance
        ``-ln T`` by default, transmission with ``input_kind="transmission"``.
    energies_eV : array_like or None
        (E,) energies in eV; None only for a Stack (its energies are used).
    references : sequence of reference objects, or array_like (K, E)
        Objects with ``.spectrum(energies_eV)``, ``.name`` and ``.oxidation_state``
        (:mod:`xanes_lib.spectra`), or an array of K spectra on the stack's E energies (then
        give ``oxidation_states``). They are used as given: normalised spectra give
        coefficients in edge-step units of absorbance, spectra scaled to the element's
        attenuation give amounts.
    mask : array_like of bool, optional
        (Y, X) pixels to fit; None fits every pixel. Pixels with NaN/inf (or, for
        transmission, values <= 0) at a fitted energy are never fitted: they are left out
        and counted.
    mode : {"unconstrained", "sum_to_one", "nonneg_sum_to_one"}
        "unconstrained": ordinary least squares. "sum_to_one": the references' coefficients
        satisfy ``sum_k c_k = edge_step`` exactly (closed-form KKT solution). With a free
        edge step (``edge_step=None``) the fractions ``c_k / sum c`` sum to one by
        construction and this is the unconstrained fit. "nonneg_sum_to_one": in addition
        every ``c_k >= 0`` (fractions in [0, 1]); solved exactly by trying every pattern of
        references held at 0 (2^K, K <= 8) on the pixels whose solution is infeasible, and
        keeping the feasible one with the least squared residual (for K = 2: the sum-to-one
        solution clipped to [0, 1] with the rest refitted).
    edge_step : float or array_like (Y, X), optional
        For the constrained modes: the value of ``sum_k c_k``. None leaves it free (raw
        absorbance of a sample of unknown thickness). 1.0 suits normalised spectra fitted
        with normalised references; a map (e.g. ``normalize_spectra(...).edge_step``) holds
        a known step. Must be > 0 on fitted pixels, and None for "unconstrained".
    background : sequence of str
        Background terms of :func:`xanes_lib.physics.build_model`.
    energy_window_eV : (float, float), optional
        Absolute energies (eV) to fit, inclusive; None fits all energies.
    shift_eV : float
        Energy shift of the references: they are evaluated at ``E - shift_eV`` (e.g. the
        shift from :func:`fit_energy_shift`). Needs reference objects.
    oxidation_states : sequence of float, optional
        Oxidation state of each reference; None takes ``ref.oxidation_state``.
    names : sequence of str, optional
        Names of the references; None takes ``ref.name`` (``ref0, ...`` for arrays).
    input_kind : {None, "absorbance", "transmission"}
        What an array holds; None: absorbance for arrays (refused when the array looks like
        transmission: values in (0, 1.5] and an edge step negative in most fitted pixels),
        transmission for a Stack.
    chunk_rows : int, optional
        Rows per task of the thread pool (the unit of the derived computations and of the
        temporary float64 coefficient arrays); None picks about 65536 pixels. The pass over
        the energies runs inside each task on cache-sized pieces of ~1e6 / (E P) pixels.
    n_threads : int, optional
        Worker threads; None uses the CPUs available to the process.
    warn_empty : bool
        Warn when ``mask`` selects no pixel (every map NaN); False for callers that fit the
        pieces of a field, some of which hold no sample (the chunked pipeline).

    Returns
    -------
    ReferenceFit
        Maps of fractions, coefficients, oxidation state, their stds, residual RMS, the
        mask and the counts of excluded pixels. Maps are float32 for float32 input.

    Raises
    ------
    ValueError
        Non-increasing energies, a stack that is not 3-D or whose length does not match the
        energies, an energy window holding fewer energies than fitted parameters, references
        not covering the window or whose edge lies outside the energies (another element), a
        bad mask or edge step, an unknown mode, transmission passed as absorbance.

    Notes
    -----
    Standard deviations follow ``sqrt(diag(pinv(M^T M)) SSR / (n - p))`` with the SSR of
    the returned solution. With a fixed edge step the covariance is that of the
    equality-constrained problem (``pinv(M^T M)`` projected on ``sum_k c_k = edge_step``,
    ``n - p + 1`` degrees of freedom). The non-negativity bounds do not shrink the reported
    stds: a pixel whose solution sits on a bound gets the std of the model without the
    bounds (evaluated at its constrained solution), not 0, because hitting the bound does not
    make the value better known. Fractions and oxidation state are propagated to first
    order through the full covariance of the reference coefficients, correlations included.

    With "nonneg_sum_to_one" fractions lie in [0, 1] and the state within the references'
    range, so no error exceeds the distance from the estimate to the farther end of the range:
    the stds are at most that (a first-order std on a bound can span several ranges). A pixel
    whose best fit holds every reference at 0 (no edge step: a dilute element at a low dose)
    gets the equal mix (fractions 1/K, the mean reference state) with that std, not NaN.

    Examples
    --------
    >>> e = np.linspace(8300.0, 8400.0, 40)
    >>> s = np.stack([1 / (1 + np.exp(-(e - 8340) / 2)), 1 / (1 + np.exp(-(e - 8343) / 2))])
    >>> a = np.tensordot(s, np.array([0.3, 0.1]), axes=(0, 0))[:, None, None] * np.ones((1, 2, 2))
    >>> fit = fit_references(a, e, s, oxidation_states=[2, 3])
    >>> np.round(fit.oxidation_state, 6).tolist()
    [[2.25, 2.25], [2.25, 2.25]]
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}; got {mode!r}.")
    data, e_all, kind = _resolve_input(stack_or_absorbance, energies_eV, input_kind)
    _, ny, nx = data.shape
    design = _fit_design(e_all, references, energy_window_eV=energy_window_eV, shift_eV=shift_eV,
                         names=names, oxidation_states=oxidation_states,
                         background=tuple(background), mode=mode)
    model, win = design.model, design.window
    # reference objects that share one state (explicit equal states are the callers' choice)
    if oxidation_states is None and not _is_spectra_array(references) and np.ptp(design.ox) == 0:
        warnings.warn(f"every reference has the oxidation state {design.ox[0]:g}: the oxidation-state map is "
                      "that value by construction (std 0), not a measurement. Fit references of at least two "
                      "states to map it.", UserWarning, stacklevel=2)
    mask = check_image_mask(mask, (ny, nx), hint=" Use e.g. sample_mask(...).mask.")
    if warn_empty and mask is not None and mask.size and not mask.any():
        warnings.warn(f"mask selects none of the {mask.size} pixels: every map is NaN. Check the mask "
                      "(inverted, or of another image?), e.g. significant_mask(...).mask.", UserWarning,
                      stacklevel=2)
    step_map = _checked_edge_step(edge_step, mode, mask, ny, nx)
    chunk_rows, n_threads = _work_split(chunk_rows, n_threads, nx)

    out_dtype = _work_dtype(data.dtype)
    i0, i1 = int(design.idx[0]), int(design.idx[-1]) + 1
    fitter = _Fitter(data, i0, i1, kind == "transmission", model, design.k, design.ox, mode, step_map,
                     mask, out_dtype, chunk_rows)
    _run_blocks(fitter, ny, chunk_rows, n_threads)
    o = fitter.out
    if input_kind is None and kind == "absorbance":
        _refuse_transmission_as_absorbance(data, design.idx, o["fitted"], model, design.k)
    elif kind == "transmission" and mask is not None:  # sample pixels: their -ln T steps up at the edge
        _refuse_absorbance_as_transmission(data, design.idx, o["fitted"], model, design.k)
    _refuse_nothing_fitted(data, e_all, design.idx, np.ones((ny, nx), bool) if mask is None else mask,
                           o["fitted"], kind == "transmission")
    n_nonfinite, n_nonpos, n_outside = (int(v) for v in fitter.counts)
    return ReferenceFit(
        fractions=o["fractions"], fractions_std=o["fractions_std"],
        coefficients=o["coefficients"], coefficients_std=o["coefficients_std"],
        coefficient_names=tuple(model.names), reference_names=tuple(design.names),
        oxidation_states=design.ox, oxidation_state=o["oxidation_state"],
        oxidation_state_std=o["oxidation_state_std"], edge_step=o["edge_step"],
        residual_rms=o["residual_rms"], dof=fitter.dof, active=o["active"], mask=o["fitted"],
        n_masked_nonfinite=n_nonfinite, n_masked_nonpositive=n_nonpos,
        n_outside_mask=n_outside, mode=mode,
        edge_step_constraint="fixed" if step_map is not None else "free",
        background=tuple(background), energy_window_eV=(float(win[0]), float(win[1])),
        energies_eV=design.energies_eV, shift_eV=design.shift, chunk_rows=chunk_rows,
        n_threads=n_threads)


class _FitDesign(NamedTuple):
    """The checked energy window, shift and design matrix of one :func:`fit_references` call."""

    window: tuple[float, float]   # (lo, hi) eV: as given, or the first and last energy
    idx: np.ndarray               # indices of the window's energies in the stack
    energies_eV: np.ndarray       # the window's energies
    shift: float                  # energy shift of the references (eV)
    model: LinearAbsorbanceModel  # references, then background terms
    names: tuple[str, ...]        # reference names
    ox: np.ndarray                # (K,) oxidation states
    k: int                        # number of references


def _fit_design(e_all: np.ndarray, references, *, energy_window_eV, shift_eV, names, oxidation_states,
                background: tuple[str, ...], mode: str) -> _FitDesign:
    """Check the window, shift and references of :func:`fit_references`; build the design matrix."""
    window = _check_window(energy_window_eV, "energy_window_eV", relative=False)
    shift = float(shift_eV)
    if not math.isfinite(shift):
        raise ValueError(f"shift_eV must be finite; got {shift_eV}.")
    win = window if window is not None else (float(e_all[0]), float(e_all[-1]))
    idx = _window_indices(e_all, win, "energy_window_eV")
    e = e_all[idx]
    if not _is_spectra_array(references):
        references = list(references)             # iterated twice: a generator would run dry
    check_reference_edges(references, e_all, shift)
    basis, ref_names, ox = _reference_basis(references, e, e_all, idx, shift_eV=shift,
                                            names=names, oxidation_states=oxidation_states,
                                            window=win)
    k = basis.shape[0]
    n_params = k + len(background)
    if e.size < n_params:
        raise ValueError(f"the energy window {win[0]:.2f}-{win[1]:.2f} eV holds {e.size} energies, "
                         f"fewer than the {n_params} fitted parameters ({k} references + "
                         f"{len(background)} background terms); widen energy_window_eV, "
                         "measure more energies, or drop background terms.")
    check_edge_inside(references, e, shift)
    model = build_model(e, basis, names=ref_names, background=background)
    if np.linalg.matrix_rank(model.matrix) < model.n_params:
        raise ValueError(f"the design matrix ({model.names}) is rank deficient over "
                         f"{win[0]:.2f}-{win[1]:.2f} eV: two references (or a reference and the "
                         "background) are indistinguishable there. Remove one or widen the window.")
    if mode == "nonneg_sum_to_one" and k > MAX_NONNEG_REFERENCES:
        raise ValueError(f"mode 'nonneg_sum_to_one' tries 2^K active sets and accepts at most "
                         f"{MAX_NONNEG_REFERENCES} references; got {k}. Use fewer references.")
    return _FitDesign(win, idx, e, shift, model, ref_names, ox, k)


def _checked_edge_step(edge_step, mode: str, mask, ny: int, nx: int) -> np.ndarray | None:
    """Return the fixed edge step as a float64 array (None: free), after checking it."""
    if edge_step is None:
        return None
    if mode == "unconstrained":
        raise ValueError("edge_step applies to the constrained modes only; leave it None for "
                         "mode='unconstrained' or choose mode='sum_to_one'.")
    step_map = np.asarray(edge_step, dtype=np.float64)
    if step_map.shape not in ((), (ny, nx)):
        raise ValueError(f"edge_step must be a number or a (Y, X) = {(ny, nx)} map; got shape "
                         f"{step_map.shape}.")
    full = np.broadcast_to(step_map, (ny, nx))
    inside = full if mask is None else full[mask]
    bad = ~(np.isfinite(inside) & (inside > 0))
    if bad.any():
        raise ValueError(f"edge_step must be finite and > 0 on every fitted pixel; {int(bad.sum())} "
                         "pixel(s) are not. Leave them out with mask= (e.g. sample_mask), or pass "
                         "edge_step=None to fit the step.")
    return step_map


def _work_split(chunk_rows, n_threads, nx: int) -> tuple[int, int]:
    """Return the rows per task (default about 65536 pixels) and the worker threads (default: the CPUs)."""
    if chunk_rows is None:
        chunk_rows = max(1, _BLOCK_PIXELS // nx)
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows}.")
    if n_threads is None:
        n_threads = available_cores()
    return chunk_rows, max(1, int(n_threads))


def _run_blocks(fitter: _Fitter, ny: int, chunk_rows: int, n_threads: int) -> None:
    """Fit every block of ``chunk_rows`` rows, on a pool of ``n_threads`` threads if more than one."""
    starts = range(0, ny, chunk_rows)
    if n_threads == 1 or len(starts) == 1:
        for b0 in starts:
            fitter.block(b0)
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for _ in pool.map(fitter.block, starts):
                pass
