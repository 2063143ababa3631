"""The data files a task reads, listed without decoding any image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rashomon.errors import RashomonError


def data_files(
    dataset: str,
    root: str | Path | None = None,
    size: int = 28,
    attributes_csv: str | Path | None = None,
    labels: str | Path | None = None,
) -> list[Path]:
    """Every file `load_task` reads for these arguments: the MedMNIST npz, or a folder task's
    label CSV, classes file and images; plus the attributes CSV. Files that do not exist yet
    (a MedMNIST file still to download) are listed all the same."""
    files: list[Path] = []
    folder = Path(dataset)
    if folder.is_dir():
        csv = Path(labels) if labels is not None else Path("labels.csv")
        if not csv.is_absolute() and not csv.exists():
            csv = folder / csv
        files.append(csv)
        for name in ("classes.txt", f"classes-{csv.stem.removeprefix('labels-')}.txt"):
            if (csv.parent / name).exists():
                files.append(csv.parent / name)
        if csv.exists() and csv.stat().st_size > 0:
            try:
                paths = pd.read_csv(csv, usecols=["path"])["path"]
            except (ValueError, pd.errors.ParserError) as exc:
                raise RashomonError(f"{csv} is not a label CSV with a path column ({exc})") from exc
            files += [folder / str(p) for p in paths]
    else:
        from rashomon.data.medmnist import default_root, npz_filename

        base = Path(root).expanduser() if root is not None else default_root()
        files.append(base / npz_filename(dataset.lower(), size))
    if attributes_csv is not None:
        files.append(Path(attributes_csv))
    return files
