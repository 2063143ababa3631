"""Input coercion shared by the decide modules: NumPy in, NumPy out, torch tensors accepted."""

from __future__ import annotations

from typing import Any

import numpy as np

from rashomon.errors import RashomonError


def to_numpy(a: Any, name: str = "array") -> np.ndarray:
    """A NumPy view of an array-like or a (possibly CUDA, possibly grad-tracking) torch tensor."""
    if a is None:
        raise RashomonError(f"{name} is missing; pass an array")
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    """`[M, N, C]` probabilities as float64."""
    p = to_numpy(probs, name).astype(np.float64, copy=False)
    if p.ndim != 3:
        raise RashomonError(f"{name} must be [M, N, C] probabilities, got shape {p.shape}")
    return p


def check_preds(preds: Any, name: str = "preds") -> np.ndarray:
    """`[M, N]` integer labels."""
    p = to_numpy(preds, name)
    if p.ndim != 2:
        raise RashomonError(f"{name} must be [M, N] integer labels, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise RashomonError(f"{name} must hold integer labels, got dtype {p.dtype}; use argmax")
    return p.astype(np.int64, copy=False)


def check_vector(a: Any, n: int | None, name: str) -> np.ndarray:
    v = to_numpy(a, name)
    if v.ndim != 1 or (n is not None and len(v) != n):
        want = f"[{n}]" if n is not None else "1-D"
        raise RashomonError(f"{name} must be {want}, got shape {v.shape}")
    return v
