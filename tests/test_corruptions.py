"""MedMNIST-C corruptions: tables, identity at severity 0, seeding, caching, subsets."""

# ruff: noqa: NPY002  (medmnistc draws from the legacy global RNG; we check we restore it)

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rashomon.data import corruptions as C
from rashomon.errors import RashomonError

NOISE = ["gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise"]


@pytest.fixture(scope="module")
def raw(task_pneumonia) -> np.ndarray:
    return np.asarray(task_pneumonia.test.raw[:24])


def test_tables_follow_medmnistc():
    pneu = C.corruption_names("pneumoniamnist")
    assert len(pneu) == 13 and pneu[0] == "pixelate" and "impulse_noise" in pneu
    assert C.corruption_names("BreastMNIST") == [
        "pixelate", "jpeg_compression", "speckle_noise", "motion_blur",
        "brightness_up", "brightness_down", "contrast_down",
    ]  # fmt: skip
    # datasets without a MedMNIST-C table get the documented generic (PneumoniaMNIST) list
    assert C.corruption_names("my-folder-dataset") == pneu


def test_severity_zero_is_identity(raw, task_pneumonia):
    for name in ("gaussian_noise", "pixelate"):
        out = C.corrupt_images(raw, name, 0, seed=3, dataset="pneumoniamnist")
        assert out.tobytes() == raw.tobytes()
    x0 = C.corrupted_split(task_pneumonia, "test", "shot_noise", 0, seed=1)
    assert torch.equal(x0, task_pneumonia.test.x)


@pytest.mark.parametrize("name", [*C.corruption_names("pneumoniamnist"), "motion_blur"])
def test_same_seed_gives_identical_bytes(raw, name):
    dataset = "breastmnist" if name == "motion_blur" else "pneumoniamnist"
    a = C.corrupt_images(raw, name, 3, seed=7, dataset=dataset)
    b = C.corrupt_images(raw, name, 3, seed=7, dataset=dataset)
    assert a.dtype == np.uint8 and a.shape == raw.shape
    assert a.tobytes() == b.tobytes()


def test_noise_depends_on_seed_and_photometric_does_not(raw):
    for name in NOISE:
        a = C.corrupt_images(raw, name, 5, seed=0, dataset="pneumoniamnist")
        b = C.corrupt_images(raw, name, 5, seed=1, dataset="pneumoniamnist")
        assert (a != b).mean() > 0.01, name
    a = C.corrupt_images(raw, "brightness_up", 2, seed=0, dataset="pneumoniamnist")
    b = C.corrupt_images(raw, "brightness_up", 2, seed=1, dataset="pneumoniamnist")
    assert a.tobytes() == b.tobytes()


def test_brightness_matches_hand_computation(raw):
    # PIL's Brightness blends with black: value * factor, clipped at 255 (severity 3: 1.3)
    out = C.corrupt_images(raw, "brightness_up", 3, dataset="pneumoniamnist").astype(int)
    expected = np.clip(raw.astype(float) * 1.3, 0, 255)
    assert np.abs(out - expected).max() <= 1


def test_noise_grows_with_severity(raw):
    diffs = [
        np.abs(
            C.corrupt_images(raw, "gaussian_noise", s, dataset="pneumoniamnist").astype(int) - raw
        ).mean()
        for s in (1, 3, 5)
    ]
    assert 0 < diffs[0] < diffs[1] < diffs[2]


def test_result_does_not_depend_on_chunking(raw):
    whole = C.corrupt_images(raw, "impulse_noise", 4, seed=2, dataset="pneumoniamnist")
    idx = np.arange(len(raw))
    parts = [
        C.corrupt_images(raw[p], "impulse_noise", 4, 2, "pneumoniamnist", indices=idx[p])
        for p in (slice(0, 10), slice(10, None))
    ]
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_callers_global_rng_is_left_alone(raw):
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    C.corrupt_images(raw, "gaussian_noise", 2, seed=9, dataset="pneumoniamnist")
    assert (random.random(), np.random.rand()) == expected


