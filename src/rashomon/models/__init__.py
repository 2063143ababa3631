"""Architectures (a registry) and MAP training."""

from rashomon.models.registry import (
    ARCHITECTURES,
    HEAD_NAME,
    Classifier,
    architecture_names,
    build_from_spec,
    build_model,
    count_parameters,
)

__all__ = [
    "ARCHITECTURES",
    "HEAD_NAME",
    "Classifier",
    "architecture_names",
    "build_from_spec",
    "build_model",
    "count_parameters",
]
