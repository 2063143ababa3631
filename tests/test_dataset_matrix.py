"""Every task kind through `rashomon run` to a report that renders: real BreastMNIST, a real
HAM10000 7-class folder (RGB, real sex/age), a ChestMNIST-layout multilabel npz, a 20-image
validation split, a 95/5 imbalanced task and the user's own `nn.Sequential` (`--model`).

Each case runs the command line in this process (typer's runner: the same argument parsing,
config and stages as the `rashomon` command, without paying the ~15 s import of torch, sklearn
and matplotlib once per case), with tiny settings, and is checked for values in its run
directory and its report rendered in headless Chromium with no failed section."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import inspect_self_contained
from medmnist import INFO
from typer.testing import CliRunner

from rashomon.cli import app
from tests.conftest import SHARED_DATA, synthetic_npz

pytestmark = pytest.mark.slow

HAM = SHARED_DATA / "ham10000"
HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
CHEST_CLASSES = list(INFO["chestmnist"]["label"].values())

# Tiny settings: a short MLP training, 20 models, no corruptions or attacks, a small bootstrap,
# no exact extremes, no constrained baseline or LSI. Cases add what they test.
FAST = {
    "train": {"arch": "mlp", "steps": 60, "batch_size": 32},
    "sample": {"models": 20, "epsilon": 0.5, "epsilons": [0.5]},
    "evaluate": {"corruptions": [], "attacks": [], "bootstrap": 20, "extremes": "off"},
    "decide": {"constrained_baseline": False, "lsi": False, "ensemble_sizes": [1, 3]},
}


def run_cli(tmp: Path, name: str, root: Path, *flags: str, **sections: dict) -> Path:
    """`rashomon run CONFIG --out tmp/runs/name ...` with FAST updated by `sections`; returns the
    run directory after checking the exit code and that every stage ran. (Apart from the data:
    a folder that holds images and is not a run is refused as `--out`.)"""
    import yaml

    config = {k: {**v, **sections.get(k, {})} for k, v in FAST.items()}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp / "runs" / name
    result = CliRunner().invoke(
        app,
        ["run", str(path), *flags, "--out", str(out), "--no-progress"],
        env={"RASHOMON_DATA": str(root), "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for stage in ("train", "sample", "evaluate", "decide", "report"):
        assert (out / stage / "summary.json").exists(), stage
    return out


def rendered(run: Path) -> dict[str, dict]:
    """The report's sections as Chromium lays them out, after checking that none failed (in the
    stage summary, errors.txt and the page) and that the page is self-contained."""
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert "failed_sections" not in summary, summary["failed_sections"]
    assert not (run / "report" / "errors.txt").exists()
    page = inspect_self_contained(run / "report" / "report.html", height=1200)
    sections = {s["id"]: s for s in page.sections}
    assert [s for s in sections.values() if s["cls"] == "failed"] == []
    assert {"summary", "task", "map", "set", "multiplicity", "run"} <= set(sections)
    headline = (run / "report" / "summary.txt").read_text().splitlines()[0]
    assert headline == summary["headline"] and headline in sections["summary"]["text"]
    return sections


def headline(run: Path) -> str:
    return (run / "report" / "summary.txt").read_text().splitlines()[0]


def per_sample(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "evaluate" / "per_sample.csv")


def subsample_npz(src: Path, dst: Path, sizes: dict[str, int]) -> Path:
    """The first `sizes[split]` images of each split of a MedMNIST npz, in the same layout."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with np.load(src) as f:
        arrays = {
            f"{s}_{part}": f[f"{s}_{part}"][:n]
            for s, n in sizes.items()
            for part in ("images", "labels")
        }
    np.savez_compressed(dst, **arrays)
    return dst


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks on a shared 2-core machine: one torch thread is several times faster than
    two fighting over busy cores (the runs' results do not depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- a. real BreastMNIST, binary grey, with one cheap attack ----------------------------------


def test_breastmnist_binary(tiny_root, tmp):
    run = run_cli(
        tmp,
        "breast",
        tiny_root,
        "--dataset",
        "breastmnist",
        evaluate={
            "attacks": ["fgsm"],
            "attack_epsilons": [0.0, 0.01],
            "attack_images": 16,
            "whitebox_models": 1,
        },
    )
    sections = rendered(run)
    assert "breastmnist · binary classification" in sections["task"]["text"]
    ps = per_sample(run)
    assert len(ps) == 40 and set(ps["true_label"]) == {0, 1}
    # the headline's share is the share of test patients some model of the set flips
    flipped = int(ps["ambiguous"].sum())
    assert (ps["ambiguous"] == (ps["flip_rate"] > 0)).all()
    assert f"({flipped} of 40)" in headline(run)
    rob = pd.read_csv(run / "evaluate" / "robustness.csv")
    assert set(rob["corruption"]) == {"clean", "fgsm"}
    assert "Adversarial attacks" in sections["robustness"]["text"]


# --- b. real HAM10000, 7 classes, RGB folder with real sex/age ---------------------------------


@pytest.fixture(scope="module")
def ham_folder(tmp) -> Path:
    """About 300 HAM10000 images (every class in every split, the split column kept), as a
    folder task in tmp: labels.csv and classes.txt, images linked, not copied."""
    if not (HAM / "labels.csv").exists():
        pytest.skip("no HAM10000 subset")
    frame = pd.read_csv(HAM / "labels.csv")
    caps = {"train": 26, "val": 6, "test": 11}
    parts = [
        rows.head(caps[split]) for (split, _), rows in frame.groupby(["split", "label"], sort=True)
    ]
    sub = pd.concat(parts).sort_index()
    folder = tmp / "ham"
    folder.mkdir()
    (folder / "images").symlink_to(HAM / "images", target_is_directory=True)
    sub.to_csv(folder / "labels.csv", index=False)
    (folder / "classes.txt").write_text((HAM / "classes.txt").read_text())
    return folder


def test_ham10000_seven_classes_rgb_folder(ham_folder, tmp):
    sub = pd.read_csv(ham_folder / "labels.csv")
    assert 290 <= len(sub) <= 310
    run = run_cli(tmp, "ham", tmp, "--dataset", str(ham_folder))
    sections = rendered(run)
    task = sections["task"]["text"]
    assert "multiclass classification" in task
    assert "classes: " + ", ".join(HAM_CLASSES) in task
    # sex and age_group come from the CSV: real attributes, not marked as derived proxies,
    # with the test patients' counts per level
    test = sub[sub.split == "test"]
    sex, age = test["sex"].value_counts(), test["age_group"].value_counts()
    assert f"sex\tfemale ({sex['female']}), male ({sex['male']})\tfrom labels.csv" in task
    assert f"age_group\t60+ ({age['60+']}), <60 ({age['<60']})\tfrom labels.csv" in task
    assert "intensity (derived proxy)" in task and "sex (derived" not in task
    ps = per_sample(run)
    np.testing.assert_array_equal(ps["true_label"], test["label"])
    # the group codes are the levels' positions: female < male
    np.testing.assert_array_equal(ps["sex"], (test["sex"] == "male").astype(int))
    assert np.load(run / "sample" / "probs_test.npy").shape[1:] == (len(test), 7)
    # no corruption or attack configured: the section says so instead of an empty frame
    assert "No corruption or attack was run" in sections["robustness"]["text"]


# --- c. ChestMNIST layout: 14 labels, 0/1 each --------------------------------------------------


def test_chestmnist_multilabel(tmp):
    root = tmp / "chest-root"
    root.mkdir()
    synthetic_npz(root / "chestmnist.npz", sizes=(120, 40, 40), n_labels=14, seed=3)
    with np.load(root / "chestmnist.npz") as f:
        assert f["train_labels"].shape == (120, 14) and f["test_labels"].dtype == np.uint8
        y_test = f["test_labels"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_cli(tmp, "chest", root, "--dataset", "chestmnist")
    # 140 per-label columns: the report used to warn that its frame was highly fragmented
    assert not [w for w in caught if issubclass(w.category, pd.errors.PerformanceWarning)]
    sections = rendered(run)
    assert "chestmnist · multilabel classification" in sections["task"]["text"]
    # every label is audited as a 0/1 task: per-label metrics and per-label patients
    tidy = pd.read_csv(run / "evaluate" / "metrics.csv")
    for j in range(14):
        assert {f"label{j}.auroc", f"label{j}.accuracy"} <= set(tidy["metric"]), j
    ps = per_sample(run)
    probs = np.load(run / "sample" / "probs_test.npy")[np.load(run / "sample" / "in_set.npy")]
    ref = np.load(run / "sample" / "map_probs_test.npy") > 0.5
    assert probs.shape[1:] == ref.shape == y_test.shape == (40, 14)
    flipped = ((probs > 0.5) != ref[None]).any(axis=0)
    for j in range(14):
        np.testing.assert_array_equal(ps[f"label{j}.ambiguous"], flipped[:, j])
    # the single-label panels say why they are not drawn; no misleading "re-run" advice
    assert "viable prediction range per label" in sections["patients"]["text"]
    assert "re-run" not in sections["patients"]["text"]
    # selection per label, except where that label's MAP model is degenerate (a note says so)
    selection = pd.read_csv(run / "decide" / "selection.csv")
    notes = pd.read_csv(run / "decide" / "notes.csv").query("part == 'selection'")
    assert set(selection["label"]) | set(notes["label"]) == set(range(14))
    assert not set(selection["label"]) & set(notes["label"])
    gain = [
        ln
        for ln in (run / "report" / "summary.txt").read_text().splitlines()
        if ln.startswith("Picking the best model")
    ]
    if gain and "gives a real test gain" in gain[0]:  # per label, each label named once
        assert "labels checked: " in gain[0]
        listed = gain[0].split("labels checked: ", 1)[1]
        named = [c for c in CHEST_CLASSES if f"{c} (" in listed]
        assert named and all(listed.count(f"{c} (") == 1 for c in named), gain[0]


# --- d. a validation split of 20 images ---------------------------------------------------------


def test_twenty_image_validation_split(data_root, tmp):
    root = tmp / "val20-root"
    subsample_npz(
        data_root / "pneumoniamnist.npz",
        root / "pneumoniamnist.npz",
        {"train": 120, "val": 20, "test": 40},
    )
    run = run_cli(tmp, "val20", root, "--dataset", "pneumoniamnist")
    rendered(run)
    probs_val = np.load(run / "sample" / "probs_val.npy")
    assert probs_val.shape == (20, 20, 2)
    with np.load(root / "pneumoniamnist.npz") as f:
        y_val = f["val_labels"][:, 0].astype(int)
        counts = np.bincount(f["train_labels"][:, 0], minlength=2)
    # 120 training images at about 1:3 are imbalanced: the default weighs the classes by inverse
    # frequency, and the filter's loss is the weighted NLL the model was trained on
    weight = json.loads((run / "sample" / "summary.json").read_text())["class_weight"]
    assert counts.max() >= 2 * counts.min()
    np.testing.assert_allclose(weight, counts.sum() / (2 * counts), rtol=1e-6)

    # the Rashomon filter on 20 images: validation NLL within 50 % of the MAP model's
    def nll(p):
        own = -np.log(np.clip(p[..., np.arange(20), y_val], 1e-12, None))
        return (own * np.asarray(weight)[y_val]).mean(-1)

    map_loss = nll(np.load(run / "sample" / "map_probs_val.npy"))
    per_model = pd.read_csv(run / "sample" / "per_model.csv")
    np.testing.assert_allclose(per_model["val_loss"], nll(probs_val), rtol=1e-5, atol=1e-6)
    keep = np.load(run / "sample" / "in_set.npy")
    np.testing.assert_array_equal(keep, nll(probs_val) <= 1.5 * map_loss + 1e-9)
    assert f"{keep.sum()} of 20 models of the last-layer Laplace set (kron)" in headline(run)


# --- e. 95/5 imbalance: weighted by default; without weights the MAP stays on the majority ------


def _imbalanced_npz(path: Path, sizes: dict[str, int], signal: bool, seed: int = 5) -> None:
    """Noise images, 5 % positives; with `signal`, positives carry a bright 8×8 square."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        images = rng.integers(0, 160, (n, 28, 28), dtype=np.uint8)
        labels = np.zeros((n, 1), np.uint8)
        positive = rng.choice(n, n // 20, replace=False)
        labels[positive] = 1
        if signal:
            images[positive, 10:18, 10:18] = 255
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def test_imbalanced_binary_is_learned_by_default(tmp):
    """The default run on a 95/5 task with something to learn finds the rare class (class
    weights "auto"), says so in the report, and is not named degenerate."""
    from rashomon.metrics.degenerate import degeneracy

    root = tmp / "imbalanced-signal-root"
    sizes = {"train": 400, "val": 100, "test": 100}
    _imbalanced_npz(root / "pneumoniamnist.npz", sizes, signal=True)
    run = run_cli(tmp, "imbalanced-signal", root, "--dataset", "pneumoniamnist")
    sections = rendered(run)
    ps = per_sample(run)
    assert ps["true_label"].sum() == 5
    assert not degeneracy(ps["map_label"], ps["true_label"]).degenerate
    # every positive test patient is found, at most a few negatives called positive
    assert ps.loc[ps["true_label"] == 1, "map_label"].eq(1).all()
    assert ps.loc[ps["true_label"] == 0, "map_label"].eq(1).sum() <= 5
    train = json.loads((run / "train" / "summary.json").read_text())
    assert train["class_weight"] == pytest.approx([400 / (2 * 380), 400 / (2 * 20)], rel=1e-6)
    assert "class weights" in sections["map"]["text"]
    assert "near-constant classifier" not in headline(run)


def test_imbalanced_binary_without_weights_names_a_degenerate_map(tmp):
    from rashomon.metrics.degenerate import degeneracy

    root = tmp / "imbalanced-root"
    # noise images: nothing to learn, so the prior (95 % 'normal') is the best unweighted guess
    _imbalanced_npz(root / "pneumoniamnist.npz", {"train": 160, "val": 40, "test": 40}, False)
    run = run_cli(
        tmp, "imbalanced", root, "--dataset", "pneumoniamnist", train={"class_weights": False}
    )
    sections = rendered(run)
    ps = per_sample(run)
    assert ps["true_label"].sum() == 2
    d = degeneracy(ps["map_label"], ps["true_label"])
    assert d.degenerate and d.dominant_class == 0
    first = headline(run)
    assert first.startswith("The trained model predicts 'normal' for 100 % of test patients")
    assert "near-constant classifier is no finding" in first
    # decide refuses to select around it, and names the class as the headline does
    notes = pd.read_csv(run / "decide" / "notes.csv")
    why = notes.set_index("part").loc["selection", "note"]
    assert why.startswith("skipped: the trained model predicts 'normal' for 100 % of test")
    assert not (run / "decide" / "selection.csv").exists()
    assert "Best-in-set selection was skipped" in sections["summary"]["text"]


# --- f. the user's own nn.Sequential, built by `--model pkg.module:function` --------------------

PACKAGE = textwrap.dedent(
    """
    from torch import nn


    def small_convnet(num_classes=2, in_channels=1):
        return nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Flatten(),
            nn.Linear(6 * 7 * 7, 10),
            nn.ReLU(),
            nn.Linear(10, num_classes),
        )
    """
)


def test_user_sequential_by_module_path(tiny_root, tmp, monkeypatch):
    import torch

    import rashomon as rs

    pkg = tmp / "userpkg" / "mynets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "convs.py").write_text(PACKAGE)
    monkeypatch.syspath_prepend(str(pkg.parent))
    run = run_cli(
        tmp, "user", tiny_root, "--dataset", "breastmnist", "--model", "mynets.convs:small_convnet"
    )
    sections = rendered(run)
    model, _ = rs.load_checkpoint(run / "train" / "model.pt")
    # the user's layers, its last nn.Linear split off as the head
    layers = [type(m).__name__ for m in model.body]
    assert layers == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Identity"]
    assert isinstance(model.head, torch.nn.Linear) and model.head.in_features == 10
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["epochs_run"] >= 1  # a builder without weights is trained here
    mset = rs.ModelSet.load(run / "sample" / "set.pt")
    assert mset.head_only and mset.num_varied == 10 * 2 + 2  # the last nn.Linear, found
    assert "builder=mynets.convs:small_convnet" in sections["map"]["text"]


# --- g. real RSNA chest X-rays: real sex, age group and the acquisition view -------------------


@pytest.fixture(scope="module")
def rsna_folder(tmp, data_root) -> Path:
    """About 260 RSNA images (every split × label × view cell, the split column kept), as a
    folder task in tmp: labels.csv and classes.txt, images linked, not copied."""
    found = [r / "rsna-cxr" for r in (data_root, SHARED_DATA) if (r / "rsna-cxr").is_dir()]
    if not found:
        pytest.skip("no RSNA chest X-ray subset")
    rsna = found[0]
    frame = pd.read_csv(rsna / "labels.csv")
    caps = {"train": 40, "val": 10, "test": 16}
    cells = frame.groupby(["split", "label", "view"], sort=True)
    sub = pd.concat([rows.head(caps[split]) for (split, _, _), rows in cells]).sort_index()
    folder = tmp / "rsna"
    folder.mkdir()
    (folder / "images").symlink_to(rsna / "images", target_is_directory=True)
    sub.to_csv(folder / "labels.csv", index=False)
    (folder / "classes.txt").write_text((rsna / "classes.txt").read_text())
    return folder


def test_rsna_chest_xrays_with_sex_age_and_view(rsna_folder, tmp):
    sub = pd.read_csv(rsna_folder / "labels.csv")
    test = sub[sub.split == "test"]
    assert len(test) == 4 * 16 and set(test["view"]) == {"AP", "PA"}
    run = run_cli(tmp, "rsna", tmp, "--dataset", str(rsna_folder))
    sections = rendered(run)
    task = sections["task"]["text"]
    assert "binary classification" in task
    assert "classes: no_lung_opacity, lung_opacity" in task
    # sex, age_group and view come from the CSV: real attributes with the test patients' counts
    sex, age, view = (test[c].value_counts() for c in ("sex", "age_group", "view"))
    # a binary task's table adds the test positives per level and their share of all positives
    pos = test[test.label == 1]

    def positives(col: str, levels: tuple[str, ...]) -> str:
        return ", ".join(
            f"{g} {(pos[col] == g).sum()} ({100 * (pos[col] == g).sum() / len(pos):.0f} %)"
            for g in levels
        )

    sexes = f"F ({sex['F']}), M ({sex['M']})"
    assert f"sex\t{sexes}\t{positives('sex', ('F', 'M'))}\tfrom labels.csv" in task
    ages = ", ".join(f"{g} ({age[g]})" for g in ("0-39", "40-59", "60+"))
    age_pos = positives("age_group", ("0-39", "40-59", "60+"))
    assert f"age_group\t{ages}\t{age_pos}\tfrom labels.csv" in task
    views = f"AP ({view['AP']}), PA ({view['PA']})"
    view_pos = positives("view", ("AP", "PA"))
    assert f"view (acquisition)\t{views}\t{view_pos}\tfrom labels.csv" in task
    # view is how the image was taken: an acquisition attribute, in its own table
    assert task.index("Acquisition attributes") < task.index("view (acquisition)\t")
    for real in ("sex", "age_group", "view"):
        assert f"{real} (derived" not in task
    ps = per_sample(run)
    np.testing.assert_array_equal(ps["true_label"], test["label"])
    np.testing.assert_array_equal(ps["view"], (test["view"] == "PA").astype(int))  # AP < PA

    # the sex and age gaps within AP and within PA films, beside the marginal ones (view is an
    # acquisition attribute by name; the derived intensity too)
    ws = pd.read_csv(run / "evaluate" / "within_stratum.csv")
    assert set(ws["attribute"]) == {"sex", "age_group", "random"}
    assert set(ws["stratum_attribute"]) == {"view", "intensity"}
    rows = ws[(ws["attribute"] == "sex") & (ws["stratum_attribute"] == "view")]
    rows = rows[rows["metric"] == "tpr_gap"].set_index("stratum")
    assert rows.index.tolist() == ["all", "AP", "PA", "pooled"]
    # the MAP model's TPR gap between the sexes among AP films, from its labels per patient
    ap_pos = ps[(ps["view"] == 0) & (ps["true_label"] == 1)]
    tpr = ap_pos.groupby("sex")["map_label"].mean()
    assert rows.loc["AP", "map_gap"] == pytest.approx(tpr.max() - tpr.min())
    assert rows.loc["AP", "rate_patients"] == len(ap_pos) == 16
    assert rows.loc["AP", "smallest_group"] == ap_pos["sex"].value_counts().min()
    # the marginal gap is the per-model table's
    map_row = pd.read_csv(run / "evaluate" / "per_model_test.csv").iloc[0]
    assert rows.loc["all", "map_gap"] == pytest.approx(map_row["tpr_gap[sex]"])
    # every selection row states the smallest gain its 64 test patients could show
    sel = pd.read_csv(run / "decide" / "selection.csv")
    assert {"gain_se", "min_detectable_gain"} <= set(sel.columns)
    assert {"tpr_gap:sex", "tpr_gap:view", "tpr_gap:age_group"} <= set(sel["desideratum"])
    differ = sel["gain_se"] > 0
    assert (sel.loc[differ, "min_detectable_gain"] > 2.8 * sel.loc[differ, "gain_se"]).all()


def test_rsna_example_config(monkeypatch):
    from rashomon.config import load_config
    from rashomon.data import data_files
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "rsna-cxr.yaml")
    assert (cfg.data.labels, cfg.data.size, cfg.train.class_weights) == ("labels.csv", 28, "auto")
    assert cfg.evaluate.acquisition == ["view", "intensity"]
    assert "Shih G" in (REPO / "examples" / "rsna-cxr.yaml").read_text()  # the attribution
    folder = (REPO / cfg.data.dataset).resolve()  # relative to the repo root, where it runs
    if (folder / "labels.csv").exists():  # a checkout beside ../shared/data
        monkeypatch.chdir(REPO)
        files = data_files(cfg.data.dataset, labels=cfg.data.labels)
        assert files[:2] == [folder / "labels.csv", folder / "classes.txt"]
