"""Folder tasks as users have them: RGB kept, label files picked by name, class names from a
classes file, every file read recorded (and listed without decoding), `rashomon datasets`
describing folders, bad CSVs refused with the fix; the real HAM10000 subset when present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import rashomon as rs
import rashomon.data as rdata
from rashomon.errors import RashomonError
from tests.conftest import SHARED_DATA

# 10 patients of each sex in every split: the fewest an attribute group may have
N = {"train": 20, "val": 20, "test": 20}
HAM = SHARED_DATA / "ham10000"


def write_folder(
    folder: Path, colour: bool = True, labels_name: str = "labels.csv", n_classes=2, sizes=N
):
    """Images whose class is a bright square's row (colour: red in class 0, green in class 1),
    and a label CSV with a sex column. Returns the frame and the raw images by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    rows, images = [], {}
    for split, n in sizes.items():
        for i in range(n):
            label = i % n_classes
            shape = (32, 32, 3) if colour else (32, 32)
            img = rng.integers(0, 60, shape, dtype=np.uint8)
            img[4 + 8 * label : 10 + 8 * label, 8:24] = (
                (250, 30, 30) if colour and label == 0 else (30, 250, 30) if colour else 250
            )
            name = f"img/{split}_{i}.png"
            Image.fromarray(img).save(folder / name)
            images[name] = img
            rows.append({"path": name, "label": label, "split": split, "sex": "FM"[i % 2]})
    frame = pd.DataFrame(rows)
    frame.to_csv(folder / labels_name, index=False)
    return frame, images


def pil_resized(img: np.ndarray, mode: str, size: int = 28) -> np.ndarray:
    return np.asarray(Image.fromarray(img).convert(mode).resize((size, size), Image.BILINEAR))


# --- channels -------------------------------------------------------------------------------


def test_rgb_folder_keeps_colour(tmp_path):
    # main: rs.load_task(folder) read every image as grey ("L")
    frame, images = write_folder(tmp_path)
    task = rs.load_task(str(tmp_path))
    assert task.in_channels == 3 and task.train.x.shape == (20, 3, 28, 28)
    first = frame.path[frame.split == "val"].iloc[1]
    np.testing.assert_array_equal(task.val.raw[1], pil_resized(images[first], "RGB"))
    # red square in class 0: the red channel is bright where green is dark
    assert task.train.raw[0, 6, 14, 0] > 200 and task.train.raw[0, 6, 14, 1] < 60


def test_grey_folder_and_grey_saved_as_rgb_give_one_channel(tmp_path):
    frame, images = write_folder(tmp_path / "grey", colour=False)
    grey = rs.load_task(str(tmp_path / "grey"))
    assert grey.in_channels == 1 and grey.train.raw.shape == (20, 28, 28)
    # the same images stored as 3 equal bands (a common export) are still grey
    write_folder(tmp_path / "rgb", colour=False)
    for name, img in images.items():
        Image.fromarray(np.stack([img] * 3, axis=2)).save(tmp_path / "rgb" / name)
    as_rgb = rs.load_task(str(tmp_path / "rgb"))
    assert as_rgb.in_channels == 1
    np.testing.assert_array_equal(as_rgb.test.raw, grey.test.raw)


def test_channels_override(tmp_path):
    frame, images = write_folder(tmp_path)
    one = rs.load_task(str(tmp_path), channels=1)
    assert one.in_channels == 1
    name = frame.path.iloc[0]
    np.testing.assert_array_equal(one.train.raw[0], pil_resized(images[name], "L"))
    write_folder(tmp_path / "grey", colour=False)
    three = rs.load_task(str(tmp_path / "grey"), channels=3)
    assert three.in_channels == 3
    assert (three.train.raw[..., 0] == three.train.raw[..., 2]).all()
    with pytest.raises(RashomonError, match="channels must be 1 or 3, got 2"):
        rs.load_task(str(tmp_path), channels=2)


