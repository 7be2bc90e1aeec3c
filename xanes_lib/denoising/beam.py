"""Estimate the beam background of a measured stack: few energy profiles, smooth in space.

A drifting beam changes its intensity profile between the sample and the flat-field image
through a few smooth modes (the idea behind eigen flat fields, Van Nieuwenhove et al.,
Opt. Express 23, 27975 (2015)). In absorbance, ``-ln B(E, x) = sum_j u_j(E) v_j(x)`` with a
few energy profiles ``u_j`` and smooth maps ``v_j``. :func:`estimate_background`:

1. finds the sample from its mean absorbance (Otsu, or a tighter threshold set by the spread
   of the emptiest pixels) and takes the pixels well away from it, where the absorbance *is*
   the background;
2. takes the energy profiles ``u_j`` from the SVD of those pixels (spatially smoothed; through
   their E x E Gram matrix, a sum over pixels that a chunked stack adds up block by block); the
   rank is set by the singular values standing above the noise floor. Profiles that the
   physics model can explain (slow drifts of the beam with energy, a flat field taken apart
   from the scan: the same offset at every energy) are kept when the empty field is clean
   (its median absorbance within :data:`CLEAN_EMPTY_LEVEL` of zero); inside particles their
   maps come from the empty pixels around them. When the "empty" pixels absorb (a field
   covered by sample, whose thinner part passes for empty), such profiles would be the
   sample itself, and they are dropped;
3. gets the maps ``v_j``: in empty pixels from the whole spectrum; inside the sample only
   from the part of the spectrum that no mix of the references explains (the projection
   ``Q = I - M M^+`` along energy), so the sample itself is not taken for background;
4. smooths the maps by a normalised convolution whose weights are low in pixels that the
   background profiles do not explain (a phase missing from the references keeps its
   signal instead of being "explained away" as background).

The in-span part of the background (what looks like an edge step or a thickness change) is
then known inside the particles too, through the profiles ``u_j``: this is what a purely
spatial smoothing of the residual cannot recover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..alignment import apply_alignment, checked_shifts, move_mask
from ..mapping import EnergyCalibration, calibrate_energy_shift, sample_mask
from ..physics import absorbance, build_model, n_references
from ..validate import check_energies, check_stack

__all__ = [
    "CLEAN_EMPTY_LEVEL", "SAMPLE_LIKE_SHARE", "BackgroundEstimate", "BeamProfiles", "DriftingSampleView",
    "drifting_sample_view",
    "detector_empty_pixels", "to_detector",
    "smoothed_absorbance", "smoothing_halo", "empty_pixels", "empty_level",
    "empty_gram", "beam_profiles", "beam_pixel_maps", "beam_maps", "beam_background", "estimate_background",
    "divide_beam_background", "align_with_beam_background", "beam_corrected_energy_shift",
    "calibrate_energy_shift_with_beam",
    "shifted_model", "beam_note",
]


#: Largest |median absorbance| of the empty pixels for which profiles inside the physics
#: model's span are kept (:func:`beam_profiles`). A flat-field corrected empty field sits
#: at zero absorbance within the beam background's few per cent; a field whose "empty" pixels
#: absorb more holds sample there (measured: 0.39 on a simulated field covered by one large
#: particle, whose thinner part passed for empty).
CLEAN_EMPTY_LEVEL = 0.05

#: Share of a profile's energy outside the physics model's span below which it is dropped as
#: sample-like when the empty field is not clean.
SAMPLE_LIKE_SHARE = 0.2


@dataclass
class BackgroundEstimate:
    """Result of :func:`estimate_background`.

    Attributes
    ----------
    background : numpy.ndarray or None
        (E, Y, X) float32 multiplicative background B (divide the transmission by it); None
        from the chunked pipeline, which computes it block by block (:func:`beam_background`).
    profiles : numpy.ndarray
        (E, R) energy profiles ``u_j`` of ``-ln B``.
    maps : numpy.ndarray
        (R, Y, X) smoothed maps ``v_j``.
    rank : int
        Number of profiles kept (R).
    dropped : int
        Profiles above the noise dropped as sample-like (only when the empty field absorbs:
        see :func:`beam_profiles`).
    empty : numpy.ndarray
        (Y, X) bool: pixels used as empty (background only).
    weights : numpy.ndarray
        (Y, X) weights of the spatial smoothing (low where the background profiles do not
        explain the unexplained part of the spectrum).
    empty_level : float
        Median absorbance of the empty pixels (:func:`empty_level`): within
        :data:`CLEAN_EMPTY_LEVEL` of zero, the profiles a reference mix could explain were kept.
    """

    background: np.ndarray
    profiles: np.ndarray
    maps: np.ndarray
    rank: int
    dropped: int
    empty: np.ndarray
    weights: np.ndarray
    empty_level: float = float("nan")


def _normalised_convolution(x, w, sigma: float, *, fill_sigma: float = 0.0, fill_weight: float = 0.02):
    """Weighted Gaussian smoothing of (R, Y, X) maps with (R, Y, X) weights.

    The kernel is a Gaussian of ``sigma`` plus ``fill_weight`` times one of ``fill_sigma``:
    where the weights are high the small kernel decides; across a region of low weight (a
    particle, for a profile it cannot see) the wide one fills in from its surroundings.
    """
    def blur(z):
        out = ndimage.gaussian_filter(z, (0, sigma, sigma), mode="nearest")
        if fill_sigma > 0:
            out = out + fill_weight * ndimage.gaussian_filter(z, (0, fill_sigma, fill_sigma), mode="nearest")
        return out
    return blur(x * w) / np.maximum(blur(w), 1e-9)


def _empty_threshold(level) -> float:
    """Absorbance above which a pixel holds sample.

    Otsu's threshold, or lower when the lowest fifth of the pixels (the empty field) is
    tightly clustered below it (a thin particle must not pass for empty).
    """
    otsu = sample_mask(level).threshold
    low = level[level <= np.percentile(level, 20)]
    m0 = np.median(low)
    s0 = 1.4826 * np.median(np.abs(low - m0))
    return float(min(otsu, m0 + 6.0 * s0))


@dataclass(frozen=True)
class BeamProfiles:
    """Energy profiles of the beam background and the per-pixel operators onto them.

    Attributes
    ----------
    profiles : numpy.ndarray
        (E, R) energy profiles ``u_j`` of ``-ln B`` (orthonormal; signed so that the largest
        entry of each is positive).
    above : int
        Profiles standing above the noise floor (R of them kept, the others dropped as
        sample-like: see :func:`beam_profiles`).
    q : numpy.ndarray
        (E, E) projection ``I - M M^+`` onto what the references cannot explain.
    to_empty : numpy.ndarray
        (R, E) least-squares map of an empty pixel's whole spectrum onto the profiles.
    to_sample : numpy.ndarray
        (R, E) map of a sample pixel's projected spectrum ``Q a`` onto the profiles.
    """

    profiles: np.ndarray
    above: int
    q: np.ndarray
    to_empty: np.ndarray
    to_sample: np.ndarray

    @property
    def rank(self) -> int:
        """Number of profiles kept (R)."""
        return self.profiles.shape[1]


def smoothed_absorbance(transmission, smooth_px: float = 3.0) -> np.ndarray:
    """(E, Y, X) float64 absorbance smoothed in space by a Gaussian of ``smooth_px`` (edges: nearest).

    Each pixel depends on its neighbours within ``smoothing_halo(smooth_px)`` pixels only, so a
    block computed with that halo equals the same pixels of the whole stack.
    """
    a = absorbance(np.asarray(transmission).astype(np.float64))
    return ndimage.gaussian_filter(a, (0, smooth_px, smooth_px), mode="nearest", output=a)


def smoothing_halo(sigma_px: float) -> int:
    """Reach (pixels) of scipy's Gaussian filter of width ``sigma_px`` (its default truncation, 4 sigma)."""
    return int(4.0 * float(sigma_px) + 0.5)


