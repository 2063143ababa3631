"""The prediction names as they were first published, kept for users' imports.

A set's models are evaluated by `rashomon.sets.predict` (`ModelSet.predict` calls it) and one
network by `rashomon.models.predict`; code inside the package imports those modules, not this one.
"""

from rashomon.models.predict import SINGLE_MODEL_BATCH, model_features, model_probs
from rashomon.sets.predict import (
    CPU_ACTIVATION_BYTES,
    STRATEGIES,
    channels_last,
    choose_strategy,
    default_device,
    per_sample_jacobian,
    predict_logits,
    predict_probs,
)

__all__ = [
    "CPU_ACTIVATION_BYTES",
    "SINGLE_MODEL_BATCH",
    "STRATEGIES",
    "channels_last",
    "choose_strategy",
    "default_device",
    "model_features",
    "model_probs",
    "per_sample_jacobian",
    "predict_logits",
    "predict_probs",
]
