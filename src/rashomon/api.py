"""Public entry points that pick the right loader."""

from __future__ import annotations

from pathlib import Path

from rashomon.data.groups import load_attribute_csv
from rashomon.data.medmnist import load_medmnist
from rashomon.data.task import Task


def load_task(
    name: str,
    root: str | Path | None = None,
    size: int = 28,
    *,
    seed: int = 0,
    attributes_csv: str | Path | None = None,
) -> Task:
    """Load a task by MedMNIST name, or a folder of images (`name` a directory with labels.csv).

    `root` is the data folder (default: $RASHOMON_DATA, else the medmnist default root).
    `attributes_csv` adds patient attributes (`split,index,<attribute>...`).
    """
    if Path(name).is_dir():
        from rashomon.data.folder import load_folder

        task = load_folder(name, size=size, seed=seed)
    else:
        task = load_medmnist(name, root=root, size=size, seed=seed)
    if attributes_csv is not None:
        load_attribute_csv(task, attributes_csv)
    return task