def test_sixteen_bit_images_are_validated_not_clipped(tmp_path):
    write_folder(tmp_path, colour=False)
    first = tmp_path / "img" / "train_0.png"
    Image.fromarray(np.full((32, 32), 200, np.uint16)).save(first)  # fits in a byte: accepted
    assert int(rs.load_task(str(tmp_path)).train.raw[0, 0, 0]) == 200
    Image.fromarray(np.full((32, 32), 4095, np.uint16)).save(first)  # 12-bit data: PIL clips
    with pytest.raises(RashomonError, match=r"pixels of .*train_0.png are .*\[4095, 4095\]"):
        rs.load_task(str(tmp_path))


# --- label files and class names ------------------------------------------------------------


def test_label_file_by_bare_name_or_path(tmp_path):
    frame, _ = write_folder(tmp_path)
    flipped = frame.assign(label=1 - frame.label)
    flipped.to_csv(tmp_path / "labels-flipped.csv", index=False)
    task = rs.load_task(str(tmp_path), labels="labels-flipped.csv")
    assert task.train.y.tolist() == (1 - frame.label[frame.split == "train"]).tolist()
    assert task.source == str(tmp_path / "labels-flipped.csv")
    elsewhere = tmp_path / "csvs" / "mine.csv"
    elsewhere.parent.mkdir()
    flipped.to_csv(elsewhere, index=False)
    assert rs.load_task(str(tmp_path), labels=elsewhere).train.y.tolist() == task.train.y.tolist()
    with pytest.raises(RashomonError, match="labels-x.csv does not exist.*labels-flipped.csv"):
        rs.load_task(str(tmp_path), labels="labels-x.csv")


def test_class_names_from_classes_files(tmp_path):
    frame, _ = write_folder(tmp_path)
    frame.to_csv(tmp_path / "labels-binary.csv", index=False)
    frame.to_csv(tmp_path / "labels-binary-medfair.csv", index=False)
    assert rs.load_task(str(tmp_path)).class_names == ("0", "1")  # no classes file: indices
    (tmp_path / "classes.txt").write_text("benign\nmalignant\n\n")
    (tmp_path / "classes-binary.txt").write_text("no\nyes\n")
    assert rs.load_task(str(tmp_path)).class_names == ("benign", "malignant")
    assert rs.load_task(str(tmp_path), labels="labels-binary.csv").class_names == ("no", "yes")
    # longest matching prefix: labels-binary-medfair.csv → classes-binary.txt
    medfair = rs.load_task(str(tmp_path), labels="labels-binary-medfair.csv")
    assert medfair.class_names == ("no", "yes")
    (tmp_path / "classes-binary-medfair.txt").write_text("other\nakiec or mel\n")
    medfair = rs.load_task(str(tmp_path), labels="labels-binary-medfair.csv")
    assert medfair.class_names == ("other", "akiec or mel")


def test_classes_file_count_mismatch_names_both_counts(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("akiec\nbcc\nbkl\n")
    with pytest.raises(
        RashomonError, match=r"classes.txt names 3 classes but labels.csv has 2 \(labels 0\.\.1\)"
    ):
        rs.load_task(str(tmp_path))


def test_multiclass_folder(tmp_path):
    write_folder(tmp_path, n_classes=3)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    task = rs.load_task(str(tmp_path))
    assert task.kind == "multiclass" and task.num_classes == 3
    assert task.class_names == ("a", "b", "c")


# --- bad label CSVs -------------------------------------------------------------------------


def test_zero_byte_label_csv(tmp_path):
    # main: "EmptyDataError: No columns to parse from file" (exit 1)
    (tmp_path / "labels.csv").write_bytes(b"")
    with pytest.raises(RashomonError, match="labels.csv is empty; write a header path,label,split"):
        rs.load_task(str(tmp_path))


def test_fractional_csv_label(tmp_path):
    # main: 0.5 truncated to class 0
    frame, _ = write_folder(tmp_path)
    frame.label = frame.label.astype(float)
    frame.loc[3, "label"] = 0.5
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RashomonError, match=r"labels.csv line 5: label '0.5' is fractional"):
        rs.load_task(str(tmp_path))


