"""Adversarial attacks and per-model robustness: hand-computed values and a small real run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rashomon.attacks import attack, fgsm, pgd
from rashomon.errors import RashomonError
from rashomon.evaluate import robustness as ER
from rashomon.metrics import robustness as R
from rashomon.predict import model_probs

# --------------------------------------------------------------------------- arithmetic


def test_corruption_error_by_hand():
    # 2 models, 2 corruptions, 2 severities; baseline errors sum to 0.3 and 0.5
    errors = np.array([[[0.1, 0.2], [0.2, 0.4]], [[0.3, 0.3], [0.0, 0.25]]])
    baseline = np.array([[0.1, 0.2], [0.2, 0.3]])
    ce = R.corruption_errors(errors, baseline)
    np.testing.assert_allclose(ce, [[0.3 / 0.3, 0.6 / 0.5], [0.6 / 0.3, 0.25 / 0.5]])
    np.testing.assert_allclose(R.mean_corruption_error(errors, baseline), [1.1, 1.25])
    # the baseline against itself has mCE 1
    np.testing.assert_allclose(R.mean_corruption_error(baseline[None], baseline), [1.0])


def test_corruption_error_nan_when_baseline_is_perfect():
    errors = np.array([[[0.1, 0.2], [0.0, 0.1]]])
    baseline = np.array([[0.0, 0.0], [0.1, 0.1]])
    ce = R.corruption_errors(errors, baseline)
    assert np.isnan(ce[0, 0]) and ce[0, 1] == pytest.approx(0.5)
    assert R.mean_corruption_error(errors, baseline)[0] == pytest.approx(0.5)


def test_relative_corruption_error_by_hand():
    errors = np.array([[[0.2, 0.4], [0.1, 0.1]]])
    clean = np.array([0.1])
    baseline = np.array([[0.15, 0.35], [0.05, 0.1]])  # baseline clean error 0.1
    rce = R.relative_corruption_errors(errors, clean, baseline, 0.1)
    # corruption 0: (0.1 + 0.3) / (0.05 + 0.25); corruption 1: MAP degrades by -0.05 → NaN
    assert rce[0, 0] == pytest.approx(0.4 / 0.3)
    assert np.isnan(rce[0, 1])


def test_errors_must_be_rates():
    with pytest.raises(RashomonError, match="error rates"):
        R.corruption_errors(np.full((1, 1, 1), 2.0), np.ones((1, 1)))
    with pytest.raises(RashomonError, match=r"\[M, K, S\]"):
        R.corruption_errors(np.zeros((1, 2, 2)), np.zeros((2, 3)))


def test_multilabel_accuracy_by_hand():
    probs = np.array([[[0.9, 0.2], [0.4, 0.7]], [[0.1, 0.1], [0.1, 0.1]]])
    y = np.array([[1, 0], [1, 1]])
    np.testing.assert_allclose(R.multilabel_accuracy(probs, y), [3 / 4, 1 / 4])


# --------------------------------------------------------------------------- attacks


def _logistic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


def test_fgsm_step_is_epsilon_times_gradient_sign():
    model = _logistic()
    x = torch.tensor([[[[0.1, -0.2], [0.3, 0.0]]], [[[-0.5, 0.4], [0.2, -0.1]]]])
    y = torch.tensor([0, 1])
    lin = model[1]
    with torch.no_grad():
        p = torch.softmax(x.flatten(1) @ lin.weight.T + lin.bias, dim=1)
        grad = (p - nn.functional.one_hot(y, 2).float()) @ lin.weight  # dCE/dx by hand
    eps = 4 / 255
    adv = fgsm(model, x, y, eps)
    # pixel scale: (x_adv - x) · std = ε · sign(grad); no clamping for interior x
    torch.testing.assert_close((adv - x).flatten(1) * 0.5, eps * grad.sign(), rtol=0, atol=1e-7)


def test_epsilon_zero_leaves_inputs_unchanged():
    model = _logistic()
    x = torch.rand(5, 1, 2, 2) * 2 - 1
    y = torch.tensor([0, 1, 1, 0, 1])
    assert torch.equal(fgsm(model, x, y, 0.0), x)
    assert torch.equal(pgd(model, x, y, 0.0), x)


def test_pgd_stays_in_the_ball_and_valid_range_and_is_seeded():
    model = _logistic()
    x = torch.tensor([[[[1.0, -1.0], [0.99, 0.0]]]]).repeat(3, 1, 1, 1)
    y = torch.tensor([0, 1, 0])
    eps = 8 / 255
    a = pgd(model, x, y, eps, seed=3)
    assert (a - x).abs().max() <= eps / 0.5 + 1e-6
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, pgd(model, x, y, eps, seed=3))
    start_only = pgd(model, x, y, eps, seed=4, steps=1, alpha=0.0)
    assert not torch.equal(start_only, pgd(model, x, y, eps, seed=5, steps=1, alpha=0.0))


def test_attack_rejects_bad_input():
    with pytest.raises(RashomonError, match="unknown attack"):
        attack("cw", _logistic(), torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), 0.1)
    with pytest.raises(RashomonError, match="pixel scale"):
        fgsm(_logistic(), torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), 2.0)


# --------------------------------------------------------------------------- trained model


@pytest.fixture(scope="module")
def trained(task_breast):
    from rashomon.models.train import train

    model = train(task_breast, "mlp", epochs=4, seed=0, progress=False)
    return task_breast, model


@pytest.fixture(scope="module")
def head_set(trained):
    from rashomon.sets.base import ModelSet, flat_parameters

    task, model = trained
    names = ["head.weight", "head.bias"]
    theta = flat_parameters(model, names)
    noise = torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0))
    info = {"name": task.name, "kind": task.kind, "num_classes": task.num_classes}
    return ModelSet(model, theta + 0.05 * noise, names, task=info)


def _acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_pgd_at_most_fgsm_at_most_clean(trained):
    task, model = trained
    x, y = task.test.x, task.test.y
    clean = _acc(model, x, y)
    assert _acc(model, attack("fgsm", model, x, y, 0.0), y) == clean
    accs = []
    for eps in (2 / 255, 4 / 255, 16 / 255):
        f = _acc(model, attack("fgsm", model, x, y, eps), y)
        p = _acc(model, attack("pgd", model, x, y, eps, seed=0), y)
        assert p <= f <= clean
        accs.append(p)
    assert accs[-1] < clean  # 16/255 hurts a trained model (4/255 already does on BreastMNIST)


def test_robustness_tables_values(trained, head_set, tmp_path):
    task, model = trained
    mset = head_set
    df = ER.robustness_tables(
        mset, model, task, corruptions=["brightness_down", "speckle_noise"], severities=[0, 1, 5],
        attacks=["fgsm", "pgd"], attack_epsilons=[0.0, 2 / 255], seed=0, cache_dir=tmp_path,
        device="cpu", max_images=60, whitebox_models=2,
    )  # fmt: skip
    assert list(df.columns) == ER.COLUMNS
    t = df.attrs["timings"]
    assert t["images"] == t["attack_images"] == 60
    assert t["models"] == 4 and t["whitebox_models"] == 2
    from rashomon.data.corruptions import subset_indices

    idx = subset_indices(len(task.test), 60, 0)
    x, y = task.test.x[idx], task.test.y[idx]

    def rows(**key):
        sel = np.ones(len(df), bool)
        for k, val in key.items():
            sel &= (df[k] == val).to_numpy()
        return df[sel].set_index("model")["value"]

    clean = rows(family="clean", metric="accuracy")
    assert clean[-1] == pytest.approx(_acc(model, x, y))
    set_p = mset.predict(x)
    np.testing.assert_allclose(clean.drop(-1).to_numpy(), (set_p.argmax(-1) == y).float().mean(1))
    from sklearn.metrics import roc_auc_score

    auc = rows(family="clean", metric="auroc")
    assert auc[2] == pytest.approx(roc_auc_score(y.numpy(), set_p[2, :, 1].numpy()))

    for name in ("brightness_down", "speckle_noise"):
        s0 = rows(family="corruption", corruption=name, severity=0, metric="accuracy")
        assert s0.equals(clean)  # severity 0 = clean accuracy, every model
    # per-patient correctness over the 2 corruptions x 2 severities ≥ 1 averages to each model's
    # corrupted accuracy ("all"), MAP first: what robustness selection resamples
    correct = df.attrs["patient_correct"]
    assert correct.shape == (5, 60) and set(np.unique(correct * 4)) <= {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(df.attrs["patient_index"], idx)
    overall = rows(family="summary", corruption="all", metric="accuracy")
    np.testing.assert_allclose(correct.mean(1), overall.loc[[-1, 0, 1, 2, 3]].to_numpy())
    # CE by hand for model 1 and the MAP model (baseline → 1)
    err = {m: [] for m in (-1, 1)}
    for name in ("brightness_down", "speckle_noise"):
        for m in err:
            err[m].append(
                sum(
                    1 - rows(family="corruption", corruption=name, severity=s, metric="accuracy")[m]
                    for s in (1, 5)
                )
            )
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where the MAP makes no error
        ce1 = np.array([err[1][k] / err[-1][k] if err[-1][k] > 0 else np.nan for k in range(2)])
    np.testing.assert_allclose(rows(family="summary", metric="ce").loc[1].to_numpy(), ce1)
    mce = rows(family="summary", corruption="all", metric="mce")
    if np.isfinite(ce1).any():
        assert mce[1] == pytest.approx(np.nanmean(ce1)) and mce[-1] == pytest.approx(1.0)
    else:
        assert np.isnan(mce[1]) and np.isnan(mce[-1])

    # attacks: ε = 0 equals clean; transfer = set on the MAP model's adversarial examples
    for name in ("fgsm", "pgd"):
        z = rows(family="attack", corruption=name, epsilon=0.0, mode="transfer")
        np.testing.assert_allclose(z.to_numpy(), clean.drop(-1).to_numpy())
    adv = attack("fgsm", model, x, y, 2 / 255)
    transfer = rows(family="attack", corruption="fgsm", epsilon=2 / 255, mode="transfer")
    np.testing.assert_allclose(
        transfer.to_numpy(), (mset.predict(adv).argmax(-1) == y).float().mean(1), atol=1e-6
    )
    white = rows(family="attack", corruption="fgsm", epsilon=2 / 255, mode="whitebox")
    assert white[-1] == pytest.approx(_acc(model, adv, y))
    chosen = [m for m in white.index if m >= 0]
    assert len(chosen) == 2
    m = chosen[0]
    net = mset.model(m)
    assert white[m] == pytest.approx(_acc(net, attack("fgsm", net, x, y, 2 / 255), y))
    assert df.loc[df.model == -1, "is_map"].all() and not df.loc[df.model >= 0, "is_map"].any()


def test_head_set_probs_match_separate_predictions(trained, head_set):
    task, model = trained
    x = task.test.x[:50]
    map_p, set_p = ER.head_set_probs(head_set, x, task.kind, "cpu", batch=16)
    torch.testing.assert_close(map_p, model_probs(model, x, task.kind == "multilabel")[None])
    torch.testing.assert_close(set_p, head_set.predict(x), rtol=1e-5, atol=1e-6)