def empty_pixels(level, margin_px: int = 4) -> np.ndarray:
    """(Y, X) pixels well away from the sample, found from the mean smoothed absorbance ``level``.

    Raises
    ------
    ValueError
        Fewer than 1 % of the pixels empty.
    """
    sample = level > _empty_threshold(level)
    empty = ~ndimage.binary_dilation(sample, iterations=max(margin_px, 1))
    if empty.sum() < 0.01 * empty.size:
        raise ValueError(f"only {int(empty.sum())} of {empty.size} pixels are free of sample; the background "
                         "profiles need an empty area (>= 1 % of the field).")
    return empty


def empty_level(level, empty) -> float:
    """Median of the mean smoothed absorbance ``level`` (Y, X) over the ``empty`` pixels (0 without any)."""
    return float(np.median(np.asarray(level)[np.asarray(empty, bool)])) if np.any(empty) else 0.0


def empty_gram(smoothed, empty) -> np.ndarray:
    """(E, E) Gram matrix ``A A^T`` of the smoothed absorbance ``A`` over the ``empty`` pixels.

    A sum over pixels: the Gram matrices of the blocks of a stack add up to the stack's.
    """
    a = smoothed[:, empty]
    return a @ a.T


def beam_profiles(gram, n_empty: int, model, *, max_rank: int = 12, noise_factor: float = 3.0,
                  min_unexplained: float | None = None, empty_level: float = 0.0) -> BeamProfiles:
    """Energy profiles of the background from the Gram matrix of the empty pixels.

    Its eigenvectors are the left singular vectors of the empty pixels' smoothed absorbance,
    its eigenvalues their squared singular values. Parameters as :func:`estimate_background`;
    ``n_empty`` is the number of empty pixels (it bounds the number of singular values) and
    ``empty_level`` their median absorbance.

    Profiles with less than ``min_unexplained`` of their energy outside the physics model's
    span are dropped. None (default): 0 (every profile above the noise is kept) when the
    empty field is clean, ``|empty_level| <=`` :data:`CLEAN_EMPTY_LEVEL`, else
    :data:`SAMPLE_LIKE_SHARE`. A beam that drifts slowly with energy lies mostly inside the
    span (a constant, a slope); dropped, it biased the maps: on in-family stacks with a slowly
    drifting beam (energy correlation 0.95-0.98) the oxidation-state RMSE of the noise-free
    stack divided by the estimate was 0.028-0.054 (Ni, 1000 photons) and 0.27 (Co, 5000),
    kept 0.012-0.016 and 0.10. In "empty" pixels that hold sample the same profiles are the
    sample's own spectrum, and keeping them subtracted the sample from the particles (RMSE
    0.11 -> 0.25 on a field covered by one particle).
    """
    if min_unexplained is None:
        min_unexplained = 0.0 if abs(float(empty_level)) <= CLEAN_EMPTY_LEVEL else SAMPLE_LIKE_SHARE
    n_e = gram.shape[0]
    m = model.matrix
    q = np.eye(n_e) - m @ np.linalg.pinv(m)
    lam, u = np.linalg.eigh(gram)
    lam, u = lam[::-1][:min(n_e, n_empty)], u[:, ::-1]
    s = np.sqrt(np.clip(lam, 0.0, None))
    floor = np.median(s[s.size // 2:]) if s.size > 3 else 0.0
    above = [j for j in range(min(max_rank, s.size)) if s[j] > noise_factor * floor]
    unexplained = np.array([np.sum((q @ u[:, j]) ** 2) for j in above])
    keep = [j for j, f in zip(above, unexplained, strict=True) if f >= min_unexplained]
    if not keep:
        return BeamProfiles(np.zeros((n_e, 0)), len(above), q, np.zeros((0, n_e)), np.zeros((0, n_e)))
    prof = u[:, keep]
    # An eigenvector's sign is arbitrary; fix it (the background prof @ maps does not depend on it).
    prof = prof * np.where(prof[np.abs(prof).argmax(0), np.arange(len(keep))] < 0, -1.0, 1.0)
    qp = q @ prof
    g = qp.T @ qp
    reg = g + 1e-3 * np.trace(g) / len(keep) * np.eye(len(keep))
    return BeamProfiles(prof, len(above), q, np.linalg.pinv(prof), np.linalg.solve(reg, qp.T))


def beam_pixel_maps(smoothed, empty, profiles: BeamProfiles) -> np.ndarray:
    """Per-pixel beam coefficients ``v_j`` and the unexplained residual, from the smoothed absorbance.

    Empty pixels: the whole spectrum. Sample pixels: only what the references cannot explain
    (``Q a``). Pixel by pixel, so it may run block by block.

    Returns
    -------
    numpy.ndarray
        (R + 1, Y, X): the R maps ``v_j``, then the RMS of ``Q a`` left unexplained by the
        profiles.
    """
    n_e, shape = smoothed.shape[0], smoothed.shape[1:]
    a = smoothed.reshape(n_e, -1)
    qa = profiles.q @ a
    v_sample = profiles.to_sample @ qa
    v = np.where(np.reshape(empty, (1, -1)), profiles.to_empty @ a, v_sample)
    left = np.sqrt(np.mean((qa - profiles.q @ profiles.profiles @ v_sample) ** 2, axis=0))
    return np.concatenate([v, left[None]]).reshape(-1, *shape)


def beam_maps(pixel_maps, empty, profiles: BeamProfiles, *, map_sigma_px: float = 4.0,
              fill_sigma_px: float = 32.0, sample_weight: float = 0.5, unknown=None):
    """Smooth the per-pixel coefficients into the maps ``v_j`` (normalised convolution).

    Parameters as :func:`estimate_background`; ``pixel_maps`` from :func:`beam_pixel_maps`;
    ``unknown`` (Y, X) bool, optional: pixels whose coefficients are not to be trusted (weight
    0: their neighbours fill them in).

    Returns
    -------
    maps : numpy.ndarray
        (R, Y, X) smoothed maps.
    weights : numpy.ndarray
        (Y, X) weights of the smoothing.
    """
    v, left = pixel_maps[:-1], pixel_maps[-1]
    known = np.ones(empty.shape, bool) if unknown is None else ~np.asarray(unknown, bool)
    # Sample pixels whose unexplained spectrum is not background-like get a low weight.
    inside = left[~empty & known]
    med = np.median(inside)
    mad = 1.4826 * np.median(np.abs(inside - med)) + 1e-12
    excess = np.clip((left - med) / mad - 3.0, 0.0, None)
    # Per profile, a sample pixel knows its map only through the profile's unexplained part.
    prof = profiles.profiles
    share = np.sum((profiles.q @ prof) ** 2, axis=0) / np.sum(prof ** 2, axis=0)
    w = np.where(empty, 1.0, sample_weight * np.exp(-excess ** 2)) * known
    w_j = np.where(empty[None], 1.0, share[:, None, None] * w[None])
    return _normalised_convolution(v, w_j, map_sigma_px, fill_sigma=fill_sigma_px), w


@dataclass(frozen=True)
class DriftingSampleView:
    """Where a drifting sample lies on the detector, and its spectra in its own frame.

    Attributes
    ----------
    empty : numpy.ndarray
        (Y, X) detector pixels that no image shows sample on (at least the margin away).
    unknown : numpy.ndarray
        (Y, X) detector pixels neither empty nor inside the sample in every image (the band
        that the particles' edges sweep, widened by 2 pixels, and the margin around it): the
        maps are not read there, their neighbours fill them in.
    aligned : numpy.ndarray
        (E, Y, X) smoothed absorbance of the aligned stack (the sample's frame).
    offset_px : numpy.ndarray
        (2,) median drift: a pixel of the sample's frame sits about this far away on the
        detector over the scan.
    """

    empty: np.ndarray
    unknown: np.ndarray
    aligned: np.ndarray
    offset_px: np.ndarray

    def sample_maps(self, profiles: BeamProfiles) -> np.ndarray:
        """Per-pixel maps of the sample pixels, (R + 1, Y, X), moved onto the detector.

        :func:`beam_pixel_maps` of the aligned spectra (every pixel as sample), moved by
        ``offset_px``. Aligned pixel x sees, in image e, the background of detector pixel
        ``x + drift[e]``; over a smooth background, about that of ``x + offset_px``. (Fitting
        the first-order terms ``(drift[e] - offset) . grad v_j`` as well made the estimate
        worse on simulated drifts of up to 8 px: more unknowns per pixel.)
        """
        maps = beam_pixel_maps(self.aligned, np.zeros(self.empty.shape, bool), profiles)
        return to_detector(maps, self.offset_px)


def to_detector(maps, offset_px) -> np.ndarray:
    """Move (R, Y, X) maps of the sample's frame onto the detector by the median drift ``offset_px``."""
    return ndimage.shift(maps, (0.0, *offset_px), order=1, mode="nearest")


def drifting_sample_view(transmission, shifts_px, *, smooth_px: float = 3.0,
                         margin_px: int = 4) -> DriftingSampleView:
    """Find the empty detector pixels of a drifting stack and its spectra in the sample's frame.

    The stack is aligned (linear interpolation: the absorbance is smoothed by ``smooth_px``
    anyway); the sample is found there from its mean absorbance (threshold over the field
    that every image covers) and moved back onto the detector by each image's drift.

    Parameters
    ----------
    transmission : numpy.ndarray
        (E, Y, X) transmission as measured.
    shifts_px : numpy.ndarray
        (E, 2) drift of each image (:func:`xanes_lib.alignment.register_stack`).
    smooth_px, margin_px : float, int
        As :func:`estimate_background`.

    Returns
    -------
    DriftingSampleView

    Raises
    ------
    ValueError
        Fewer than 1 % of the pixels empty in every image.
    """
    aligned = apply_alignment(transmission, shifts_px, order=1)
    a_al = smoothed_absorbance(aligned.transmission, smooth_px)
    empty, unknown, offset = detector_empty_pixels(a_al.mean(0), aligned.common_mask, shifts_px,
                                                   margin_px=margin_px)
    return DriftingSampleView(empty, unknown, a_al, offset)


def detector_empty_pixels(level, common_mask, shifts_px, *, margin_px: int = 4):
    """Empty detector pixels of a drifting stack, from the mean absorbance of the aligned stack.

    The sample is found on the aligned ``level`` (threshold over the field that every image
    covers) and moved back onto the detector by each image's (rounded) drift: a detector pixel
    is empty when no image shows sample there. Works on (Y, X) maps only, so the chunked
    pipeline uses it too.

    Parameters
    ----------
    level : numpy.ndarray
        (Y, X) mean smoothed absorbance of the aligned stack.
    common_mask : numpy.ndarray
        (Y, X) bool: pixels every aligned image covers.
    shifts_px : numpy.ndarray
        (E, 2) drift of each image.
    margin_px : int
        Empty pixels lie at least this far from any image's sample.

    Returns
    -------
    empty : numpy.ndarray
        (Y, X) bool, detector frame.
    unknown : numpy.ndarray
        (Y, X) bool: pixels that are sample in some images and not in others (the band the
        particle edges sweep), or near it; their maps are filled in from their neighbours.
    offset_px : numpy.ndarray
        (2,) median drift.

    Raises
    ------
    ValueError
        Fewer than 1 % of the pixels empty in every image.
    """
    field = ndimage.binary_erosion(common_mask, iterations=2)
    sample = level > _empty_threshold(level[field] if field.any() else level)
    if field.any() and not field.all():
        # Outside the field every image covers (a band as wide as the drift), the aligned images
        # repeat the field's edge: no evidence of its own. A pixel there is sample when any field
        # pixel within the band's width is, so that the band is empty only beside empty field.
        # (Counted as sample everywhere, the band kept the empty field at the image borders out
        # of the estimate: its maps came from the sample's unexplained spectrum and the wide
        # fill, and on drifting Ni stacks at 300 photons the error of the oxidation state within
        # 30 px of the borders rose by up to 40 % against the same stack without drift.)
        width = int(np.ceil(np.abs(shifts_px).max())) + 3
        sample = np.where(field, sample, ndimage.binary_dilation(sample & field, iterations=width))
    ever, always = np.zeros_like(sample), np.ones_like(sample)
    for k in np.unique(np.round(shifts_px), axis=0):
        moved = move_mask(sample, k)
        ever |= moved
        always &= moved | ~move_mask(np.ones_like(sample), k)  # outside the image: no evidence
    empty = ~ndimage.binary_dilation(ever, iterations=max(margin_px, 1))
    if empty.sum() < 0.01 * empty.size:
        raise ValueError(f"only {int(empty.sum())} of {empty.size} pixels are free of sample in every "
                         "image; the background profiles need an empty area (>= 1 % of the field).")
    inner = always & ~ndimage.binary_dilation(ever & ~always, iterations=2)
    return empty, ~empty & ~inner, np.median(shifts_px, axis=0)


def beam_background(profiles, maps) -> np.ndarray:
    """(E, Y, X) float32 multiplicative background ``exp(-profiles @ maps)`` (of any block of the maps)."""
    beta = np.tensordot(profiles, maps, axes=(1, 0))
    return np.exp(-beta, out=beta).astype(np.float32)


def estimate_background(transmission, energies_eV, model, *, max_rank: int = 12, noise_factor: float = 3.0,
                        min_unexplained: float | None = None, smooth_px: float = 3.0,
                        map_sigma_px: float = 4.0, fill_sigma_px: float = 32.0, margin_px: int = 4,
                        sample_weight: float = 0.5, shifts_px=None) -> BackgroundEstimate:
    """Low-rank estimate of the multiplicative beam background of a stack (no ground truth).

    The stages (:func:`smoothed_absorbance`, :func:`empty_pixels`, :func:`empty_gram`,
    :func:`beam_profiles`, :func:`beam_pixel_maps`, :func:`beam_maps`,
    :func:`beam_background`) also run block by block on a stack that does not fit in memory
    (:mod:`xanes_lib.chunked`).

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) flat-field corrected transmission, > 0; not modified.
    energies_eV : array_like
        (E,) increasing energies.
    model : xanes_lib.physics.LinearAbsorbanceModel
        Physics model on these energies (:func:`xanes_lib.denoising.inference.reference_model`); its
        first K columns are the references, K = ``n_params - 2``.
    max_rank : int
        At most this many energy profiles.
    noise_factor : float
        A profile is kept when its singular value exceeds ``noise_factor`` times the noise
        floor (the median of the lower half of the singular values).
    min_unexplained : float, optional
        Profiles with less than this share of their energy outside the physics model's span
        are dropped (sample-like); None: automatic (:func:`beam_profiles`).
    smooth_px : float
        Gaussian sigma (pixels) applied to the absorbance before the SVD and the maps.
    map_sigma_px : float
        Gaussian sigma (pixels) of the normalised convolution of the maps.
    fill_sigma_px : float
        Sigma (pixels) of the wide kernel that fills the maps in across particles.
    margin_px : int
        Empty pixels lie at least this far from the sample mask.
    sample_weight : float
        Weight of sample pixels relative to empty ones in the smoothing of the maps (their
        maps come from the unexplained part of the spectrum only, so they are less precise).
    shifts_px : array_like or xanes_lib.alignment.Alignment, optional
        (E, 2) drift of the sample across the images (``register_stack``'s shifts) of a stack
        given as measured, not aligned. The background stays with the detector while the
        sample moves over it: the background is estimated in the detector frame (empty pixels
        where no image holds sample), the maps inside the sample from the aligned spectra
        (:func:`drifting_sample_view`). Aligning first would move the background by the drift
        from image to image, which a few energy profiles no longer describe: it biased the
        oxidation state of dilute Co by -0.1 after the denoiser (issue 16). None, or all
        shifts zero: the stack does not drift.

    Returns
    -------
    BackgroundEstimate
        The background in the frame of ``transmission`` (the detector's).

    Raises
    ------
    ValueError
        Bad shapes or values, or fewer than 1 % of the pixels empty (the profiles cannot be
        learnt; crop a field with some empty area, or use the network's background alone).
    """
    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size)
    if model.matrix.shape[0] != e.size:
        raise ValueError(f"the physics model has {model.matrix.shape[0]} energies, the stack {e.size}.")
    a_s = smoothed_absorbance(t, smooth_px)
    drift = None if shifts_px is None else checked_shifts(shifts_px, e.size, t.shape[1:])
    if drift is not None and not drift.any():
        drift = None
    level = a_s.mean(0)
    if drift is None:
        # The sample is found from its total absorbance (matrix and edge element together), which
        # stands far above the background even where a dilute edge (Co) is lost in the noise.
        empty, unknown = empty_pixels(level, margin_px), None
    else:
        view = drifting_sample_view(t, drift, smooth_px=smooth_px, margin_px=margin_px)
        empty, unknown = view.empty, view.unknown
    level_empty = empty_level(level, empty)
    prof = beam_profiles(empty_gram(a_s, empty), int(empty.sum()), model, max_rank=max_rank,
                         noise_factor=noise_factor, min_unexplained=min_unexplained, empty_level=level_empty)
    if not prof.rank:
        return BackgroundEstimate(np.ones_like(t, dtype=np.float32), prof.profiles,
                                  np.zeros((0, *empty.shape)), 0, prof.above, empty, np.ones(empty.shape),
                                  level_empty)
    pixel_maps = beam_pixel_maps(a_s, empty, prof)
    if drift is not None:  # sample pixels: their maps from the aligned spectra, moved back
        pixel_maps = np.where(empty, pixel_maps, view.sample_maps(prof))
    maps, w = beam_maps(pixel_maps, empty, prof, map_sigma_px=map_sigma_px, fill_sigma_px=fill_sigma_px,
                        sample_weight=sample_weight, unknown=unknown)
    return BackgroundEstimate(beam_background(prof.profiles, maps), prof.profiles, maps, prof.rank,
                              prof.above - prof.rank, empty, w, level_empty)


def divide_beam_background(transmission, energies_eV, references, *, shift_eV: float = 0.0,
                           shifts_px=None):
    """Return the stack divided by its low-rank beam background, and a note of what was done.

    Left in, the smooth beam background looks like a phase of its own to a test of the fit
    residual. Without an empty field to learn it from, the stack is returned as it is (not a
    copy) and the note says why.

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) transmission; not modified.
    energies_eV : array_like
        (E,) energies.
    references : sequence
        Reference spectra (``.spectrum(energies)``), calibrated by ``shift_eV``.
    shift_eV : float
        Energy shift applied to the references.
    shifts_px : array_like or xanes_lib.alignment.Alignment, optional
        Drift of a stack given as measured, to be aligned afterwards: the background is
        estimated in the detector frame (:func:`estimate_background`). Divide it out before
        aligning a drifting stack.

    Returns
    -------
    corrected : numpy.ndarray
        (E, Y, X) ``transmission / B``, or ``transmission`` itself.
    note : str
        "beam background divided out (rank r)" or "beam background left in: <reason>".
    """
    from ..mapping import check_reference_edges
    from ..mapping._input import _refuse_absorbance_as_transmission

    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size, allow_nonfinite=True)  # NaN: below
    references = list(references)
    check_reference_edges(references, e, float(shift_eV))
    model = shifted_model(e, references, shift_eV)
    _refuse_absorbance_as_transmission(t, np.arange(e.size), np.ones(t.shape[1:], bool), model,
                                       n_references(model))
    try:
        beam = estimate_background(transmission, e, model, shifts_px=shifts_px)
    except ValueError as exc:  # no empty field to learn it from
        return transmission, beam_note(reason=exc)
    return transmission / beam.background, beam_note(rank=beam.rank)


