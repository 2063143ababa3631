"""rashomon: audit predictive multiplicity and desiderata across Rashomon sets of medical imaging
models, built cheaply from one trained network with (Riemannian) Laplace approximations."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Heavy modules (torch, laplace-torch) load on first use so `rashomon --help` stays fast.
_LAZY = {
    "load_task": "rashomon.api",
    "train": "rashomon.models.train",
    "load_checkpoint": "rashomon.models.train",
    "laplace": "rashomon.sets.laplace",
    "riemannian": "rashomon.sets.riemannian",
    "rashomon_mask": "rashomon.sets.rashomon",
    "last_layer_extremes": "rashomon.sets.extremes",
    "register_source": "rashomon.sets.registry",
    "available_sources": "rashomon.sets.registry",
    "ModelSet": "rashomon.sets.base",
    "Task": "rashomon.data.task",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rashomon' has no attribute {name!r}")


__all__ = sorted(_LAZY)
