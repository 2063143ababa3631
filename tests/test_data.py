"""Tasks from npz files, image folders and attribute CSVs; derived attributes; bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import rashomon as rs
from rashomon.data import medmnist as mm
from rashomon.data.folder import load_folder
from rashomon.data.groups import load_attribute_csv
from rashomon.errors import RashomonError
from tests.conftest import synthetic_npz


def test_pneumonia_matches_manifest(task_pneumonia, real_data):
    t = task_pneumonia
    assert t.kind == "binary" and t.num_classes == 2
    assert t.class_names == ("normal", "pneumonia")
    assert t.train.x.dtype == torch.float32 and t.train.x.shape[1:] == (1, 28, 28)
    assert float(t.train.x.min()) >= -1.0 and float(t.train.x.max()) <= 1.0
    # x is (raw / 255 - 0.5) / 0.5 of the stored bytes
    np.testing.assert_allclose(t.test.x[3, 0].numpy(), t.test.raw[3] / 127.5 - 1.0, atol=1e-6)
    if real_data:  # counts from ../shared/data/MANIFEST.md
        assert (len(t.train), len(t.val), len(t.test)) == (4708, 524, 624)
        assert torch.bincount(t.train.y).tolist() == [1214, 3494]
        assert torch.bincount(t.val.y).tolist() == [135, 389]
        assert torch.bincount(t.test.y).tolist() == [234, 390]


def test_root_from_environment(monkeypatch, data_root):
    monkeypatch.setenv("RASHOMON_DATA", str(data_root))
    assert rs.load_task("breastmnist").source == str(data_root / "breastmnist.npz")


def test_multilabel_and_multiclass_kinds(tmp_path):
    synthetic_npz(tmp_path / "chestmnist.npz", sizes=(30, 10, 10), n_labels=14)
    chest = rs.load_task("chestmnist", root=tmp_path)
    assert chest.kind == "multilabel" and chest.num_classes == 14
    assert chest.train.y.shape == (30, 14) and set(chest.train.y.unique().tolist()) <= {0, 1}
    synthetic_npz(tmp_path / "dermamnist.npz", sizes=(30, 10, 10), n_classes=7, channels=3)
    derma = rs.load_task("dermamnist", root=tmp_path)
    assert derma.kind == "multiclass" and derma.num_classes == 7
    assert derma.train.x.shape[1:] == (3, 28, 28)


def test_derived_attributes(task_pneumonia):
    t = task_pneumonia
    assert t.attributes["intensity"].derived and t.attributes["random"].derived
    assert t.attributes["random"].label == "random (derived)"
    share = torch.bincount(t.train.groups["intensity"], minlength=3).float() / len(t.train)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.01)
    # intensity codes follow the train tertile cut points on every split
    means = t.test.x.mean(dim=(1, 2, 3))
    lo, hi = np.quantile(t.train.x.mean(dim=(1, 2, 3)).numpy(), [1 / 3, 2 / 3])
    expected = (means > lo).long() + (means > hi).long()
    assert torch.equal(t.test.groups["intensity"], expected)
    rnd = t.test.groups["random"].float().mean()
    assert 0.4 < rnd < 0.6


def test_random_attribute_is_seeded(data_root):
    a = rs.load_task("breastmnist", root=data_root, seed=3).test.groups["random"]
    b = rs.load_task("breastmnist", root=data_root, seed=3).test.groups["random"]
    c = rs.load_task("breastmnist", root=data_root, seed=4).test.groups["random"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(RashomonError, match="unknown dataset 'xraymnist'.*pneumoniamnist"):
        rs.load_task("xraymnist")


def test_missing_file_offline_says_where(tmp_path, monkeypatch):
    import medmnist

    def offline(*args, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(medmnist, "BreastMNIST", offline)
    with pytest.raises(RashomonError, match=f"put the official file at {tmp_path}/breastmnist.npz"):
        rs.load_task("breastmnist", root=tmp_path)


def test_corrupt_npz(tmp_path):
    (tmp_path / "breastmnist.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(RashomonError, match="not a readable npz"):
        rs.load_task("breastmnist", root=tmp_path)


def test_missing_keys_and_count_mismatch(tmp_path):
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.zeros((4, 1), np.uint8)
    np.savez(tmp_path / "breastmnist.npz", train_images=x, train_labels=y)
    with pytest.raises(RashomonError, match="lacks val_images"):
        rs.load_task("breastmnist", root=tmp_path)
    np.savez(
        tmp_path / "breastmnist.npz",
        train_images=x,
        train_labels=y[:3],
        val_images=x,
        val_labels=y,
        test_images=x,
        test_labels=y,
    )
    with pytest.raises(RashomonError, match="train has 4 images but 3 labels"):
        rs.load_task("breastmnist", root=tmp_path)


def test_labels_out_of_range(tmp_path):
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.array([[0], [1], [5], [1]], np.uint8)
    np.savez(
        tmp_path / "breastmnist.npz",
        **{f"{s}_images": x for s in ("train", "val", "test")},
        **{f"{s}_labels": y for s in ("train", "val", "test")},
    )
    with pytest.raises(RashomonError, match="labels out of range.*2 classes"):
        rs.load_task("breastmnist", root=tmp_path)


def _write_folder(tmp_path, n_per_split=(20, 20, 20), extra=None):
    rows = []
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val", "test"), n_per_split, strict=True):
        for i in range(n):
            label = i % 2
            img = rng.integers(0, 60, (40, 40), dtype=np.uint8)
            img[5 + 20 * label : 15 + 20 * label, 10:30] = 250
            name = f"{split}_{i}.png"
            Image.fromarray(img).save(tmp_path / name)
            rows.append({"path": name, "label": label, "split": split, "sex": "FM"[i % 2]})
    frame = pd.DataFrame(rows)
    if extra:
        extra(frame)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    return frame


def test_folder_task_with_attribute(tmp_path):
    frame = _write_folder(tmp_path)
    task = load_folder(tmp_path, size=28)
    assert task.kind == "binary" and len(task.train) == 20 and len(task.test) == 20
    assert task.train.x.shape == (20, 1, 28, 28)
    assert task.attributes["sex"].levels == ("F", "M") and not task.attributes["sex"].derived
    expected = (frame[frame.split == "val"]["sex"] == "M").astype(int).tolist()
    assert task.val.groups["sex"].tolist() == expected
    assert task.val.y.tolist() == frame[frame.split == "val"]["label"].tolist()
    # the same folder through the public loader
    assert rs.load_task(str(tmp_path)).attributes.keys() == task.attributes.keys()


def test_folder_missing_image(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "val_1.png").unlink()
    with pytest.raises(RashomonError, match="missing from.*val_1.png"):
        load_folder(tmp_path)


def test_folder_bad_columns(tmp_path):
    pd.DataFrame({"file": ["a.png"], "label": [0]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RashomonError, match=r"lacks column\(s\) \['path', 'split'\]"):
        load_folder(tmp_path)


def test_attribute_csv(tiny_task, tmp_path):
    rows = []
    for s in ("train", "val", "test"):
        for i in range(len(tiny_task.split(s))):
            rows.append({"split": s, "index": i, "site": "AB"[(i // 3) % 2]})
    pd.DataFrame(rows).to_csv(tmp_path / "attrs.csv", index=False)
    load_attribute_csv(tiny_task, tmp_path / "attrs.csv")
    assert tiny_task.test.groups["site"][:7].tolist() == [0, 0, 0, 1, 1, 1, 0]
    del tiny_task.attributes["site"]
    for s in ("train", "val", "test"):
        del tiny_task.split(s).groups["site"]
    pd.DataFrame(rows[:-1]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(RashomonError, match="rows for split 'test' but the task has 40"):
        load_attribute_csv(tiny_task, tmp_path / "short.csv")


def test_single_level_attribute_refused(tiny_task, tmp_path):
    rows = [
        {"split": s, "index": i, "site": "A"}
        for s in ("train", "val", "test")
        for i in range(len(tiny_task.split(s)))
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "one.csv", index=False)
    # main: "attribute 'site' has a single value; it cannot split groups" (no fix)
    fix = r"no attribute that can be measured: site \(a single value 'A': .*drop the column"
    with pytest.raises(RashomonError, match=fix):
        load_attribute_csv(tiny_task, tmp_path / "one.csv")


def test_every_2d_medmnist_name_is_known():
    names = mm.dataset_names()
    for n in (
        "pneumoniamnist",
        "breastmnist",
        "chestmnist",
        "dermamnist",
        "bloodmnist",
        "organamnist",
    ):
        assert n in names
    assert not any(n.endswith("3d") for n in names)


def test_attributes_with_one_group_in_a_split_are_skipped_with_a_warning(tiny_task):
    # main: an attribute with one group in test (here the derived intensity proxy, whose cut
    # points come from train) aborted the whole evaluate stage
    import copy
    import warnings

    from rashomon.data import DataWarning
    from rashomon.data.groups import measurable_attributes

    task = copy.copy(tiny_task)
    task.test = copy.copy(tiny_task.test)
    task.test.groups = {**tiny_task.test.groups, "intensity": torch.zeros(len(task.test)).long()}
    with pytest.warns(DataWarning, match=r"intensity \(derived\) has one group in test \('low'\)"):
        kept = measurable_attributes(task, ["intensity", "random"])
    assert kept == ["random"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert measurable_attributes(tiny_task, ["intensity", "random"]) == ["intensity", "random"]
