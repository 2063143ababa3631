"""MedMNIST-C corruptions (Di Salvo et al., 2024) of a split's raw images, seeded and cached.

The corruption tables (which corruptions a dataset gets and the five severity parameters of
each) come from the `medmnistc` package. We apply them as its `DatasetManager` does: the image
is converted to RGB, corrupted, and converted back to greyscale for greyscale datasets. Two
things differ on purpose:

- Randomness. `medmnistc` draws from the global `random` / `np.random` state and from a
  `rng` attribute it only sets inside `DatasetManager` (calling `ImpulseNoise` without it
  raises "'ImpulseNoise' object has no attribute 'rng'"). We seed all three per image from
  (seed, corruption, severity, image index), so an image's corruption does not depend on
  chunking, subsets or the order of calls, and we restore the caller's global RNG state.
- Motion blur. `medmnistc` 0.1.0 decodes ImageMagick's output with `np.fromstring` (removed
  in NumPy 2) and assumes 224 px images; `_MotionBlur` makes the same ImageMagick call and
  decodes the PNG with PIL.

The severity parameters were calibrated by MedMNIST-C on 224 px images. Those measured in
pixels (blur kernels, motion-blur radius) are therefore relatively stronger at 28 px.

Datasets without a MedMNIST-C table (e.g. folder datasets) get `GENERIC_TABLE`: the
PneumoniaMNIST table, which holds only modality-agnostic corruptions (digital, noise, blur,
brightness, contrast, gamma).
"""

from __future__ import annotations

import hashlib
import os
import random
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rashomon.data.task import images_to_tensor
from rashomon.errors import RashomonError

if TYPE_CHECKING:
    from rashomon.data.task import Task

SEVERITIES = (1, 2, 3, 4, 5)
GENERIC_TABLE = "pneumoniamnist"


def _tables() -> dict[str, dict[str, Any]]:
    """medmnistc's registry, imported lazily: it imports Wand, which needs ImageMagick."""
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS
    except ImportError as exc:  # Wand raises ImportError when libMagickWand is missing
        raise RashomonError(
            f"medmnistc cannot be imported ({exc}); install ImageMagick's library "
            "(Debian: apt-get install libmagickwand-6.q16-6) or set corruptions to []"
        ) from exc
    return CORRUPTIONS_DS


def table_name(dataset: str) -> str:
    """The MedMNIST-C table a dataset uses: its own, or `GENERIC_TABLE` when it has none."""
    key = dataset.lower()
    return key if key in _tables() else GENERIC_TABLE


def corruption_names(dataset: str) -> list[str]:
    """The dataset's MedMNIST-C corruptions in the package's order (the generic PneumoniaMNIST
    list for datasets MedMNIST-C does not cover)."""
    return list(_tables()[table_name(dataset)])


def _corruptor(dataset: str, name: str) -> Any:
    table = _tables()[table_name(dataset)]
    if name not in table:
        raise RashomonError(
            f"corruption {name!r} is not defined for {dataset}; choose from: {', '.join(table)}"
        )
    corruptor = table[name]
    if type(corruptor).__name__ == "MotionBlur":
        return _MotionBlur(corruptor.severity_params)
    return corruptor


class _MotionBlur:
    """ImageMagick's motion blur with medmnistc's parameters (radius, sigma) and a random angle
    in [-45, 45] degrees drawn from `rng` (set per image), decoded so that any size works."""

    def __init__(self, severity_params: list[tuple[float, float]]):
        self.severity_params = severity_params
        self.rng = np.random.default_rng(0)

    def apply(self, img: Any, severity: int) -> np.ndarray:
        from medmnistc.corruptions.filter import MotionImage
        from PIL import Image

        radius, sigma = self.severity_params[severity]
        buf = BytesIO()
        img.save(buf, format="PNG")
        with MotionImage(blob=buf.getvalue()) as wand_img:
            wand_img.motion_blur(radius=radius, sigma=sigma, angle=self.rng.uniform(-45, 45))
            blob = wand_img.make_blob("png")
        return np.asarray(Image.open(BytesIO(blob)).convert("RGB"))


def _check_severity(severity: int) -> int:
    if int(severity) != severity or not 0 <= severity <= len(SEVERITIES):
        raise RashomonError(f"severity {severity} is invalid; use an integer from 0 to 5")
    return int(severity)


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """32-bit seed of one image's corruption, a hash of (seed, corruption, severity, index)."""
    entropy = [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), int(severity), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextmanager
def _preserved_global_rngs() -> Iterator[None]:
    """medmnistc draws from the global RNGs; leave the caller's streams as they were. Torch runs
    single-threaded meanwhile: torchvision's blur on one 28 px image ran 15-100x slower with
    intra-op threads on a busy 2-core CPU (1 ms vs 16-100 ms per image)."""
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def corrupt_images(
    images: np.ndarray,
    name: str,
    severity: int,
    seed: int = 0,
    dataset: str = GENERIC_TABLE,
    indices: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Apply one MedMNIST-C corruption at `severity` (1-5; 0 returns a copy) to uint8 images
    [N, H, W] (greyscale) or [N, H, W, C] (C = 1 or 3). Returns uint8 of the same shape.

    `dataset` picks the parameter table. `indices` are the images' positions in their split
    (default 0..N-1): image i is corrupted with `image_seed(seed, name, severity, indices[i])`,
    so the result is the same whether the split is corrupted whole or in pieces.
    """
    from PIL import Image

    severity = _check_severity(severity)
    arr = np.asarray(images)
    if (
        arr.dtype != np.uint8
        or arr.ndim not in (3, 4)
        or (arr.ndim == 4 and arr.shape[-1] not in (1, 3))
    ):
        raise RashomonError(
            f"images must be uint8 [N, H, W] or [N, H, W, 1|3], got {arr.dtype} {arr.shape}; "
            "pass the split's raw images"
        )
    corruptor = _corruptor(dataset, name)
    if severity == 0:
        return arr.copy()
    idx = np.arange(len(arr)) if indices is None else np.asarray(indices)
    if len(idx) != len(arr):
        raise RashomonError(f"indices has {len(idx)} entries for {len(arr)} images; pass one each")
    grey = arr.ndim == 3 or arr.shape[-1] == 1
    out = np.empty_like(arr)
    rows = range(len(arr))
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc=f"{name} s{severity}", leave=False)
    with _preserved_global_rngs():
        for i in rows:
            s = image_seed(seed, name, severity, int(idx[i]))
            random.seed(s)
            np.random.seed(s)  # noqa: NPY002 (medmnistc draws from the global state)
            corruptor.rng = np.random.default_rng(s)  # ImpulseNoise (skimage) reads self.rng
            img = arr[i].reshape(arr.shape[1:3]) if grey else arr[i]
            result = np.asarray(corruptor.apply(Image.fromarray(img).convert("RGB"), severity - 1))
            if grey:
                result = np.asarray(Image.fromarray(result.astype(np.uint8)).convert("L"))
            out[i] = result.reshape(out.shape[1:])
    return out


def subset_indices(n: int, max_images: int | None, seed: int = 0) -> np.ndarray:
    """Sorted positions of the images to audit: all `n`, or a seeded random `max_images` of them."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if max_images < 1:
        raise RashomonError(f"max_images must be positive, got {max_images}; or leave it unset")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5B5E7])
    return np.sort(rng.choice(n, size=max_images, replace=False))


def images_digest(images: np.ndarray, indices: np.ndarray) -> str:
    """16 hex digits of sha256 over uint8 `images` (shape, dtype and bytes) and their positions
    in the split (`indices`, which seed each image's corruption)."""
    arr = np.ascontiguousarray(images)
    h = hashlib.sha256(repr((arr.shape, str(arr.dtype))).encode())
    h.update(arr.tobytes())
    h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def cache_file_name(
    images: np.ndarray,
    indices: np.ndarray,
    dataset: str,
    split: str,
    name: str,
    severity: int,
    seed: int,
) -> str:
    """The cache file of one corrupted subset: keyed by what determines its bytes, the content
    of the images it corrupts and their positions (`images_digest`), the parameter table
    (`table_name(dataset)`), the corruption, severity and seed. The split names the file for
    readers only. Other images under the same dataset name (edited, inverted, other channels or
    size) get another file, never the old one's corruptions."""
    table = table_name(dataset)
    digest = images_digest(images, indices)
    return f"{table}_{split}_{name}_s{severity}_seed{seed}_n{len(indices)}_{digest}.npz"


def corrupted_raw(
    task: Task,
    split: str,
    name: str,
    severity: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    max_images: int | None = None,
) -> np.ndarray:
    """uint8 corrupted images of `split` (the `subset_indices` subset when `max_images` is set),
    read from `cache_dir` if generated before from the same images (`cache_file_name`), else
    generated and saved there as npz."""
    s = task.split(split)
    if s.raw is None:
        raise RashomonError(
            f"the {split} split of {task.name} keeps no raw images; corruptions need them"
        )
    severity = _check_severity(severity)
    idx = subset_indices(len(s.raw), max_images, seed)
    if severity == 0:
        return np.asarray(s.raw)[idx].copy()
    images = np.asarray(s.raw)[idx]
    path = None
    if cache_dir is not None:
        file = cache_file_name(images, idx, task.name, split, name, severity, seed)
        path = Path(cache_dir) / file
        if path.exists():
            with np.load(path) as cached:
                return cached["images"]
    images = corrupt_images(images, name, severity, seed, task.name, indices=idx)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
        np.savez(tmp, images=images, indices=idx)
        os.replace(tmp, path)  # atomic: a killed run never leaves half a file
    return images


def corrupted_split(
    task: Task,
    split: str,
    name: str,
    severity: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    max_images: int | None = None,
) -> torch.Tensor:
    """Corrupted images of `split` as float32 [N, C, H, W] scaled like `task.<split>.x`
    (see `corrupted_raw` for caching and `max_images`)."""
    return images_to_tensor(corrupted_raw(task, split, name, severity, seed, cache_dir, max_images))