def test_integral_float_and_text_labels(tmp_path):
    frame, _ = write_folder(tmp_path)
    frame.assign(label=frame.label.astype(float)).to_csv(tmp_path / "labels.csv", index=False)
    assert rs.load_task(str(tmp_path)).train.y.tolist() == frame.label[:20].tolist()
    frame.assign(label=frame.label.map({0: "benign", 1: "mel"})).to_csv(
        tmp_path / "labels.csv", index=False
    )
    with pytest.raises(RashomonError, match="line 2: label 'benign' is not a class index.*classes"):
        rs.load_task(str(tmp_path))


def test_single_class_train_folder(tmp_path):
    frame, _ = write_folder(tmp_path)
    frame.loc[frame.split == "train", "label"] = 1
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RashomonError, match=r"train split holds a single class .*'0': 0, '1': 20"):
        rs.load_task(str(tmp_path))


def test_one_based_labels_without_a_classes_file_are_refused(tmp_path):
    # main: labels 1/2 loaded as 3 classes with class 0 absent from every split (warnings only)
    frame, _ = write_folder(tmp_path)
    frame.assign(label=frame.label + 1).to_csv(tmp_path / "labels.csv", index=False)
    fix = r"class 0 has no image in any split .*0-based.*relabel 1\.\.2 to 0\.\.1 or name"
    with pytest.raises(RashomonError, match=fix):
        rs.load_task(str(tmp_path))
    [entry] = rdata.describe_folder(tmp_path)
    assert "class 0 has no image in any split" in entry["error"]
    # a gap in the middle too, named with the labels found
    frame.assign(label=frame.label * 2).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RashomonError, match=r"class 1 has no image .*labels found: 0, 2"):
        rs.load_task(str(tmp_path))
    # a classes file that names the empty class says it is meant: it loads, with the warnings
    frame.assign(label=frame.label + 1).to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "classes.txt").write_text("unused\nbenign\nmalignant\n")
    with pytest.warns(rdata.DataWarning, match="no image of 1 of 3 classes \\('unused'\\)"):
        task = rs.load_task(str(tmp_path))
    assert task.num_classes == 3 and task.class_names[0] == "unused"


def test_labels_option_refused_for_medmnist(tiny_root):
    with pytest.raises(RashomonError, match="labels='x.csv' applies to folder tasks"):
        rs.load_task("breastmnist", root=tiny_root, labels="x.csv")
    with pytest.raises(RashomonError, match="channels=3 applies to folder tasks"):
        rs.load_task("breastmnist", root=tiny_root, channels=3)


# --- attributes and files -------------------------------------------------------------------


