"""Robustness of every model of a set: MedMNIST-C corruptions and L∞ adversarial attacks, run on
the networks; the arithmetic on the resulting arrays is `rashomon.metrics.robustness`.

What each number is (rows of `robustness_tables`, model = -1 is the MAP model):

- family "clean" / "corruption": `accuracy` and `auroc` of each model on the test split, clean
  (corruption "clean", severity 0) and under each MedMNIST-C corruption at each severity
  (`rashomon.data.corruptions`; the same seeded corrupted images for every model).
- family "summary":
  - `ce` per corruption: corruption error as Hendrycks & Dietterich (ICLR 2019),
    CE_c(f) = Σ_s E_{s,c}(f) / Σ_s E_{s,c}(MAP), errors E = 1 − accuracy over the severities
    s ≥ 1 audited; the MAP model is the baseline (their AlexNet), so its CE is 1.
  - `mce` (corruption "all"): mean of CE_c over corruptions. Below 1 = more robust than MAP.
  - `relative_ce` / `relative_mce`: Σ_s (E_{s,c}(f) − E_clean(f)) / Σ_s (E_{s,c}(MAP) −
    E_clean(MAP)), the degradation relative to the model's own clean error. NaN for a corruption
    whose MAP degradation is ≤ 0 (the ratio has no meaning there); the mean skips NaNs.
  - `accuracy` (corruption "all"): mean corrupted accuracy over corruptions and severities ≥ 1.
- family "attack": `accuracy` on adversarial test images (a seeded subset of
  `attack_max_images` of the audited images), ε on the [0, 1] pixel scale, FGSM or PGD
  (`rashomon.attacks`: 10 steps, α = 2.5 ε / 10, seeded random start), loss = cross-entropy:
  - mode "whitebox", model -1: the MAP model on its own FGSM/PGD examples.
  - mode "transfer": every set model on the MAP model's adversarial examples (black-box
    transfer from the MAP model; the attack every deployed alternative would face if the
    attacker knew only the MAP model).
  - mode "whitebox", model m ≥ 0: model m attacked with its own gradients, for a seeded subset
    of `whitebox_models` models (all M white-box attacks cost M× the MAP's).
  At ε = 0 every number equals the clean accuracy on the attack subset. Sets whose models are
  not plain networks (linearised "glm" sets varying more than the head) get no white-box rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from rashomon.attacks import ATTACKS, attack
from rashomon.data.corruptions import corrupted_raw, corruption_names, subset_indices
from rashomon.data.task import Task, images_to_tensor
from rashomon.errors import RashomonError
from rashomon.metrics.robustness import (
    corruption_errors,
    mean_over_corruptions,
    model_accuracy,
    model_auroc,
    patient_correct,
    relative_corruption_errors,
)
from rashomon.models.predict import model_probs
from rashomon.sets.base import ModelSet

COLUMNS = [
    "model", "is_map", "family", "corruption", "severity", "epsilon", "mode", "metric", "value"
]  # fmt: skip
MAP_INDEX = -1
# White-box attacks dominate evaluate's time: on a quiet 2-core CPU (cnn-small, BreastMNIST, 156
# images) 20 models took 65 s of an 82 s evaluate stage, so 5 attack with their own gradients
# by default and the rest of the set gets the MAP model's (transfer) attacks.
WHITEBOX_MODELS = 5
ATTACK_IMAGES = 256


def _one(model: torch.nn.Module, x: torch.Tensor, kind: str, device: str | torch.device):
    """One network's probabilities as a [1, N, C] set."""
    return model_probs(model, x, kind == "multilabel", device)[None]


