"""The `evaluate` stage: multiplicity and per-model desiderata across the Rashomon set.

`stage` reads the sample stage's predictions and writes the tables (its arithmetic is
`rashomon.metrics`); `robustness` runs the set's networks on corrupted and adversarial images.
"""

from rashomon.evaluate.stage import (
    KNOWN_METRICS,
    chosen_attributes,
    extremes_table,
    multiplicity_table,
    multiplicity_tables,
    null_control_notes,
    per_model_frames,
    rashomon_indices,
    robustness_columns,
    robustness_table,
    run_evaluate_stage,
    wants_extremes,
)

__all__ = [
    "KNOWN_METRICS",
    "chosen_attributes",
    "extremes_table",
    "multiplicity_table",
    "multiplicity_tables",
    "null_control_notes",
    "per_model_frames",
    "rashomon_indices",
    "robustness_columns",
    "robustness_table",
    "run_evaluate_stage",
    "wants_extremes",
]
