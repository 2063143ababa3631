"""Architecture registry, MAP training determinism, early stopping, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.models import build_model, count_parameters
from rashomon.models.train import (
    learning_rate,
    load_checkpoint,
    plan_budget,
    save_checkpoint,
    select_checkpoint,
    should_stop,
    smoothed_losses,
)


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


def test_training_learns_and_keeps_selected_validation_epoch(task_breast):
    # The kept weights are those of the epoch the smoothed-loss rule selects (the raw minimum
    # before the step budget; intended change), and the model learns.
    history: list[dict] = []
    model = rs.train(task_breast, "cnn-small", epochs=20, seed=0, progress=False, history=history)
    cfg = model.train_config
    assert cfg["select_window_used"] == 3 and len(history) <= 20
    chosen = select_checkpoint([h["val_loss"] for h in history], 3)
    assert [h["selected"] for h in history] == [i == chosen for i in range(len(history))]
    assert cfg["selected_epoch"] == chosen + 1
    # BreastMNIST is imbalanced (147:399): selection is on the class-weighted validation loss
    weight = torch.tensor(cfg["class_weight"])
    logits = model(task_breast.val.x)
    val_loss = torch.nn.functional.cross_entropy(
        logits, task_breast.val.y, weight=weight, reduction="none"
    )
    assert val_loss.mean().item() == pytest.approx(history[chosen]["val_loss"], rel=1e-4)
    from sklearn.metrics import roc_auc_score

    probs = torch.softmax(model(task_breast.test.x), 1)[:, 1].detach().numpy()
    assert roc_auc_score(task_breast.test.y.numpy(), probs) > 0.75


def test_early_stopping(tiny_task):
    # Stops `patience` evaluations after the lowest smoothed loss whose window is complete, so
    # the run ends window // 2 epochs later than with the raw minimum (intended change).
    history: list[dict] = []
    model = rs.train(
        tiny_task,
        "mlp",
        epochs=50,
        seed=0,
        lr=0.05,
        schedule="constant",
        patience=2,
        select_window=3,
        progress=False,
        history=history,
    )
    losses = [h["val_loss"] for h in history]
    assert len(history) < 50
    complete = len(losses) - 1
    best = int(np.argmin(smoothed_losses(losses, 3)[:complete]))
    assert complete - 1 - best == 2
    assert not any(should_stop(losses[:n], 3, 2) for n in range(1, len(losses)))
    assert model.train_config["selected_epoch"] == select_checkpoint(losses, 3) + 1


@pytest.mark.parametrize(
    "n_train,batch,steps,epochs,expected",
    [
        # BreastMNIST's 546 training images: 9 steps of 64 per epoch, 112 epochs hold 1000 steps
        (546, 64, 1000, None, (64, 9, 112, 1008)),
        # PneumoniaMNIST's 4708: 74 steps per epoch, 14 epochs
        (4708, 64, 1000, None, (64, 74, 14, 1036)),
        # ChestMNIST's 78,468: one epoch (1227 steps) already exceeds the budget
        (78468, 64, 1000, None, (64, 1227, 1, 1227)),
        # a split smaller than the batch: the batch is the whole split, one step per epoch
        (40, 64, 30, None, (40, 1, 30, 30)),
        # an explicit epoch count replaces the budget
        (546, 64, 1000, 2, (64, 9, 2, 18)),
        (78468, 64, 1000, 3, (64, 1227, 3, 3681)),
    ],
)
def test_step_budget_plans_epochs(n_train, batch, steps, epochs, expected):
    b = plan_budget(n_train, batch, steps, epochs)
    assert (b.batch_size, b.steps_per_epoch, b.epochs, b.total_steps) == expected


def test_budget_refuses_bad_values():
    with pytest.raises(RashomonError, match="epochs must be at least 1"):
        plan_budget(100, 64, 1000, 0)
    with pytest.raises(RashomonError, match="batch_size and steps must be at least 1"):
        plan_budget(100, 64, 0)


def test_training_runs_the_budget_or_at_most_the_given_epochs(tiny_task):
    # tiny_task has 120 training images: 4 steps of 32 per epoch; 10 steps -> 3 epochs, 12 steps.
    history: list[dict] = []
    model = rs.train(
        tiny_task, "mlp", steps=10, batch_size=32, patience=100, progress=False, history=history
    )
    assert [h["step"] for h in history] == [4, 8, 12]
    assert model.train_config["epochs_planned"] == 3
    assert model.train_config["steps_planned"] == 12
    history = []
    model = rs.train(tiny_task, "mlp", 2, 0, steps=1000, progress=False, history=history)
    assert len(history) == 2 and model.train_config["epochs_planned"] == 2
    # the schedule spans the two epochs actually planned (2 x 2 steps of 64)
    assert [h["lr"] for h in history] == pytest.approx(
        [learning_rate(s - 1, 4, 1e-3) for s in (2, 4)]
    )


def test_learning_rate_follows_the_cosine_formula():
    assert learning_rate(0, 100, 0.1) == pytest.approx(0.1)
    assert learning_rate(25, 100, 0.1) == pytest.approx(0.1 * (1 + 2**-0.5) / 2)
    assert learning_rate(50, 100, 0.1) == pytest.approx(0.05)
    assert learning_rate(100, 100, 0.1) == pytest.approx(0.0)
    assert learning_rate(70, 100, 0.1, "constant") == 0.1
    with pytest.raises(RashomonError, match="unknown learning-rate schedule 'step'"):
        learning_rate(0, 10, 0.1, "step")


# A hand-made validation curve: a one-epoch dip at index 2 (noise on a small split) and a
# broad minimum around index 7. Centred means of 3 (truncated at the ends):
# [0.95, 0.70, 0.667, 0.633, 0.783, 0.65, 0.55, 0.517, 0.583, 0.625]
CURVE = [1.0, 0.9, 0.2, 0.9, 0.8, 0.65, 0.5, 0.5, 0.55, 0.7]


def test_selection_rule_on_a_hand_made_curve():
    np.testing.assert_allclose(
        smoothed_losses(CURVE, 3),
        [0.95, 0.7, 2 / 3, 1.9 / 3, 2.35 / 3, 0.65, 0.55, 1.55 / 3, 1.75 / 3, 0.625],
    )
    assert select_checkpoint(CURVE, 1) == 2  # the raw minimum takes the dip
    assert select_checkpoint(CURVE, 3) == 7  # the smoothed minimum takes the broad one
    assert select_checkpoint([0.5, 0.4, 0.4], 1) == 1  # ties: the earliest
    with pytest.raises(RashomonError, match="positive odd number"):
        smoothed_losses(CURVE, 2)


def test_stopping_rule_on_a_hand_made_curve():
    # window 3: evaluation i's smoothed loss is final once i + 1 is known. After 6 evaluations
    # the complete ones are 0..4 with minimum 3 (0.633 < 0.667 of index 2): 1 past it.
    # After 7: complete 0..5, the minimum stays at 3 (0.633 < 0.65 of index 5): 2 past it.
    assert not should_stop(CURVE[:6], 3, 2)
    assert should_stop(CURVE[:7], 3, 2)
    assert not should_stop(CURVE[:1], 3, 1)  # no complete window yet
    assert should_stop(CURVE[:5], 1, 2)  # window 1: two evaluations past the raw minimum (2)
    assert not should_stop(CURVE[:4], 1, 2)


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
