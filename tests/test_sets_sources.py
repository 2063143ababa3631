"""Retrain and dropout sets: exact functions, caching, and the shared downstream path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.models.registry import build_model
from rashomon.models.train import load_checkpoint
from rashomon.sets.base import ModelSet
from rashomon.sets.dropout import dropout
from rashomon.sets.retrain import retrain


@pytest.fixture(scope="module")
def retrained(tiny_task, tmp_path_factory):
    cache = tmp_path_factory.mktemp("retrain-cache")
    opts = dict(arch="cnn", epochs=1, arch_options={"width": 0.25}, cache_dir=cache)
    first = retrain(tiny_task, 2, **opts)
    return first, opts


def test_retrain_models_are_the_trained_networks(retrained, tiny_task):
    mset, opts = retrained
    assert len(mset) == 2 and mset.source == "retrain" and mset.meta["seeds"] == [0, 1]
    assert mset.param_names == [n for n, _ in mset.base.named_parameters()]
    x = tiny_task.test.x[:12]
    probs = mset.predict(x)
    for k, seed in enumerate((0, 1)):
        net, _ = load_checkpoint(f"{mset.meta['cache']}/seed_{seed}.pt")
        with torch.no_grad():
            ref = torch.softmax(net(x), -1)
        assert (probs[k] - ref).abs().max() < 1e-5
    # seed 0 is the base (θ*): zero distance; seed 1 moved
    d = mset.distances()
    assert d["l2"][0] == 0 and d["l2"][1] > 0


def test_retrain_reuses_cached_checkpoints(retrained, tiny_task):
    mset, opts = retrained
    again = retrain(tiny_task, 2, **opts)
    assert again.meta["reused"] == 2 and again.meta["train_seconds"] == 0
    assert torch.equal(again.samples, mset.samples)
    with pytest.raises(RashomonError, match="positive"):
        retrain(tiny_task, 0, **opts)


def test_dropout_masks_are_fixed_and_exact(tiny_task):
    torch.manual_seed(0)
    net = build_model("cnn", 1, 2, width=0.25, dropout=0.5).eval()
    mset = dropout(net, 5, seed=7, task=tiny_task)
    assert mset.source == "dropout" and mset.head_only
    x = tiny_task.test.x[:9]
    gen = torch.Generator().manual_seed(7)
    keep = (torch.rand(5, net.head.in_features, generator=gen) >= 0.5).float() / 0.5
    with torch.no_grad():
        feats = net.body(x)
        ref = torch.stack([net.head(feats * keep[m]) for m in range(5)])
    assert (mset.logits(x) - ref).abs().max() < 1e-5
    assert torch.equal(dropout(net, 5, seed=7).samples, mset.samples)
    with pytest.raises(RashomonError, match="dropout"):
        dropout(build_model("cnn", 1, 2, width=0.25), 5)


@pytest.mark.parametrize("source", ["laplace", "retrain", "dropout"])
def test_same_downstream_path(source, retrained, tiny_task, tmp_path):
    if source == "retrain":
        mset = retrained[0]
    elif source == "dropout":
        mset = dropout(build_model("cnn", 1, 2, width=0.25, dropout=0.3), 6, task=tiny_task)
    else:
        net = build_model("cnn", 1, 2, width=0.25)
        mset = rs.laplace(net, tiny_task, prior=1.0).sample(6, seed=0)
    p_val = mset.predict(tiny_task.val.x)
    assert p_val.shape == (len(mset), len(tiny_task.val), 2) and p_val.dtype == torch.float32
    keep = rs.rashomon_mask(p_val, tiny_task.val.y, 10.0, min_models=0)
    keep[0] = True
    kept = mset.subset(keep)
    kept.save(tmp_path / "set.pt")
    loaded = ModelSet.load(tmp_path / "set.pt", task=tiny_task)
    assert loaded.source == source and len(loaded) == int(keep.sum())
    np.testing.assert_allclose(
        loaded.predict(tiny_task.val.x), p_val[torch.as_tensor(keep)], atol=1e-6
    )


def _relabelled(task, flip: bool = True, train_x=None):
    """A copy of `task` whose training labels are flipped (or whose images are replaced)."""
    import copy

    other = copy.copy(task)
    other.__dict__.pop("_fingerprints", None)
    train = copy.copy(task.train)
    if flip:
        train.y = 1 - task.train.y
    if train_x is not None:
        train.x = train_x
    other.train = train
    return other


def test_retrain_cache_is_keyed_by_the_data_content(retrained, tiny_task):
    """Issue 21 case 1: flipping every training label (or changing the images) is other data;
    the cache must not hand back networks trained on the old labels."""
    from rashomon.sets.retrain import training_key

    _, opts = retrained
    arch, epochs = opts["arch"], opts["epochs"]
    fit = {"arch_options": opts["arch_options"]}
    key = training_key(tiny_task, arch, epochs, fit)
    flipped = _relabelled(tiny_task)
    assert training_key(flipped, arch, epochs, fit) != key
    one_channel_more = _relabelled(
        tiny_task, flip=False, train_x=tiny_task.train.x.repeat(1, 3, 1, 1)
    )
    assert training_key(one_channel_more, arch, epochs, fit) != key
    # every training option is part of the key, defaults filled in
    assert training_key(tiny_task, arch, epochs, {**fit, "lr": 1e-3}) == key
    assert training_key(tiny_task, arch, epochs, {**fit, "lr": 2e-3}) != key
    # the tiny task is 3:1 imbalanced: "auto" weighs as `true` does, `false` is another recipe
    assert training_key(tiny_task, arch, epochs, {**fit, "class_weights": True}) == key
    assert training_key(tiny_task, arch, epochs, {**fit, "class_weights": False}) != key
    assert training_key(tiny_task, arch, 2, fit) != key
    with pytest.raises(RashomonError, match="unknown training option"):
        training_key(tiny_task, arch, epochs, {"lrate": 1.0})
    again = retrain(flipped, 1, **opts)
    assert again.meta["reused"] == 0  # trained anew on the flipped labels


def test_builder_source_is_part_of_the_architecture(tmp_path, monkeypatch):
    """Issue 21 case 12: editing the user's builder module is another architecture."""
    from rashomon.models.external import arch_identity

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "my_nets_for_identity.py"
    module.write_text("import torch.nn as nn\ndef build(num_classes):\n    return nn.ReLU()\n")
    first = arch_identity("my_nets_for_identity:build")
    module.write_text("import torch.nn as nn\ndef build(num_classes):\n    return nn.Tanh()\n")
    import importlib
    import sys

    importlib.reload(sys.modules["my_nets_for_identity"])
    assert arch_identity("my_nets_for_identity:build") != first
    assert arch_identity("cnn-small") == "cnn-small"


def test_training_key_of_a_fixed_recipe_is_stable():
    """The retrain cache's folder name must not drift with refactoring: a changed key orphans
    every seed trained before (30 per dataset: hours of CPU). Change TRAINING_VERSION (and this
    literal) only when training's arithmetic changes."""
    from rashomon.config import TrainSection
    from rashomon.data.task import Split, Task
    from rashomon.sets.retrain import training_key

    gen = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.rand(n, 1, 28, 28, generator=gen) * 2 - 1
        return Split(x=x, y=(torch.arange(n) % 4 == 0).long())

    task = Task("synthetic", "binary", 2, split(40), split(12), split(12))
    options = TrainSection(dropout=0.1).fit_options()
    assert training_key(task, "cnn-small", None, options) == "2070c78bc0871ec9"