def align_with_beam_background(transmission, energies_eV, references, alignment):
    """Align a stack as notebooks 04 and 05 do: a drifting one after dividing out its beam background.

    The beam background stays with the detector while the sample drifts over it, so it is
    divided out in the detector frame (:func:`divide_beam_background` with the shifts) before
    :func:`xanes_lib.alignment.apply_alignment` moves the images. A stack whose shifts are all
    zero (no significant drift) is only passed through the alignment, as before.

    Returns
    -------
    aligned : xanes_lib.alignment.AlignedStack
    note : str
        What was done with the beam background before alignment.
    """
    shifts = checked_shifts(alignment, np.shape(transmission)[0], np.shape(transmission)[1:])
    note = "not divided before alignment (no drift)"
    if shifts.any():
        transmission, note = divide_beam_background(transmission, energies_eV, references, shifts_px=shifts)
    return apply_alignment(transmission, alignment), note


def shifted_model(energies_eV, references, shift_eV: float = 0.0):
    """Return the physics model of the references at ``E - shift_eV`` (the beam background's model)."""
    e = np.asarray(energies_eV, dtype=np.float64)
    return build_model(e, np.stack([r.spectrum(e - shift_eV) for r in references]),
                       names=[r.name for r in references])


def beam_note(*, rank: int | None = None, reason=None) -> str:
    """Say what was done with the beam background: divided out (``rank``) or left in (``reason``)."""
    return f"beam background left in: {reason}" if rank is None else \
        f"beam background divided out (rank {rank})"


