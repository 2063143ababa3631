"""The Task: train/val/test splits of one classification problem, with patient groups."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

TaskKind = Literal["binary", "multiclass", "multilabel"]


@dataclass(frozen=True)
class GroupAttribute:
    """A patient attribute used to split metrics by group.

    `derived` is True for attributes computed from the images or drawn at random
    (`intensity`, `random`): they are proxies or null controls, never demographics,
    and every output labels them so.
    """

    name: str
    levels: tuple[str, ...]
    derived: bool
    description: str = ""

    @property
    def label(self) -> str:
        """The attribute's name as shown, marked "(derived)" when it was computed, not given."""
        return f"{self.name} (derived)" if self.derived else self.name


@dataclass
class Split:
    """One split. `x` is float32 [N, C, H, W] scaled as the models expect; `y` is int64 [N]
    (or [N, L] 0/1 for multilabel); `groups` maps attribute name to int codes [N];
    `raw` keeps the uint8 images [N, H, W] or [N, H, W, C] for corruptions."""

    x: torch.Tensor
    y: torch.Tensor
    groups: dict[str, torch.Tensor] = field(default_factory=dict)
    raw: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Task:
    """A classification task: its train / val / test splits, kind, class names and attributes."""

    name: str
    kind: TaskKind
    num_classes: int  # classes for binary/multiclass, labels for multilabel
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...] = ()
    attributes: dict[str, GroupAttribute] = field(default_factory=dict)
    size: int = 28
    source: str = ""
    # Absolute paths of every file the task was read from (npz; or label CSV, classes file and
    # images; plus an attributes CSV), in reading order: the run directory fingerprints them.
    # `rashomon.data.data_files` lists the same paths without loading the task.
    files: tuple[str, ...] = ()

    @property
    def in_channels(self) -> int:
        """Image channels (1 grey, 3 colour)."""
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> int:
        """Image side in pixels."""
        return int(self.train.x.shape[-1])

    @property
    def output_dim(self) -> int:
        """Width of the model's last layer: classes, or labels for multilabel."""
        return self.num_classes

    def split(self, name: str) -> Split:
        """The split called `name` (train, val or test)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}: use train, val or test")
        return getattr(self, name)

    def fingerprint(self, groups: Sequence[str] = ()) -> str:
        """Digest of what training reads: the train and validation images and labels (the
        validation split selects the checkpoint), the kind and the number of classes, plus the
        training groups named in `groups` (group-balanced training reads them). Computed from
        the tensors themselves, so a flipped label, another channel count or another image
        size is other data, wherever the files came from."""
        key = tuple(groups)
        cache: dict[tuple[str, ...], str] = self.__dict__.setdefault("_fingerprints", {})
        if key not in cache:
            h = hashlib.sha256(f"{self.kind}:{self.num_classes}".encode())
            for split in (self.train, self.val):
                for t in (split.x, split.y):
                    h.update(str((tuple(t.shape), str(t.dtype))).encode())
                    h.update(t.detach().cpu().contiguous().numpy().tobytes())
            for name in key:
                h.update(name.encode())
                h.update(self.train.groups[name].cpu().contiguous().numpy().tobytes())
            cache[key] = h.hexdigest()[:16]
        return cache[key]

    def describe(self) -> dict:
        """The task as saved with checkpoints and sets: name, kind, classes, size and attributes."""
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "size": self.size,
            "sizes": {s: len(self.split(s)) for s in ("train", "val", "test")},
            "attributes": {
                a.name: {
                    "levels": list(a.levels),
                    "derived": a.derived,
                    "description": a.description,
                }
                for a in self.attributes.values()
            },
            "source": self.source,
        }


def absolute(path: str | Path) -> str:
    """An absolute, normalised path that keeps symbolic links as the user named them."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] → float32 [N, C, H, W] in [-1, 1] (MedMNIST's scaling)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C], got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    return x.sub_(0.5).div_(0.5)
