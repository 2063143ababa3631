"""Imbalanced tasks by default: class weights resolved once ("auto"), checkpoint selection and
the Rashomon filter on the class-weighted objective the model was trained on."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rashomon.errors import RashomonError
from rashomon.models.train import (
    IMBALANCE_RATIO,
    evaluate_loss,
    resolve_class_weights,
)
from rashomon.sets.rashomon import model_scores, rashomon_mask


def _with_train_labels(task, y):
    other = copy.copy(task)
    other.__dict__.pop("_fingerprints", None)
    train = copy.copy(task.train)
    train.y = torch.as_tensor(y)
    other.train = train
    return other


def test_auto_weights_only_imbalanced_tasks(tiny_task):
    n = len(tiny_task.train)
    balanced = _with_train_labels(tiny_task, np.arange(n) % 2)
    assert resolve_class_weights(balanced, "auto") is None
    # 3:1 is past the 2:1 ratio: weighted, inverse frequency (N / (C · count))
    y = (np.arange(n) % 4 == 0).astype(np.int64)
    skewed = _with_train_labels(tiny_task, y)
    w = resolve_class_weights(skewed, "auto")
    counts = np.bincount(y)
    assert counts.max() >= IMBALANCE_RATIO * counts.min()
    np.testing.assert_allclose(w.numpy(), n / (2 * counts), rtol=1e-6)
    assert resolve_class_weights(skewed, False) is None
    assert resolve_class_weights(balanced, True) is not None
    with pytest.raises(RashomonError, match="auto, true or false"):
        resolve_class_weights(skewed, "sometimes")


def test_weighted_scores_by_hand():
    # two models, three patients of classes 0, 1, 1; weights 3 (class 0) and 0.5 (class 1)
    p = np.array([[[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]], [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])
    y = np.array([0, 1, 1])
    w = np.array([3.0, 0.5])
    scores = model_scores(p, y, w)
    hand0 = -(3 * np.log(0.8) + 0.5 * np.log(0.6) + 0.5 * np.log(0.9)) / 3
    hand1 = -(3 + 0.5 + 0.5) * np.log(0.5) / 3
    np.testing.assert_allclose(scores["loss"], [hand0, hand1])
    np.testing.assert_allclose(model_scores(p, y)["loss"][0], -np.log([0.8, 0.6, 0.9]).mean())
    # the filter follows the weighted loss: model 1's loss is 2.48× model 0's unweighted and
    # 2.84× weighted, so ε = 1.6 (a bound of 2.6×) keeps it only unweighted
    assert (-np.log(0.5)) / (-np.log([0.8, 0.6, 0.9]).mean()) == pytest.approx(2.477, abs=1e-3)
    assert hand1 / hand0 == pytest.approx(2.837, abs=1e-3)
    ref = p[0]
    assert rashomon_mask(p, y, 1.6, ref=ref, min_models=0).tolist() == [True, True]
    weighted = rashomon_mask(p, y, 1.6, ref=ref, min_models=0, class_weight=w)
    assert weighted.tolist() == [True, False]
    with pytest.raises(RashomonError, match="positive numbers"):
        model_scores(p, y, [1.0, -1.0])


def test_selection_loss_is_the_weighted_training_loss(tiny_task):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2))
    x, y = tiny_task.val.x, tiny_task.val.y
    w = torch.tensor([2.0, 0.25])
    loss, _ = evaluate_loss(net, x, y, "binary", "cpu", class_weight=w)
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(net(x), y, reduction="none")
    assert loss == pytest.approx(float((w[y] * nll).mean()), rel=1e-6)
    probs = torch.softmax(net(x), -1).detach().numpy()[None]
    assert model_scores(probs, y.numpy(), w)["loss"][0] == pytest.approx(loss, rel=1e-5)
