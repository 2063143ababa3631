"""Constrained baselines: the soft fairness gap and both training routes on a tiny task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rashomon.data.task import Split, Task
from rashomon.decide.constrained import soft_gap, train_constrained_baseline
from rashomon.errors import RashomonError


def tiny_binary_task(n_train=64, n_val=32, seed=0) -> Task:
    gen = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.randint(0, 2, (n,), generator=gen)
        x = torch.randn(n, 1, 28, 28, generator=gen) * 0.3 + (y.float() - 0.5)[:, None, None, None]
        return Split(x=x, y=y, groups={"site": torch.randint(0, 2, (n,), generator=gen)})

    return Task("tiny", "binary", 2, split(n_train), split(n_val), split(n_val))


def test_soft_gap_hand_values():
    p = torch.tensor([0.9, 0.7, 0.2, 0.6, 0.1, 0.4])
    y = torch.tensor([1, 1, 1, 1, 0, 0])
    g = torch.tensor([0, 0, 1, 1, 0, 1])
    # TPR: group 0 positives mean (0.9 + 0.7) / 2 = 0.8; group 1 (0.2 + 0.6) / 2 = 0.4.
    assert float(soft_gap(p, y, g, "tpr_gap")) == pytest.approx(0.4)
    # DP: group 0 (0.9 + 0.7 + 0.1) / 3, group 1 (0.2 + 0.6 + 0.4) / 3.
    assert float(soft_gap(p, y, g, "dp_gap")) == pytest.approx(1.7 / 3 - 1.2 / 3)
    assert float(soft_gap(p, y, torch.zeros(6, dtype=torch.long), "tpr_gap")) == 0.0


def test_reweight_and_penalty_baselines_train():
    task = tiny_binary_task()
    m1 = train_constrained_baseline(task, "cnn-small", "site", epochs=1, seed=0, progress=False)
    assert m1.train_config["group_balanced"] == "site"
    hist: list[dict] = []
    m2 = train_constrained_baseline(
        task,
        "cnn-small",
        "site",
        epochs=2,
        seed=0,
        method="penalty",
        penalty_weight=2.0,
        history=hist,
    )
    assert m2.train_config["constrained"]["penalty_weight"] == 2.0
    assert len(hist) == 2 and np.isfinite(hist[-1]["train_gap"])
    assert m2(task.test.x).shape == (32, 2)
    with pytest.raises(RashomonError, match="unknown attribute 'sex'"):
        train_constrained_baseline(task, attribute="sex", epochs=1)
    with pytest.raises(RashomonError, match="unknown constrained method"):
        train_constrained_baseline(task, attribute="site", epochs=1, method="oracle")


def test_both_methods_train_with_the_map_models_options(tiny_task):
    """The decide stage hands the MAP model's training options to the baseline; both methods
    take every one of them, the penalty loop included (optimizer, budget, class weights)."""
    from rashomon.config import TrainSection
    from rashomon.models.train import resolve_class_weights

    fit = TrainSection(epochs=1, optimizer="sgd", lr=0.01).fit_options()
    weight = resolve_class_weights(tiny_task, "auto")  # the tiny task is 3:1 imbalanced
    assert weight is not None
    for method in ("reweight", "penalty"):
        model = train_constrained_baseline(
            tiny_task, "mlp", "random", 1, 0, "cpu", method=method, progress=False, **fit
        )
        assert model(tiny_task.test.x[:2]).shape == (2, 2)
        cfg = model.train_config
        assert (cfg["optimizer"], cfg["lr"], cfg["steps"]) == ("sgd", 0.01, 1000)
        assert cfg["class_weight"] == pytest.approx(weight.tolist())
    with pytest.raises(RashomonError, match=r"unknown training option\(s\) \['lrate'\]"):
        train_constrained_baseline(tiny_task, "mlp", "random", 1, method="penalty", lrate=0.1)


def test_train_options_are_trains_keyword_options():
    """`TrainOptions` and `train`'s keyword options are one list (the runtime ones aside)."""
    import dataclasses
    import inspect

    from rashomon.models.train import TrainOptions, train

    keyword = [
        name
        for name, p in inspect.signature(train).parameters.items()
        if p.kind is p.KEYWORD_ONLY
        and name not in ("device", "progress", "history", "snapshots", "saved_states")
    ]
    assert keyword == [f.name for f in dataclasses.fields(TrainOptions)]
    defaults = {n: p.default for n, p in inspect.signature(train).parameters.items()}
    for f in dataclasses.fields(TrainOptions):
        expected = defaults[f.name] if f.name != "arch_options" else None
        own = f.default if f.default is not dataclasses.MISSING else None
        assert own == expected, f.name
