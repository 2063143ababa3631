"""`rashomon run --model ... --weights ...` audits the user's own trained network end to end."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pandas as pd
import torch
from torch import nn

import rashomon as rs
from tests.test_cli import assert_one_line_error, rashomon

FAST = (
    "evaluate: {corruptions: [], attacks: [], bootstrap: 20}\n"
    "decide: {constrained_baseline: false, lsi: false, ensemble_sizes: [1, 3]}\n"
)
MODULE = textwrap.dedent(
    """
    from torch import nn


    def build(num_classes=2, in_channels=1, hidden=16):
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
    """
)


def _trained(tiny_task, net: nn.Module, steps: int = 30) -> nn.Module:
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(tiny_task.train.x), tiny_task.train.y).backward()
        opt.step()
    return net.eval()


def test_user_builder_and_weights_are_audited_not_trained(tiny_root, tiny_task, tmp_path):
    (tmp_path / "my_models.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import my_models

        net = _trained(tiny_task, my_models.build())
    finally:
        sys.path.remove(str(tmp_path))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    out = tmp_path / "run"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    try:
        proc = rashomon(
            "run",
            str(config),
            "--dataset",
            "breastmnist",
            "--model",
            "my_models:build",
            "--weights",
            str(tmp_path / "weights.pt"),
            "--models",
            "40",
            "--epsilon",
            "0.5",
            "--out",
            str(out),
            "--no-progress",
            root=tiny_root,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "train" / "summary.json").read_text())
        assert summary["trained"].startswith("no") and summary["epochs_run"] == 0
        # the audited model is the user's network with the user's weights
        model, _ = rs.load_checkpoint(out / "train" / "model.pt")
        x = tiny_task.test.x
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-5)
        mset = rs.ModelSet.load(out / "sample" / "set.pt")
        assert mset.head_only and mset.num_varied == 16 * 2 + 2
        assert (out / "report" / "report.html").exists()
        # a set member leaves as a checkpoint whose user_state_dict loads into the user's class
        per_model = pd.read_csv(out / "sample" / "per_model.csv")
        member = int(per_model.loc[per_model["in_set@0.5"], "model"].iloc[-1])
        proc = rashomon(
            "export",
            str(out),
            "--model",
            str(member),
            "--out",
            str(tmp_path / "m.pt"),
            root=tiny_root,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {tmp_path / 'm.pt'}: model {member}" in proc.stdout.replace("\n", "")
        mine = my_models.build()
        mine.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=False)["user_state_dict"])
        stored = np.load(out / "sample" / "probs_test.npy")[member]
        with torch.no_grad():
            np.testing.assert_allclose(mine.eval()(x).softmax(-1).numpy(), stored, atol=1e-5)
        again = rashomon(
            "export",
            str(out),
            "--model",
            str(member),
            "--out",
            str(tmp_path / "m.pt"),
            root=tiny_root,
        )
        assert_one_line_error(again, "exists; choose another --out or pass --force")
        # weights of another architecture: a one-line error naming the fix
        torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
        proc = rashomon(
            "run",
            "--dataset",
            "breastmnist",
            "--model",
            "my_models:build",
            "--weights",
            str(tmp_path / "other.pt"),
            "--stages",
            "train",
            "--out",
            str(tmp_path / "bad"),
            root=tiny_root,
        )
        assert_one_line_error(proc, r"do not fit the network: missing .*check that --model")
    finally:
        os.environ["PYTHONPATH"] = os.environ["PYTHONPATH"].split(os.pathsep, 1)[1]


def test_a_saved_whole_network_is_audited_as_is(tiny_root, tiny_task, tmp_path):
    net = _trained(
        tiny_task,
        nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 12), nn.Tanh(), nn.Linear(12, 2)),
    )
    torch.save(net, tmp_path / "whole.pt")
    out = tmp_path / "run"
    proc = rashomon(
        "run",
        "--dataset",
        "breastmnist",
        "--model",
        str(tmp_path / "whole.pt"),
        "--models",
        "20",
        "--epsilon",
        "0.5",
        "--stages",
        "train,sample",
        "--out",
        str(out),
        "--no-progress",
        root=tiny_root,
    )
    assert proc.returncode == 0, proc.stderr
    mset = rs.ModelSet.load(out / "sample" / "set.pt")
    torch.testing.assert_close(
        mset.base(tiny_task.test.x), net(tiny_task.test.x), rtol=0, atol=1e-5
    )


def test_user_model_errors_are_one_line_with_the_fix(tiny_root, tmp_path):
    # main: "ValueError: boom" and torch's multi-line size-mismatch text, exit 1
    (tmp_path / "cli_models.py").write_text(
        MODULE + "\n\ndef boom(num_classes=2):\n    raise ValueError('boom')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import cli_models

        torch.save(cli_models.build(num_classes=3).state_dict(), tmp_path / "three.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cli_models", None)
    common = ("--dataset", "breastmnist", "--stages", "train", "--no-progress")
    proc = rashomon(
        "run", *common, "--model", "cli_models:boom", "--out", str(tmp_path / "a"),
        root=tiny_root, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_line_error(proc, r"builder cli_models:boom raised ValueError: boom; fix the builder")
    proc = rashomon(
        "run", *common, "--model", "cli_models:build", "--weights", str(tmp_path / "three.pt"),
        "--out", str(tmp_path / "b"), root=tiny_root, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_line_error(proc, r"6.weight has shape \(3, 16\) there but \(2, 16\) in the network")
