"""Scoring against ground truth (simulated files only): classical pipelines and metrics.

- :mod:`.classical`  classical denoisers (Gaussian, TV, non-local means, PCA) + fit, the
  self-tuned baseline, pipelines scored (incl. the unseen-phase AUC, its noise-free
  ceiling and the AUC of notebook 04's test of unexplained pixels)
- :mod:`.metrics`    oxidation-state accuracy, boundary masks, background error, ROC AUC, the
  truth of a drifting stack in its aligned frame
- :mod:`.bounds`     the physical limit: Cramer-Rao bound of the oxidation state for the
  stack's photon counts, per pixel and pooled over 5 x 5 pixels; the true state's spread
"""

from .bounds import POOL_PX, StateBound, oxidation_state_bound, physical_limits, stack_state_bound
from .classical import (
    CLASSICAL_GRID,
    classical_denoise,
    noise_sigma,
    notebook_shift_eV,
    oxidation_state_fit,
    run_classical,
    run_hybrid,
    run_network,
    run_self_tuned,
    score_pipeline,
    unexplained_auc,
    unexplained_auc_ceiling,
    unexplained_flag_scores,
)
from .metrics import (
    aligned_like_notebook04,
    background_error,
    boundary_mask,
    matched_negatives,
    oxidation_state_metrics,
    roc_auc,
    truth_in_frame,
)

__all__ = [
    "CLASSICAL_GRID", "noise_sigma", "classical_denoise", "oxidation_state_fit", "score_pipeline",
    "run_classical", "run_hybrid", "run_self_tuned", "run_network", "unexplained_auc",
    "unexplained_auc_ceiling", "unexplained_flag_scores", "notebook_shift_eV",
    "oxidation_state_metrics", "boundary_mask", "background_error", "roc_auc", "matched_negatives",
    "truth_in_frame", "aligned_like_notebook04", "POOL_PX", "StateBound", "oxidation_state_bound",
    "stack_state_bound", "physical_limits",
]