def _same_network(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if a is b:
        return True
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(
        pa[k].shape == pb[k].shape and torch.equal(pa[k].detach().cpu(), pb[k].detach().cpu())
        for k in pa
    )


@torch.no_grad()
def head_set_probs(
    mset: ModelSet, x: torch.Tensor, kind: str, device: str | torch.device, batch: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MAP [1, N, C], set [M, N, C]) probabilities of a set varying only the head, from one body
    pass: the corruption loop would otherwise run the body twice per corrupted split."""
    base = mset.base.eval().to(device)
    parts = mset.unflatten(mset.samples)
    w = parts.get("head.weight", base.head.weight.detach().cpu()[None].expand(len(mset), -1, -1))
    b = parts.get("head.bias")
    if b is None and base.head.bias is not None:
        b = base.head.bias.detach().cpu()[None].expand(len(mset), -1)
    M, C, D = w.shape
    w_flat = w.reshape(M * C, D).to(device)
    b_dev = None if b is None else b.to(device)
    map_out, set_out = [], torch.empty(M, len(x), C)
    for i in range(0, len(x), batch):
        feats = base.features(x[i : i + batch].to(device))
        map_out.append(base.head(feats).float().cpu())
        logits = (feats @ w_flat.T).reshape(len(feats), M, C)
        if b_dev is not None:
            logits = logits + b_dev[None]
        set_out[:, i : i + batch] = logits.transpose(0, 1).float().cpu()
    map_logits = torch.cat(map_out)[None] if map_out else torch.empty(1, 0, C)
    if kind == "multilabel":
        return torch.sigmoid(map_logits), torch.sigmoid(set_out)
    return map_logits.softmax(-1), set_out.softmax(-1)


def whitebox_subset(num_models: int, count: int, seed: int) -> np.ndarray:
    """Sorted indices of the `count` set models attacked white-box (seeded; all if fewer)."""
    if count >= num_models:
        return np.arange(num_models)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA77AC])
    return np.sort(rng.choice(num_models, size=max(0, count), replace=False))


class _Rows:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, values: np.ndarray, models: Sequence[int], **key: Any) -> None:
        for m, val in zip(models, np.asarray(values, dtype=np.float64).ravel(), strict=True):
            self.rows.append(
                (
                    int(m), bool(m == MAP_INDEX), key["family"], key["corruption"],
                    key.get("severity", math.nan), key.get("epsilon", math.nan),
                    key.get("mode", ""), key["metric"], float(val),
                )
            )  # fmt: skip

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def _scores(probs: torch.Tensor, y: torch.Tensor, kind: str) -> dict[str, np.ndarray]:
    return {"accuracy": model_accuracy(probs, y, kind), "auroc": model_auroc(probs, y, kind)}


def robustness_tables(
    mset: ModelSet,
    map_model: torch.nn.Module,
    task: Task,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    attacks: Sequence[str] = ATTACKS,
    attack_epsilons: Sequence[float] = (0.0, 1 / 255, 2 / 255, 4 / 255),
    seed: int = 0,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    *,
    whitebox_models: int = WHITEBOX_MODELS,
    attack_max_images: int | None = ATTACK_IMAGES,
    split: str = "test",
    max_memory: str | int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Tidy robustness table of the MAP model (model -1) and every model of `mset`.

    Columns: model, is_map, family (clean | corruption | summary | attack), corruption (name,
    "clean", an attack name, or "all"), severity, epsilon (pixel scale), mode (attacks:
    whitebox | transfer), metric, value; the module docstring says what each number is.
    `corruptions=None` takes the dataset's MedMNIST-C list, `[]` none; corrupted images are
    cached in `cache_dir`. `max_images` audits a seeded subset of the split; attacks run on a
    further seeded subset of `attack_max_images` of those (None = all), their ε = 0 rows being
    the clean accuracy on that subset. `df.attrs["timings"]` holds seconds per phase and the
    sizes audited (images, attack_images, models, whitebox_models).
    """
    kind = task.kind
    multilabel = kind == "multilabel"
    names = corruption_names(task.name) if corruptions is None else list(corruptions)
    sevs = [int(s) for s in severities]
    for a in attacks:
        if a not in ATTACKS:
            raise RashomonError(f"unknown attack {a!r}; choose from: {', '.join(ATTACKS)}")
    s = task.split(split)
    idx = subset_indices(len(s), max_images, seed)
    x, y = s.x[idx], s.y[idx]
    set_ids = list(range(len(mset)))
    rows = _Rows()
    timings: dict[str, float] = {"images": len(idx), "models": len(mset)}

    shared_body = _same_network(map_model, mset.base) and mset.head_only

    def predict_all(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if shared_body:
            return head_set_probs(mset, inputs, kind, device)
        return (
            _one(map_model, inputs, kind, device),
            mset.predict(inputs, device=str(device), max_memory=max_memory),
        )

    def add_scores(map_p, set_p, **key) -> dict[str, np.ndarray]:
        out = {}
        for who, probs, ids in (("map", map_p, [MAP_INDEX]), ("set", set_p, set_ids)):
            for metric, vals in _scores(probs, y, kind).items():
                rows.add(vals, ids, metric=metric, **key)
                out[f"{who}_{metric}"] = vals
        return out

    t0 = time.perf_counter()
    clean = add_scores(*predict_all(x), family="clean", corruption="clean", severity=0)
    timings["clean_s"] = time.perf_counter() - t0

    # ---- corruptions
    gen_s = pred_s = 0.0
    audited = [sv for sv in sevs if sv >= 1]
    set_err = np.full((len(mset), len(names), len(audited)), np.nan)
    map_err = np.full((len(names), len(audited)), np.nan)
    # per-patient correctness summed over every (corruption, severity ≥ 1): what selecting the
    # most robust model on corrupted validation, with a bootstrap over patients, needs
    correct = np.zeros((1 + len(mset), len(idx)))
    combos = [(c, sv) for c in names for sv in sevs]
    if progress and combos:
        from tqdm.auto import tqdm

        combos = tqdm(combos, desc="corruptions", leave=False)
    for name, sv in combos:
        t = time.perf_counter()
        raw = corrupted_raw(task, split, name, sv, seed, cache_dir, max_images)
        xc = images_to_tensor(raw)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        predicted = predict_all(xc)
        sc = add_scores(*predicted, family="corruption", corruption=name, severity=sv)
        pred_s += time.perf_counter() - t
        if sv >= 1:
            map_p, set_p = predicted
            correct[0] += patient_correct(map_p, y, kind)[0]
            correct[1:] += patient_correct(set_p, y, kind)
            k, j = names.index(name), audited.index(sv)
            set_err[:, k, j] = 1 - sc["set_accuracy"]
            map_err[k, j] = 1 - sc["map_accuracy"][0]
    timings["corruption_generate_s"], timings["corruption_predict_s"] = gen_s, pred_s
    if names and audited:
        all_err = np.concatenate([map_err[None], set_err])
        all_ids = [MAP_INDEX, *set_ids]
        clean_err = 1 - np.concatenate([clean["map_accuracy"], clean["set_accuracy"]])
        ce = corruption_errors(all_err, map_err)
        rce = relative_corruption_errors(all_err, clean_err, map_err, clean_err[0])
        for k, name in enumerate(names):
            rows.add(ce[:, k], all_ids, family="summary", corruption=name, metric="ce")
            rows.add(rce[:, k], all_ids, family="summary", corruption=name, metric="relative_ce")
        for metric, vals in (
            ("mce", mean_over_corruptions(ce)),
            ("relative_mce", mean_over_corruptions(rce)),
            ("accuracy", 1 - all_err.reshape(len(all_ids), -1).mean(axis=1)),
        ):
            rows.add(vals, all_ids, family="summary", corruption="all", metric=metric)

    # ---- attacks
    att = subset_indices(len(idx), attack_max_images, seed + 1)
    timings["attack_images"] = len(att)
    _attack_rows(
        rows, timings, mset, map_model, x[att], y[att], attacks, attack_epsilons, seed, device,
        multilabel, whitebox_models, max_memory,
    )  # fmt: skip
    df = rows.frame()
    if names and audited:
        # row 0 the MAP model, then the set's models; columns the audited images `idx` of the split
        df.attrs["patient_correct"] = correct / (len(names) * len(audited))
        df.attrs["patient_index"] = np.asarray(idx)
    df.attrs["timings"] = {
        k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()
    }
    return df


def _attack_rows(
    rows, timings, mset, map_model, x, y, attacks, epsilons, seed, device, multilabel,
    whitebox_models, max_memory,
) -> None:  # fmt: skip
    kind = "multilabel" if multilabel else "multiclass"
    set_ids = list(range(len(mset)))
    can_whitebox = not (mset.kind == "glm" and not mset.head_only)
    chosen = whitebox_subset(len(mset), whitebox_models, seed) if can_whitebox else np.arange(0)
    timings["whitebox_models"] = len(chosen)
    map_model.eval().to(device)
    nets: dict[int, torch.nn.Module] = {}  # white-box models, built once
    t_map = t_transfer = t_white = 0.0
    clean: dict[str, np.ndarray] = {}
    for name in attacks:
        for eps in epsilons:
            key = {
                "family": "attack",
                "corruption": name,
                "epsilon": float(eps),
                "metric": "accuracy",
            }
            if eps == 0 and clean:  # no perturbation: same numbers for every attack
                rows.add(clean["map"], [MAP_INDEX], mode="whitebox", **key)
                rows.add(clean["transfer"], set_ids, mode="transfer", **key)
                rows.add(clean["whitebox"], chosen, mode="whitebox", **key)
                continue
            t = time.perf_counter()
            adv = attack(
                name, map_model, x, y, eps, seed=seed, device=device, multilabel=multilabel
            )
            map_acc = model_accuracy(_one(map_model, adv, kind, device), y, kind)
            t_map += time.perf_counter() - t
            t = time.perf_counter()
            set_acc = model_accuracy(
                mset.predict(adv, device=device, max_memory=max_memory), y, kind
            )
            t_transfer += time.perf_counter() - t
            t = time.perf_counter()
            white = []
            for m in chosen:
                net = nets.setdefault(int(m), mset.model(int(m)).to(device))
                adv_m = attack(
                    name, net, x, y, eps, seed=seed, device=device, multilabel=multilabel
                )
                white.append(model_accuracy(_one(net, adv_m, kind, device), y, kind)[0])
            t_white += time.perf_counter() - t
            white_acc = np.asarray(white, dtype=np.float64)
            rows.add(map_acc, [MAP_INDEX], mode="whitebox", **key)
            rows.add(set_acc, set_ids, mode="transfer", **key)
            rows.add(white_acc, chosen, mode="whitebox", **key)
            if eps == 0:
                clean = {"map": map_acc, "transfer": set_acc, "whitebox": white_acc}
    timings["attack_map_s"] = t_map
    timings["attack_transfer_s"] = t_transfer
    timings["attack_whitebox_s"] = t_white
