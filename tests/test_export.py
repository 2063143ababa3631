"""`rashomon export`: a set member leaves the tool as a checkpoint that predicts exactly as it
did in the set, for registry architectures and for the user's own network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

import rashomon as rs
from rashomon.config import load_config
from rashomon.errors import RashomonError
from rashomon.export import export_model
from rashomon.predict import model_probs
from rashomon.run import run_pipeline


@pytest.fixture(scope="module")
def sampled_run(tiny_root, tmp_path_factory):
    cfg = load_config(
        None,
        {
            "data.dataset": "breastmnist",
            "data.root": str(tiny_root),
            "train.arch": "mlp",
            "train.epochs": 20,
            "sample.models": 30,
            "sample.epsilon": 0.02,
        },
    )
    run_dir = tmp_path_factory.mktemp("export") / "run"
    run_pipeline(run_dir, cfg, ("train", "sample"), progress=False, console=Console(quiet=True))
    return run_dir


def _in_set(run_dir, flag: bool) -> list[int]:
    per_model = pd.read_csv(run_dir / "sample" / "per_model.csv")
    return per_model.loc[per_model["in_set@0.02"] == flag, "model"].tolist()


def test_exported_member_predicts_as_in_the_set(sampled_run, tiny_task, tmp_path):
    member = _in_set(sampled_run, True)[-1]
    origin = export_model(sampled_run, member, tmp_path / "m.pt")
    assert origin["model"] == member and origin["in_set"] and origin["epsilon"] == 0.02
    net, meta = rs.load_checkpoint(tmp_path / "m.pt")
    assert meta["exported_from"]["model"] == member
    assert meta["task"]["name"] == "breastmnist"
    stored = np.load(sampled_run / "sample" / "probs_test.npy")[member]
    probs = model_probs(net, tiny_task.test.x, False, "cpu").numpy()
    np.testing.assert_allclose(probs, stored, atol=1e-6)
    # usable without rashomon: a state dict and the architecture spec
    payload = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=False)
    assert payload["spec"]["arch"] == "mlp" and "head.weight" in payload["state_dict"]
    # the MAP model exports too, and equals the trained checkpoint's predictions
    export_model(sampled_run, "map", tmp_path / "map.pt")
    map_net, _ = rs.load_checkpoint(tmp_path / "map.pt")
    map_stored = np.load(sampled_run / "sample" / "map_probs_test.npy")
    np.testing.assert_allclose(
        model_probs(map_net, tiny_task.test.x, False, "cpu").numpy(), map_stored, atol=1e-6
    )


def test_export_refuses_what_it_should(sampled_run, tmp_path):
    target = tmp_path / "keep.pt"
    target.write_bytes(b"the user's file")
    with pytest.raises(RashomonError, match="exists; choose another --out or pass --force"):
        export_model(sampled_run, "map", target)
    assert target.read_bytes() == b"the user's file"
    with pytest.raises(RashomonError, match="is not in .*per_model.csv"):
        export_model(sampled_run, 10_000, tmp_path / "x.pt")
    with pytest.raises(RashomonError, match="neither a model index"):
        export_model(sampled_run, "best", tmp_path / "x.pt")
    outside = _in_set(sampled_run, False)
    if outside:  # 30 Laplace draws at ε = 0.02 leave some out on 40 validation images
        with pytest.raises(RashomonError, match="outside the Rashomon set"):
            export_model(sampled_run, outside[0], tmp_path / "x.pt")
        assert not export_model(sampled_run, outside[0], tmp_path / "x.pt", outside=True)["in_set"]
    with pytest.raises(RashomonError, match="no finished sample stage"):
        export_model(tmp_path, 0, tmp_path / "y.pt")


def test_export_never_writes_into_the_run_directory(sampled_run, tmp_path, monkeypatch):
    # main: `export RUN --model 4 --out RUN/train/model.pt --force` replaced the MAP checkpoint
    # with member 4, and every stage still reported "up to date"
    member = _in_set(sampled_run, True)[-1]
    checkpoint = sampled_run / "train" / "model.pt"
    before = checkpoint.read_bytes()
    targets = [
        checkpoint,
        sampled_run / "stages.json",
        sampled_run / "sample" / "new.pt",
        sampled_run / "model4.pt",
        sampled_run / "exports" / "m.pt",
    ]
    for target in targets:
        with pytest.raises(RashomonError, match=r"inside the run directory .*; write it outside"):
            export_model(sampled_run, member, target, force=True)
    # however the path is spelled: relative, through '..', or through a symbolic link
    monkeypatch.chdir(sampled_run / "sample")
    with pytest.raises(RashomonError, match="inside the run directory"):
        export_model(sampled_run, member, "../train/model.pt", force=True)
    (tmp_path / "link").symlink_to(sampled_run)
    with pytest.raises(RashomonError, match="inside the run directory"):
        export_model(tmp_path / "link", member, sampled_run / "train" / "model.pt", force=True)
    assert checkpoint.read_bytes() == before
    assert not (sampled_run / "exports").exists() and not (sampled_run / "model4.pt").exists()
    # beside the run directory is fine
    export_model(sampled_run, member, tmp_path / "m.pt")
    assert (tmp_path / "m.pt").exists()
