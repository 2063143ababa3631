"""Architecture registry, MAP training determinism, early stopping, checkpoints."""

from __future__ import annotations

import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.models import build_model, count_parameters
from rashomon.models.train import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize(
    "arch,options,feat_dim",
    [("cnn-small", {}, 128), ("cnn", {"width": 0.5}, 64), ("mlp", {}, 128), ("resnet18", {}, 512)],
)
def test_registry_exposes_features_and_head(arch, options, feat_dim, size):
    model = build_model(arch, 1, 3, size, **options).eval()
    x = torch.randn(2, 1, size, size)
    feats = model.features(x)
    assert feats.shape == (2, feat_dim)
    assert isinstance(model.head, torch.nn.Linear) and model.head.in_features == feat_dim
    torch.testing.assert_close(model(x), model.head(feats))
    assert model.spec["arch"] == arch and model.spec["options"] == options


def test_parameter_counts():
    # cnn-small: conv 1→32, 32→64, 64→64 (3×3), linear 256→128, head 128→2
    expected = (9 * 32 + 32) + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64) + (256 * 128 + 128) + 258
    assert count_parameters(build_model("cnn-small", 1, 2)) == expected
    small, wide = (count_parameters(build_model("cnn", 1, 2, width=w)) for w in (0.5, 2.0))
    assert small < expected < wide


def test_unknown_architecture_lists_names():
    with pytest.raises(RashomonError, match="unknown architecture 'vgg'.*cnn-small"):
        build_model("vgg", 1, 2)


def test_training_is_deterministic_given_seed(tiny_task):
    a = rs.train(tiny_task, "cnn-small", epochs=2, seed=7, progress=False)
    b = rs.train(tiny_task, "cnn-small", epochs=2, seed=7, progress=False)
    c = rs.train(tiny_task, "cnn-small", epochs=2, seed=8, progress=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.head.weight, c.head.weight)


def test_training_learns_and_keeps_best_validation_epoch(task_breast):
    history: list[dict] = []
    model = rs.train(task_breast, "cnn-small", epochs=20, seed=0, progress=False, history=history)
    best = min(h["val_loss"] for h in history)
    logits = model(task_breast.val.x)
    val_loss = torch.nn.functional.cross_entropy(logits, task_breast.val.y).item()
    assert val_loss == pytest.approx(best, rel=1e-4)
    from sklearn.metrics import roc_auc_score

    probs = torch.softmax(model(task_breast.test.x), 1)[:, 1].detach().numpy()
    assert roc_auc_score(task_breast.test.y.numpy(), probs) > 0.75


def test_early_stopping(tiny_task):
    history: list[dict] = []
    rs.train(
        tiny_task, "mlp", epochs=50, seed=0, lr=0.05, patience=2, progress=False, history=history
    )
    assert len(history) < 50
    best_epoch = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    assert len(history) == best_epoch + 1 + 2


def test_multilabel_training_uses_bce(tmp_path):
    from tests.conftest import synthetic_npz

    synthetic_npz(tmp_path / "chestmnist.npz", sizes=(200, 40, 40), n_labels=14)
    task = rs.load_task("chestmnist", root=tmp_path)
    history: list[dict] = []
    model = rs.train(task, "cnn-small", epochs=3, seed=0, progress=False, history=history)
    assert model(task.val.x[:2]).shape == (2, 14)
    assert history[-1]["val_loss"] < history[0]["val_loss"] or history[0]["val_loss"] < 0.69


def test_checkpoint_round_trip(tiny_task, tmp_path):
    model = rs.train(
        tiny_task, "cnn", epochs=1, seed=0, arch_options={"width": 0.5}, progress=False
    )
    save_checkpoint(model, tmp_path / "m.pt", tiny_task)
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["spec"]["options"] == {"width": 0.5}
    assert meta["task"]["name"] == "breastmnist" and meta["train_config"]["seed"] == 0
    torch.testing.assert_close(loaded(tiny_task.test.x), model(tiny_task.test.x))


def test_class_weights_and_group_balance(tiny_task):
    from rashomon.models.train import class_weight_vector, sample_weight_vector

    w = class_weight_vector(tiny_task)
    counts = torch.bincount(tiny_task.train.y).float()
    torch.testing.assert_close(w * counts, torch.full_like(counts, len(tiny_task.train) / 2))
    sw = sample_weight_vector(tiny_task, "random")
    cell = tiny_task.train.groups["random"] * 2 + tiny_task.train.y
    masses = torch.stack([sw[cell == c].sum() for c in cell.unique()])
    torch.testing.assert_close(masses, masses.mean().expand_as(masses))
    with pytest.raises(RashomonError, match="unknown attribute 'age'"):
        sample_weight_vector(tiny_task, "age")
