"""Shared fixtures: real MedMNIST files from ../shared/data when present, else tiny generated
files in the same npz layout, so the suite passes anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def synthetic_npz(
    path: Path,
    sizes: tuple[int, int, int] = (160, 40, 40),
    n_labels: int = 1,
    n_classes: int = 2,
    seed: int = 0,
    channels: int = 1,
) -> Path:
    """Write an npz in the official MedMNIST layout whose label is visible in the image (a bright
    square whose position encodes the class), so small models learn it in a few epochs."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        shape = (n, 28, 28) if channels == 1 else (n, 28, 28, channels)
        images = rng.integers(0, 80, size=shape, dtype=np.uint8)
        if n_labels == 1:
            labels = rng.integers(0, n_classes, size=(n, 1)).astype(np.uint8)
            for i, c in enumerate(labels[:, 0]):
                r = 2 + 3 * int(c)
                images[i, r : r + 6, 4:12] = 220
        else:
            labels = (rng.random((n, n_labels)) < 0.3).astype(np.uint8)
            for i in range(n):
                for j in np.flatnonzero(labels[i]):
                    images[i, 2 * j : 2 * j + 2, 16:26] = 230
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A folder holding pneumoniamnist.npz and breastmnist.npz (real when available)."""
    env = os.environ.get("RASHOMON_DATA")
    for candidate in (Path(env) if env else None, SHARED_DATA):
        if candidate is not None and (candidate / "pneumoniamnist.npz").exists():
            return candidate
    root = tmp_path_factory.mktemp("generated-data")
    synthetic_npz(root / "pneumoniamnist.npz", sizes=(600, 120, 160), seed=1)
    synthetic_npz(root / "breastmnist.npz", sizes=(200, 60, 80), seed=2)
    return root


@pytest.fixture(scope="session")
def real_data(data_root) -> bool:
    return (data_root / "breastmnist.npz").stat().st_size > 500_000


@pytest.fixture(scope="session")
def task_pneumonia(data_root):
    import rashomon as rs

    return rs.load_task("pneumoniamnist", root=data_root)


@pytest.fixture(scope="session")
def task_breast(data_root):
    import rashomon as rs

    return rs.load_task("breastmnist", root=data_root)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory, data_root) -> Path:
    """A small breastmnist.npz subsampled from the real file (official layout), for fast runs."""
    root = tmp_path_factory.mktemp("tiny-data")
    with np.load(data_root / "breastmnist.npz") as src:
        arrays = {}
        for split, n in (("train", 120), ("val", 40), ("test", 40)):
            arrays[f"{split}_images"] = src[f"{split}_images"][:n]
            arrays[f"{split}_labels"] = src[f"{split}_labels"][:n]
    np.savez_compressed(root / "breastmnist.npz", **arrays)
    return root


@pytest.fixture(scope="session")
def tiny_task(tiny_root):
    import rashomon as rs

    return rs.load_task("breastmnist", root=tiny_root)


@pytest.fixture(scope="session")
def tiny_tanh_cnn(tiny_task):
    """A small tanh CNN trained for one epoch: smooth, so exact Riemannian geodesics are defined."""
    import rashomon as rs

    return rs.train(
        tiny_task,
        "cnn",
        epochs=1,
        seed=0,
        arch_options={"width": 0.125, "activation": "tanh"},
        progress=False,
    )
