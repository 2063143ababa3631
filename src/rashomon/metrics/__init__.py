"""Metrics over a set of models: pure functions of arrays (NumPy or torch in, NumPy out).

Contract: `probs` [M, N, C] (binary C = 2; multilabel [M, N, L] sigmoid probabilities audited
per label as binary tasks), `preds` [M, N] integer labels, `ref` [N] the MAP model's labels.

Modules: multiplicity (ambiguity, discrepancy, disagreement, viable prediction range, Rashomon
capacity, self-consistency, churn, decision flips, per group, convergence, `multiplicity_summary`),
performance and calibration (per-model [M] arrays), fairness (per-group metrics and gaps),
table (`per_model_table`: one row per model, one column per metric), spread (`spread_table`:
tidy summary across the set, bootstrap CIs, null-control warning), degenerate (is the trained
model near-constant or near chance?), validation (input checks and their error messages).
"""

from rashomon.metrics.calibration import adaptive_ece, brier, ece, nll
from rashomon.metrics.degenerate import Degeneracy, degeneracy
from rashomon.metrics.fairness import fairness_gaps, gap_table, group_metrics, group_table
from rashomon.metrics.multiplicity import (
    ambiguity,
    churn,
    convergence_curve,
    decision_flips,
    disagreement,
    discrepancy,
    flip_rate,
    multiplicity_by_group,
    multiplicity_summary,
    predict_labels,
    rashomon_capacity,
    self_consistency,
    threshold_for_sensitivity,
    viable_prediction_range,
)
from rashomon.metrics.performance import (
    accuracy,
    auroc,
    average_precision,
    balanced_accuracy,
    multilabel_auroc,
    sensitivity,
    specificity,
)
from rashomon.metrics.spread import null_control_warning, spread_table, summarise, write_table
from rashomon.metrics.table import per_model_table, split_column

__all__ = [
    "Degeneracy",
    "accuracy",
    "adaptive_ece",
    "ambiguity",
    "auroc",
    "average_precision",
    "balanced_accuracy",
    "brier",
    "churn",
    "convergence_curve",
    "decision_flips",
    "degeneracy",
    "disagreement",
    "discrepancy",
    "ece",
    "fairness_gaps",
    "flip_rate",
    "gap_table",
    "group_metrics",
    "group_table",
    "multilabel_auroc",
    "multiplicity_by_group",
    "multiplicity_summary",
    "nll",
    "null_control_warning",
    "per_model_table",
    "predict_labels",
    "rashomon_capacity",
    "self_consistency",
    "sensitivity",
    "specificity",
    "split_column",
    "spread_table",
    "summarise",
    "threshold_for_sensitivity",
    "viable_prediction_range",
    "write_table",
]