def test_csv_attributes_are_real_and_derived_ones_are_derived(tmp_path):
    frame, _ = write_folder(tmp_path)
    frame["age_group"] = ["<60", "60+"] * (len(frame) // 2)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    task = rs.load_task(str(tmp_path))
    derived = {k: a.derived for k, a in task.attributes.items()}
    assert derived == {"intensity": True, "random": True, "sex": False, "age_group": False}
    assert task.attributes["age_group"].label == "age_group"
    assert task.attributes["intensity"].label == "intensity (derived)"
    assert task.describe()["attributes"]["sex"]["derived"] is False
    assert task.test.groups["age_group"].tolist() == [1, 0] * 10  # levels ('60+', '<60')


def _notes(caught) -> str:
    return " | ".join(str(w.message) for w in caught if issubclass(w.category, rdata.DataWarning))


def test_identifier_and_numeric_columns_are_not_taken_as_they_are(tmp_path):
    # main: patient_id became a 60-level attribute (singleton groups: accuracy gap 1.0, worst
    # group 0.0), age one level per value, a constant column an error without the fix, a
    # column named index silently dropped, and nothing said which columns became attributes
    frame, _ = write_folder(tmp_path, sizes={"train": 30, "val": 30, "test": 30})
    frame["patient_id"] = [f"P{i:04d}" for i in range(len(frame))]
    # the same 30 ages in every split: the train tertiles put 10 patients in each band
    frame["age"] = 20 + (frame.groupby("split").cumcount().to_numpy() * 7) % 61
    frame["site"] = "A"
    frame["index"] = np.arange(len(frame))
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.warns(rdata.DataWarning) as caught:
        task = rs.load_task(str(tmp_path))
    assert {k for k, a in task.attributes.items() if not a.derived} == {"sex", "age"}
    # age: tertiles of the train split's ages, each band a group
    train_age = frame.age[frame.split == "train"].to_numpy()
    lo, hi = np.floor(np.quantile(train_age, [1 / 3, 2 / 3]))  # whole ages: whole cut points
    assert task.attributes["age"].levels == (f"<={lo:g}", f"({lo:g}, {hi:g}]", f">{hi:g}")
    test_age = frame.age[frame.split == "test"].to_numpy()
    expected = (test_age > lo).astype(int) + (test_age > hi).astype(int)
    assert task.test.groups["age"].tolist() == expected.tolist()
    assert "tertiles" in task.attributes["age"].description
    note = _notes(caught)
    assert "labels.csv: patient attributes sex, age (binned" in note
    assert "patient_id (90 distinct values, an identifier?" in note
    assert "site (a single value 'A'" in note and "index (a reserved name" in note
    assert len([w for w in caught if "patient attributes" in str(w.message)]) == 1
    # `rashomon datasets` says the same without loading an image
    [entry] = rdata.describe_folder(tmp_path)
    assert entry["attributes"] == ["sex", "age"]
    assert any("patient_id" in n for n in entry["attribute_notes"])
    shown = cli("datasets", "--folder", str(tmp_path), root=tmp_path)
    assert shown.returncode == 0 and "identifier?" in shown.stdout


def test_attribute_groups_too_small_to_measure_are_skipped(tmp_path):
    # main: a real attribute with one group in test aborted the whole evaluate
    frame, _ = write_folder(tmp_path)
    frame.loc[frame.split == "test", "sex"] = "F"
    frame["scanner"] = np.where(np.arange(len(frame)) % 10 == 0, "old", "new")  # 2 per split
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.warns(rdata.DataWarning) as caught:
        task = rs.load_task(str(tmp_path))
    assert {k for k, a in task.attributes.items() if not a.derived} == set()
    note = _notes(caught)
    assert "sex (group 'M' has 0 patients in test" in note
    assert "scanner (group 'old' has 2 patients in train" in note
    assert "at least 10 in every group of every split" in note


def test_empty_rows_and_missing_split_in_the_label_csv(tmp_path):
    # main: a trailing ",,,," row gave "unknown split value(s) ['nan']" with no line number
    frame, _ = write_folder(tmp_path)
    text = frame.to_csv(index=False)
    (tmp_path / "labels.csv").write_text(text + ",,,\n,,,\n")
    with pytest.warns(rdata.DataWarning, match=r"labels.csv: 2 empty row\(s\) skipped \(line 62"):
        task = rs.load_task(str(tmp_path))
    assert len(task.test) == 20
    frame.loc[5, "split"] = np.nan
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RashomonError, match=r"labels.csv line 7 has no split; .*val or test"):
        rs.load_task(str(tmp_path))


def test_an_image_listed_in_train_and_test_is_counted(tmp_path):
    # main: a test row naming a train image loaded without a word (train/test leakage)
    frame, _ = write_folder(tmp_path)
    first_tests = frame.index[frame.split == "test"][:2]
    frame.loc[first_tests, "path"] = ["img/train_0.png", "img/train_1.png"]
    frame.to_csv(tmp_path / "labels.csv", index=False)
    leak = r"2 of 20 test images \(10 %\) are identical to train or val images, e\.g\. "
    leak += r"img/train_0\.png \(test\) = img/train_0\.png \(train\)"
    with pytest.raises(RashomonError, match=leak + ".*allow_overlap: true"):
        rs.load_task(str(tmp_path))
    with pytest.warns(rdata.DataWarning, match=leak):
        task = rs.load_task(str(tmp_path), allow_overlap=True)
    np.testing.assert_array_equal(task.test.raw[:2], task.train.raw[:2])
    # the config field reaches the loader without changing any stage's identity
    from rashomon.config import load_config

    cfg = load_config(None, {"data.dataset": str(tmp_path), "data.allow_overlap": True})
    assert cfg.data.loader_options()["allow_overlap"] is True
    assert "allow_overlap" not in cfg.data.identity()