def test_rgb_images_keep_their_shape(raw):
    rgb = np.repeat(raw[..., None], 3, axis=-1)
    out = C.corrupt_images(rgb, "gaussian_noise", 3, seed=0)
    assert out.shape == rgb.shape and (out != rgb).any()


def test_cache_reloads_identical_arrays(task_pneumonia, tmp_path, monkeypatch):
    first = C.corrupted_raw(task_pneumonia, "test", "speckle_noise", 2, 4, tmp_path, max_images=50)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(C, "corrupt_images", lambda *a, **k: pytest.fail("regenerated"))
    again = C.corrupted_raw(task_pneumonia, "test", "speckle_noise", 2, 4, tmp_path, max_images=50)
    assert again.tobytes() == first.tobytes()
    x = C.corrupted_split(task_pneumonia, "test", "speckle_noise", 2, 4, tmp_path, max_images=50)
    assert torch.equal(x, (torch.from_numpy(first).float()[:, None] / 255 - 0.5) / 0.5)


def test_subset_equals_rows_of_the_whole_split(task_pneumonia):
    n = len(task_pneumonia.test)
    idx = C.subset_indices(n, 30, seed=4)
    assert len(idx) == 30 and len(set(idx)) == 30 and np.all(np.diff(idx) > 0)
    sub = C.corrupted_raw(task_pneumonia, "test", "shot_noise", 5, 4, max_images=30)
    full = C.corrupt_images(task_pneumonia.test.raw, "shot_noise", 5, 4, "pneumoniamnist")
    assert sub.tobytes() == full[idx].tobytes()
    assert np.array_equal(C.subset_indices(n, None), np.arange(n))


def test_bad_inputs_raise_one_line_errors(raw):
    with pytest.raises(RashomonError, match="severity 6"):
        C.corrupt_images(raw, "pixelate", 6)
    with pytest.raises(RashomonError, match="not defined for breastmnist"):
        C.corrupt_images(raw, "impulse_noise", 1, dataset="breastmnist")
    with pytest.raises(RashomonError, match="uint8"):
        C.corrupt_images(raw.astype(np.float32), "pixelate", 1)


def _with_test_raw(task, raw: np.ndarray):
    """`task` whose test split holds other raw images (same name, same size)."""
    import dataclasses

    from rashomon.data.task import images_to_tensor

    test = dataclasses.replace(task.test, x=images_to_tensor(raw), raw=raw)
    return dataclasses.replace(task, test=test)


def test_cache_is_keyed_by_the_images_it_corrupts(task_pneumonia, tmp_path):
    # main: the file name held only dataset, size, split, corruption, severity, seed and subset
    # size, so inverted test images (or another channel count) in the same run directory read
    # the old images' corruptions back (AUROC 0.399 against 0.520 fresh; a crash for channels)
    raw = np.asarray(task_pneumonia.test.raw)
    first = C.corrupted_raw(task_pneumonia, "test", "pixelate", 3, 0, tmp_path, max_images=6)
    inverted = _with_test_raw(task_pneumonia, 255 - raw)
    again = C.corrupted_raw(inverted, "test", "pixelate", 3, 0, tmp_path, max_images=6)
    idx = C.subset_indices(len(raw), 6, 0)
    fresh = C.corrupt_images((255 - raw)[idx], "pixelate", 3, 0, "pneumoniamnist", indices=idx)
    assert again.tobytes() == fresh.tobytes() and again.tobytes() != first.tobytes()
    rgb = _with_test_raw(task_pneumonia, np.repeat(raw[..., None], 3, axis=-1))
    coloured = C.corrupted_raw(rgb, "test", "pixelate", 3, 0, tmp_path, max_images=6)
    assert coloured.shape == (6, *raw.shape[1:], 3)
    # another subset of the same images is another entry; the first is still read back
    assert len(list(tmp_path.glob("*.npz"))) == 3
    C.corrupted_raw(task_pneumonia, "test", "pixelate", 3, 0, tmp_path, max_images=7)
    assert len(list(tmp_path.glob("*.npz"))) == 4
    cached = C.corrupted_raw(task_pneumonia, "test", "pixelate", 3, 0, tmp_path, max_images=6)
    assert cached.tobytes() == first.tobytes()