def beam_corrected_energy_shift(transmission, energies_eV, references, *, mask, iterations: int = 3,
                                **options) -> tuple[EnergyCalibration, BackgroundEstimate]:
    """Calibrate the references' energy shift on the stack divided by its low-rank beam background.

    A smooth beam background that varies with energy pulls a shift fitted to the stack as
    measured (measured on the held-out stacks of notebook 01, simulated without any shift:
    -0.50 and -0.35 eV found and applied, bias of the maps +0.13 and +0.10); the low-rank
    background, estimated with unshifted references, in turn absorbs part of a real shift
    (+1 eV found as +0.64 to +0.81). So the two are estimated in turn: the background with
    the references moved by the current shift, then the shift on the stack divided by that
    background (:func:`xanes_lib.mapping.calibrate_energy_shift`, which decides whether to apply
    it). Measured: no shift applied on the six held-out Ni stacks; +1 eV found as +0.92 and
    applied (bias <= 0.021).

    Parameters
    ----------
    transmission : array_like
        (E, Y, X) measured transmission; not modified.
    energies_eV : array_like
        (E,) energies.
    references : sequence of reference objects
        With ``.name`` and ``.spectrum(energies_eV)``.
    mask : array_like of bool
        (Y, X) sample pixels for the calibration.
    iterations : int
        Rounds of background and shift (>= 1).
    **options
        Further options of :func:`xanes_lib.mapping.calibrate_energy_shift` (``z``, ``force``,
        ``energy_window_eV``...).

    Returns
    -------
    calibration : xanes_lib.mapping.EnergyCalibration
        The last round's shift and decision.
    beam : BackgroundEstimate
        The low-rank background of the last round.

    Raises
    ------
    ValueError
        As :func:`estimate_background` (e.g. no empty field) and
        :func:`xanes_lib.mapping.calibrate_energy_shift`.
    """
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}.")
    e = check_energies(energies_eV, name="energies_eV")
    t = check_stack(transmission, name="transmission", n_energies=e.size)
    shift = 0.0
    for i in range(int(iterations)):
        beam = estimate_background(t, e, shifted_model(e, references, shift))
        # an earlier round's shift only moves the next background: its uncertainty (the jackknife
        # over regions) is needed in the last round alone
        last = {} if i == int(iterations) - 1 else {"regions": None}
        calibration = calibrate_energy_shift(absorbance(t / beam.background), e, references, mask=mask,
                                             **{**options, **last})
        shift = calibration.shift_eV if np.isfinite(calibration.shift_eV) else 0.0
    return calibration, beam


def calibrate_energy_shift_with_beam(transmission, energies_eV, references, *, mask,
                                     **options) -> tuple[EnergyCalibration, str]:
    """Calibrate the references' energy shift as notebooks 04 and 05 do, and say how.

    :func:`beam_corrected_energy_shift` where a low-rank beam background can be estimated;
    where it cannot (e.g. no empty field), :func:`xanes_lib.mapping.calibrate_energy_shift` on
    the stack as measured. ``options`` go to the calibration (``force``, ``energy_window_eV``...).

    Returns
    -------
    calibration : xanes_lib.mapping.EnergyCalibration
    note : str
        Empty, or why the stack was calibrated as measured.
    """
    try:
        return beam_corrected_energy_shift(transmission, energies_eV, references, mask=mask, **options)[0], ""
    except ValueError as exc:
        a = absorbance(np.asarray(transmission, dtype=np.float64))
        calibration = calibrate_energy_shift(a, energies_eV, references, mask=mask, **options)
        return calibration, f"no low-rank beam background ({exc}); calibrated on the stack as measured"