def test_task_files_and_data_files_agree(tmp_path, monkeypatch):
    frame, _ = write_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("benign\nmalignant\n")
    rows = [{"split": s, "index": i, "site": "AB"[i % 2]} for s, n in N.items() for i in range(n)]
    pd.DataFrame(rows).to_csv(tmp_path / "site.csv", index=False)
    task = rs.load_task(str(tmp_path), attributes_csv=tmp_path / "site.csv")
    expected = [
        tmp_path / "labels.csv",
        tmp_path / "classes.txt",
        *(tmp_path / p for p in frame.path),
        tmp_path / "site.csv",
    ]
    assert task.files == tuple(str(p) for p in expected)
    assert all(os.path.isabs(p) for p in task.files)

    # data_files lists the same without decoding a single image
    def no_decoding(*args, **kwargs):
        raise AssertionError("data_files opened an image")

    monkeypatch.setattr(Image, "open", no_decoding)
    listed = rdata.data_files(tmp_path, attributes_csv=tmp_path / "site.csv")
    assert listed == expected


def test_relative_folder_paths_are_absolute(tmp_path, monkeypatch):
    write_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    task = rs.load_task("data")
    assert task.name == "data" and task.files[0] == str(tmp_path / "data" / "labels.csv")
    assert [str(p) for p in rdata.data_files("data")] == list(task.files)


def test_npz_files(tiny_root, tmp_path):
    task = rs.load_task("breastmnist", root=tiny_root)
    assert task.files == (str(tiny_root / "breastmnist.npz"),)
    assert rdata.data_files("breastmnist", root=tiny_root) == [tiny_root / "breastmnist.npz"]
    # a file not yet downloaded is listed where it would go
    assert rdata.data_files("breastmnist", root=tmp_path, size=64) == [
        tmp_path / "breastmnist_64.npz"
    ]


def test_data_config_fields_and_hash_compatibility():
    from rashomon.config import load_config

    cfg = load_config(None, {"data.dataset": "/x/ham", "data.labels": "labels-binary.csv"})
    assert cfg.data.loader_options()["labels"] == "labels-binary.csv"
    default = load_config(None, {})
    # unset folder options are not part of the identity; where the files are (root) is not
    # either: the data fingerprint covers their content
    assert set(default.data.identity()) == {"dataset", "size", "attributes_csv"}
    assert cfg.section_hash("train") != load_config(None, {"data.dataset": "/x/ham"}).section_hash(
        "train"
    )
    with pytest.raises(RashomonError, match="data.channels"):
        load_config(None, {"data.channels": 2})


# --- command line ---------------------------------------------------------------------------


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RASHOMON_DATA": str(root), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "rashomon.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_datasets_lists_folder_tasks(tmp_path):
    root = tmp_path / "root"
    frame, _ = write_folder(root / "skin")
    frame.to_csv(root / "skin" / "labels-binary.csv", index=False)
    (root / "skin" / "classes-binary.txt").write_text("benign\nmalignant\n")
    (root / "notes").mkdir()  # a folder without a label CSV is not a task
    found = cli("datasets", root=root)
    assert found.returncode == 0, found.stderr
    rows = [ln for ln in found.stdout.splitlines() if "skin" in ln]
    assert len(rows) == 2 and "notes" not in found.stdout
    binary = next(ln for ln in rows if "labels-binary.csv" in ln)
    assert "benign, malignant" in binary and "classes-binary.txt" in binary
    assert "│ 20 " in binary and "sex" in binary
    plain = next(ln for ln in rows if "labels.csv" in ln)
    assert "0, 1" in plain
    given = cli("datasets", "--folder", str(root / "skin"), root=tmp_path)
    assert given.returncode == 0 and "MedMNIST" not in given.stdout
    assert sum("skin" in ln for ln in given.stdout.splitlines()) == 2


