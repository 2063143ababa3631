"""The data files a task reads, listed without loading it (so a run can tell whether its inputs
changed by fingerprinting them, without decoding an image)."""

from __future__ import annotations

from pathlib import Path

from rashomon.data.task import absolute
from rashomon.errors import RashomonError


def is_folder_dataset(dataset: str | Path) -> bool:
    """A dataset is a folder task when it names a directory; otherwise a MedMNIST name."""
    return Path(dataset).expanduser().is_dir()


def data_files(
    dataset: str | Path,
    root: str | Path | None = None,
    size: int = 28,
    labels: str | Path | None = None,
    attributes_csv: str | Path | None = None,
) -> list[Path]:
    """The absolute paths `rashomon.load_task` with the same arguments reads, in the order of
    `Task.files`: the npz (listed where it would be downloaded to when absent); or the label
    CSV, its classes file and every image; then the attributes CSV when given. Folder tasks
    read only their label CSV here."""
    if is_folder_dataset(dataset):
        from rashomon.data.folder import folder_files

        files = folder_files(dataset, labels)
    else:
        from rashomon.data.medmnist import npz_path

        if labels is not None:
            raise RashomonError(
                f"labels={labels!r} applies to folder tasks, but {dataset!r} is a MedMNIST "
                "dataset; drop the label file or pass a folder"
            )
        files = [npz_path(str(dataset), root, size)]
    if attributes_csv is not None:
        files.append(Path(attributes_csv))
    return [Path(absolute(p)) for p in files]