def test_cli_data_flags_reach_the_config(tmp_path):
    from rashomon.cli import FLAGS, flag_overrides

    assert FLAGS["labels"].key == "data.labels" and FLAGS["channels"].key == "data.channels"
    assert flag_overrides({"labels": "labels-binary.csv", "channels": 3}) == {
        "data.labels": "labels-binary.csv",
        "data.channels": 3,
    }
    bad = cli(
        "run",
        "--dataset",
        "breastmnist",
        "--channels",
        "2",
        "--out",
        str(tmp_path / "r"),
        root=tmp_path,
    )
    assert bad.returncode == 2 and "data.channels" in bad.stderr
    for cmd in ("run", "train"):
        shown = cli(cmd, "--help", root=tmp_path).stdout
        assert "--labels" in shown and "--channels" in shown, cmd


# --- the real HAM10000 subset ---------------------------------------------------------------

needs_ham = pytest.mark.skipif(not (HAM / "labels.csv").exists(), reason="no HAM10000 subset")


@needs_ham
def test_ham10000_described_without_loading():
    entries = {e["labels"]: e for e in rdata.describe_folder(HAM)}
    assert list(entries) == ["labels.csv", "labels-binary-medfair.csv", "labels-binary.csv"]
    seven = entries["labels.csv"]
    assert seven["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert seven["sizes"] == {"train": 4161, "val": 594, "test": 1189}  # MANIFEST.md
    assert seven["attributes"] == ["sex", "age_group"] and seven["missing_images"] == 0
    assert entries["labels-binary-medfair.csv"]["classes_file"] == "classes-binary.txt"
    files = rdata.data_files(HAM, labels="labels-binary.csv")
    assert files[:2] == [HAM / "labels-binary.csv", HAM / "classes-binary.txt"]
    assert len(files) == 2 + 5944


@needs_ham
@pytest.mark.slow
def test_ham10000_binary_loads_as_rgb_with_real_attributes():
    task = rs.load_task(str(HAM), labels="labels-binary.csv", size=64)
    assert task.kind == "binary" and task.class_names == ("benign", "malignant")
    assert task.train.x.shape == (4161, 3, 64, 64)
    # counts from MANIFEST.md: train 3505 benign / 656 malignant, test 1001 / 188
    assert np.bincount(task.train.y.numpy()).tolist() == [3505, 656]
    assert np.bincount(task.test.y.numpy()).tolist() == [1001, 188]
    assert not task.attributes["sex"].derived and not task.attributes["age_group"].derived
    assert task.attributes["sex"].levels == ("female", "male")
    sex = task.train.groups["sex"].numpy()
    assert np.bincount(sex).tolist() == [515 + 1423, 889 + 1334]
    assert [str(p) for p in rdata.data_files(HAM, labels="labels-binary.csv")] == list(task.files)
    # stored at 64 px: the raw image is the JPEG as decoded
    first = Image.open(HAM / pd.read_csv(HAM / "labels-binary.csv").path[0]).convert("RGB")
    np.testing.assert_array_equal(task.train.raw[0], np.asarray(first))


def test_ham10000_example_config(monkeypatch):
    from rashomon.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "ham10000.yaml")
    assert (cfg.data.labels, cfg.data.size, cfg.data.channels) == ("labels-binary.csv", 28, None)
    if (HAM / "labels.csv").exists():
        monkeypatch.chdir(REPO)  # the example's dataset path is relative to the repo root
        opts = cfg.data.loader_options()
        files = rdata.data_files(cfg.data.dataset, labels=opts["labels"])
        assert files[1] == HAM / "classes-binary.txt"


# --- a folder run from the command line -----------------------------------------------------


def _cli_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rashomon.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


BIG_IMAGE = "img/train_0.bmp"  # over fingerprint.SMALL_FILE: its digest is cached by size+mtime


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A folder task `hs` (one training image a 1 MB BMP) and a run of its train stage, made
    from the folder's parent with the relative path `hs` and no --labels."""
    base = tmp_path_factory.mktemp("folder-run")
    frame, images = write_folder(base / "hs", colour=True)
    big = np.kron(images["img/train_0.png"], np.ones((19, 19, 1), np.uint8))  # 608 x 608 RGB
    Image.fromarray(big).save(base / "hs" / BIG_IMAGE)
    frame.loc[0, "path"] = BIG_IMAGE
    frame.to_csv(base / "hs" / "labels.csv", index=False)
    assert (base / "hs" / BIG_IMAGE).stat().st_size > (1 << 20)
    args = ("--arch", "mlp", "--epochs", "1", "--stages", "train", "--no-progress")
    proc = _cli_in(base, "run", "--dataset", "hs", *args, "--out", "run")
    assert proc.returncode == 0, proc.stderr
    return base / "hs", base / "run"


def test_a_relative_folder_is_saved_absolute(folder_run, tmp_path):
    """`dataset: hs` was saved as typed: from another folder `rashomon train RUN` then said
    "unknown dataset 'hs'"."""
    folder, run = folder_run
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (saved["dataset"], saved["dataset_as_given"]) == (str(folder), "hs")
    proc = _cli_in(tmp_path, "train", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    # the identity is the folder's, as before: hashes of runs made with absolute paths hold
    from rashomon.config import load_config

    cfg = load_config(run / "config.yaml")
    assert cfg.data.identity() == load_config(None, {"data.dataset": str(folder)}).data.identity()


def test_the_default_label_file_given_by_name_is_the_same_run(folder_run, tmp_path):
    """`--labels labels.csv` on a run made without it was refused as "a run of another dataset
    or seed", naming the same dataset and seed."""
    folder, run = folder_run
    for labels in ("labels.csv", str(folder / "labels.csv")):
        proc = _cli_in(tmp_path, "train", str(run), "--labels", labels, "--no-progress")
        assert proc.returncode == 0, proc.stderr
        assert "up to date" in proc.stdout
    (folder / "labels-other.csv").write_text((folder / "labels.csv").read_text())
    proc = _cli_in(tmp_path, "train", str(run), "--labels", "labels-other.csv")
    assert proc.returncode == 2
    assert "holds a run of another label file" in proc.stderr and "labels-other.csv" in proc.stderr


def test_verify_data_sees_a_same_size_edit_with_its_mtime_restored(folder_run, tmp_path):
    folder, run = folder_run
    image = folder / BIG_IMAGE
    before = image.stat()
    data = bytearray(image.read_bytes())
    data[-100] ^= 0xFF  # one pixel byte
    image.write_bytes(bytes(data))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == before.st_size
    proc = _cli_in(tmp_path, "train", str(run), "--no-progress")
    assert proc.returncode == 0 and "up to date" in proc.stdout  # the size+mtime fast path
    record = (run / "stages.json").read_text()
    proc = _cli_in(tmp_path, "train", str(run), "--verify-data", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" not in proc.stdout and (run / "stages.json").read_text() != record
    proc = _cli_in(tmp_path, "train", str(run), "--verify-data", "--no-progress")
    assert "up to date" in proc.stdout  # re-hashed once, current again


def test_report_loads_the_task_with_every_data_option(tmp_path):
    """write_report(run, out) without a task ignored data.labels and data.channels: the report
    showed another label file's test patients."""
    from rashomon.report.load import load_run
    from tests.fake_run import write_fake_run

    frame, _ = write_folder(tmp_path / "skin")
    flipped = frame.assign(label=1 - frame.label)
    flipped.to_csv(tmp_path / "skin" / "labels-flipped.csv", index=False)
    task = rs.load_task(str(tmp_path / "skin"), labels="labels-flipped.csv", channels=1)
    run = write_fake_run(
        tmp_path / "run",
        task,
        models=20,
        dataset=str(tmp_path / "skin"),
        stages=("train", "sample", "evaluate"),
        robustness=False,
    )
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(labels="labels-flipped.csv", channels=1)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = load_run(run).task
    assert loaded is not None and loaded.in_channels == 1
    assert loaded.test.y.tolist() == (1 - frame.label[frame.split == "test"]).tolist()
