"""A synthetic run directory that follows rashomon.schema (docs/run-directory.md), for report
development and tests.

The probabilities come from a seeded simulation, not from a network: every patient has a latent
margin (its distance from the decision boundary); each of the M sampled models adds a fixed bias
and fixed per-patient noise to that margin, so patients near the boundary get different labels
from different models (predictive multiplicity), and models with more noise have a higher
validation loss and drop out of the Rashomon set first. The evaluate and decide tables are then
computed from those probabilities by the stages' own functions (`rashomon.evaluate`,
`rashomon.metrics`, `rashomon.decide.decide_all`), and the tables no stage function can compute
without a network (history, per_model, survival, robustness, LSI) are written under the names
`rashomon.schema` defines: a fake run and a real run have the same files and columns.

When a real Task is given its labels, group codes and sizes are used (so images in the report
show the real patients); `train/model.pt` is a real, untrained checkpoint of the configured
architecture (the report reads its spec and parameter count, never its predictions).

Usage: `python tests/fake_run.py OUT_DIR` (uses $RASHOMON_DATA for the real labels if set).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from rashomon import schema as S

EPSILONS = (0.005, 0.01, 0.02, 0.05)
EPSILON = 0.02
CORRUPTIONS = ("gaussian_noise", "contrast_down", "pixelate")
ATTACKS = ("fgsm", "pgd")
ATTACK_EPSILONS = (0.0, 1 / 255, 2 / 255, 4 / 255)
ENSEMBLE_SIZES = (1, 3, 5, 10, 20)
FLAGS = ("flag_recall", "flag_precision")
AGREEMENT = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BOOTSTRAP = 200  # resamples of the spread table and the selection gains (the stages use 1000)
ROBUSTNESS_MODELS = 40
SYNTHETIC_ATTRIBUTES = {"intensity": ["low", "mid", "high"], "random": ["a", "b"]}

# The validate stage's figures, hand-chosen (not computed from the simulation, unlike the other
# stages: retraining needs networks), so that tests can state what the report must show: 25 of
# 30 retrained networks within ε flag 218 of the 624 PneumoniaMNIST test patients (34.9 %);
# h = 12 of the set's models find 60 % of the patients 12 retrained networks flag, two
# retrained halves agree on 80 % (ratio 0.75); the set's precision 90 % against the halves' 83 %
# (ratio 90/83); 9 retrained networks show the whole set's ambiguity, 0.22 (near the simulated
# set's on that task).
VALIDATE_FIGURES = {
    "epsilon": 0.02,
    "retrained_in_set": 25,
    "retrained_flags": 218,
    "matched_models": 12,
    "flag_recall_ratio": 0.75,
    "flag_precision_ratio": 1.0843,
    "flip_rate_ap": 0.72,
    "ambiguity_set": 0.22,
    "retrained_models_for_ambiguity": 9,
    "retrained": 30,
    "reused": 0,
    "train_seconds": 900.0,
    "flag_recall_matched": 0.6,
    "flag_recall_matched_sd": 0.08,
    "flag_precision_matched": 0.9,
    "flag_precision_matched_sd": 0.05,
    "flag_recall_ceiling": 0.8,
    "flag_precision_ceiling": 0.83,
    "flip_rate_spearman": 0.61,
    "flip_rate_ap_base_rate": 0.3494,
    "ambiguity_matched": 0.09,
    "flag_recall_full": 0.46,
    "flag_precision_full": 0.73,
    "spearman_disagreement": 0.6,
    "matched_rounds": 200,
    "matched_with_replacement": False,
    "ambiguity_retrained": 0.3494,
    "ceiling": {
        "flag_recall": 0.8,
        "flag_precision": 0.83,
        "spearman_disagreement": 0.8,
        "ambiguity_half": 0.27,
        "flag_recall_sd": 0.06,
        "flag_precision_sd": 0.07,
        "spearman_disagreement_sd": 0.03,
        "ambiguity_half_sd": 0.02,
        "models_per_half": 12,
        "rounds": 200,
    },
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _split_arrays(task, split: str, n: int, rng: np.random.Generator):
    """Labels and group codes of one split: the real task's, or synthetic ones."""
    if task is not None:
        s = task.split(split)
        y = s.y.numpy().astype(int)
        groups = {a: s.groups[a].numpy().astype(int) for a in task.attributes}
        return y, groups
    y = (rng.random(n) < 0.625).astype(int)
    groups = {"intensity": rng.integers(0, 3, n), "random": rng.integers(0, 2, n)}
    return y, groups


def _attribute_info(task) -> tuple[dict[str, bool], dict[str, list[str]]]:
    if task is not None:
        derived = {a: info.derived for a, info in task.attributes.items()}
        levels = {a: list(info.levels) for a, info in task.attributes.items()}
        return derived, levels
    return {a: True for a in SYNTHETIC_ATTRIBUTES}, dict(SYNTHETIC_ATTRIBUTES)


def _simulate_probs(y, groups, bias, noise_scale, rng, margin_rng):
    """P[M+1, N, 2]; row 0 is the MAP model (no bias, no noise)."""
    n = len(y)
    sign = 2 * y - 1
    # Harder patients in the 'low' intensity tertile: a group difference worth reporting.
    hardness = np.where(groups["intensity"] == 0, 1.25, 1.0)
    margin = sign * margin_rng.normal(1.6, 1.4, n) / hardness
    eps = rng.standard_normal((len(bias), n))
    logits = margin[None, :] + bias[:, None] + noise_scale[:, None] * eps
    logits = np.concatenate([margin[None, :], logits])
    p1 = _sigmoid(logits)
    return np.stack([1 - p1, p1], axis=-1).astype(np.float32)


def _nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(np.take_along_axis(probs, y[None, :, None], axis=2)[..., 0], 1e-7, 1)
    return -np.log(p).mean(axis=1)


def _accuracy(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (probs.argmax(-1) == y[None]).mean(axis=1)


def _write(run_dir: Path, key: str, table: pd.DataFrame) -> None:
    table.to_csv(S.table_path(run_dir, key), index=False)


def write_fake_run(
    run_dir: Path,
    task=None,
    *,
    models: int = 200,
    seed: int = 0,
    stages: tuple[str, ...] = ("train", "sample", "evaluate", "decide"),
    robustness: bool = True,
    data_root: str | None = None,
    arch: str = "cnn-small",
    dataset: str | None = None,
    validate: dict | None = None,
) -> Path:
    """Write a synthetic run directory; returns it. `task` (a real Task) supplies labels/groups.
    With "validate" in `stages`, the validate stage's files hold `validate` (default
    VALIDATE_FIGURES): its summary.json as given (a null figure stays null)."""
    import torch

    from rashomon.config import RunConfig, dump_config
    from rashomon.models.registry import build_model, count_parameters
    from rashomon.models.train import save_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # a folder task's dataset is its folder (its name is no MedMNIST name)
    name = dataset or (task.name if task is not None else "pneumoniamnist")
    cfg = RunConfig.model_validate(
        {
            "seed": seed,
            "data": {"dataset": name, "root": data_root},
            "train": {"arch": arch, "epochs": 20},
            "sample": {
                "source": "laplace",
                "models": models,
                "epsilons": list(EPSILONS),
                "epsilon": EPSILON,
            },
            "evaluate": {
                "corruptions": list(CORRUPTIONS),
                "attacks": list(ATTACKS),
                "attack_epsilons": list(ATTACK_EPSILONS),
                "bootstrap": BOOTSTRAP,
            },
            "decide": {"ensemble_sizes": list(ENSEMBLE_SIZES), "agreement": list(AGREEMENT)},
        }
    )
    (run_dir / S.CONFIG).write_text(dump_config(cfg))
    env = {
        "python": sys.version.split()[0],
        "platform": "synthetic",
        "packages": {},
        "seed": seed,
        "device": "cpu",
    }
    (run_dir / S.ENVIRONMENT).write_text(json.dumps(env, indent=2))
    records = {}

    # ---- shared simulation -------------------------------------------------------------------
    y_val, g_val = _split_arrays(task, "val", 524, rng)
    y_test, g_test = _split_arrays(task, "test", 624, rng)
    derived, levels = _attribute_info(task)
    n_train = len(task.train) if task is not None else 4708
    bias = rng.normal(0.0, 0.12, models)
    noise_scale = rng.uniform(0.02, 0.55, models)
    # Same per-model bias/noise scale on both splits: a model noisy on val is noisy on test.
    pv = _simulate_probs(
        y_val,
        g_val,
        bias,
        noise_scale,
        np.random.default_rng(seed + 1),
        np.random.default_rng(seed + 2),
    )
    pt = _simulate_probs(
        y_test,
        g_test,
        bias,
        noise_scale,
        np.random.default_rng(seed + 3),
        np.random.default_rng(seed + 4),
    )
    map_pv, set_pv = pv[0], pv[1:]
    map_pt, set_pt = pt[0], pt[1:]
    val_loss = _nll(set_pv, y_val)
    map_val_loss = float(_nll(map_pv[None], y_val)[0])
    rel = val_loss / map_val_loss - 1.0
    in_set = {e: rel <= e for e in EPSILONS}
    keep = in_set[EPSILON]
    idx = np.flatnonzero(keep)

    from rashomon.run import data_identity, make_record

    data = data_identity(cfg, run_dir)

    def write_record(stage: str) -> None:
        # Real records (config hash, data fingerprint, upstream ids): the fake run's stages are
        # current for its config, as a finished run's would be.
        records[stage] = make_record(cfg, stage, records, data, seconds=1.0)

    # ---- train -------------------------------------------------------------------------------
    if "train" in stages:
        d = run_dir / "train"
        d.mkdir(exist_ok=True)
        model = build_model(arch, 1, 2, 28)
        save_checkpoint(model, d / S.CHECKPOINT, task)
        epochs = 14
        ep = np.arange(1, epochs + 1)
        train_loss = 0.22 + 0.45 * np.exp(-ep / 3.0) + rng.normal(0, 0.005, epochs)
        vloss = map_val_loss + 0.35 * np.exp(-ep / 2.5) + 0.004 * np.maximum(ep - 9, 0)
        vacc = ((map_pv[:, 1] > 0.5) == y_val).mean() - 0.12 * np.exp(-ep / 2.5)
        steps = 37 * ep  # 37 batches an epoch
        lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * (steps - 1) / steps[-1]))  # cosine schedule
        history = {
            S.EPOCH: ep,
            S.STEP: steps,
            S.LR: lr,
            S.TRAIN_LOSS: train_loss,
            S.VAL_LOSS: vloss,
            S.VAL_ACC: vacc,
            S.SELECTED: ep == ep[np.argmin(vloss)],
        }
        _write(run_dir, "history", pd.DataFrame(history))
        summary = {"parameters": count_parameters(model), "epochs_run": epochs, "seconds": 41.2}
        for split, p, y in (("val", map_pv, y_val), ("test", map_pt, y_test)):
            summary[f"{split}_accuracy"] = round(float(((p[:, 1] > 0.5) == y).mean()), 4)
            summary[f"{split}_auroc"] = round(float(roc_auc_score(y, p[:, 1])), 4)
        (d / S.SUMMARY).write_text(json.dumps(summary, indent=2))
        write_record("train")

    # ---- sample ------------------------------------------------------------------------------
    if "sample" in stages:
        d = run_dir / "sample"
        d.mkdir(exist_ok=True)
        torch.save({"synthetic": True, "M": models}, d / S.SET)
        np.save(d / S.probs_file("val"), set_pv)
        np.save(d / S.probs_file("test"), set_pt)
        np.save(d / S.map_probs_file("val"), map_pv)
        np.save(d / S.map_probs_file("test"), map_pt)
        np.save(d / S.IN_SET, keep)
        dist = np.sqrt(noise_scale**2 + bias**2) * rng.uniform(0.8, 1.2, models)
        per_model = pd.DataFrame(
            {
                S.MODEL: np.arange(models),
                S.MODE: 0,
                S.VAL_LOSS: val_loss,
                S.VAL_ACCURACY: _accuracy(set_pv, y_val),
                S.TEST_LOSS: _nll(set_pt, y_test),
                S.TEST_ACCURACY: _accuracy(set_pt, y_test),
                S.DISTANCE_L2: dist * 3.1,
                S.DISTANCE_REL: dist * 0.021,
            }
        )
        for e in EPSILONS:
            per_model[S.in_set_column(e)] = in_set[e]
        _write(run_dir, "per_model", per_model)
        survival = [
            {
                S.EPSILON: e,
                S.ON: "loss",
                S.MODELS_IN_SET: int(in_set[e].sum()),
                S.MODELS: models,
                S.THRESHOLD: map_val_loss * (1 + e),
            }
            for e in EPSILONS
        ]
        _write(run_dir, "survival", pd.DataFrame(survival))
        summary = {
            "source": "laplace",
            "options": cfg.sample.resolved_options.model_dump(mode="json"),
            "models": models,
            "epsilon": EPSILON,
            "on": "loss",
            "models_in_set": int(keep.sum()),
            "head_only": True,  # a last-layer Laplace set
            "fit_seconds": 3.4,
            "sample_seconds": 0.8,
            "predict_seconds": 5.1,
        }
        (d / S.SUMMARY).write_text(json.dumps(summary, indent=2))
        write_record("sample")

    # ---- evaluate ----------------------------------------------------------------------------
    kept_pt = set_pt[keep]
    if "evaluate" in stages:
        from rashomon import metrics as rm
        from rashomon.evaluate import multiplicity_tables, per_model_frames, robustness_columns

        d = run_dir / "evaluate"
        d.mkdir(exist_ok=True)
        tables, mult = multiplicity_tables(
            kept_pt,
            map_pt,
            y_test,
            g_test,
            derived,
            levels,
            kind="binary",
            threshold=0.5,
            seed=seed,
        )
        table_args = dict(attributes_derived=derived, threshold=0.5, kind="binary")
        table_args["level_names"] = levels
        pm_val = per_model_frames(set_pv[keep], map_pv, idx, y=y_val, groups=g_val, **table_args)
        pm_test = per_model_frames(kept_pt, map_pt, idx, y=y_test, groups=g_test, **table_args)
        if robustness:
            rob = _robustness_table(kept_pt, map_pt, idx, y_test, rng)
            tables["robustness"] = rob
            pm_test = pm_test.merge(robustness_columns(rob), on=S.MODEL, how="left")
        tables["per_model_val"], tables["per_model_test"] = pm_val, pm_test
        from rashomon.metrics.acquisition import within_stratum_table

        tables["within_stratum"] = within_stratum_table(
            kept_pt, map_pt, y_test, g_test, derived, levels
        )
        # evaluate.extremes 'auto' on a head-only binary set this small: the exact bounds need a
        # network, so the fake run widens the sampled range instead (a bound contains the set)
        tables["extremes"] = _extremes_table(kept_pt, map_pt, rng)
        for key, table in tables.items():
            _write(run_dir, key, table)
        set_rows = pm_test[pm_test[S.MODEL] >= 0].drop(columns=S.MODEL)
        map_row = pm_test[pm_test[S.MODEL] == -1].drop(columns=S.MODEL).iloc[0]
        tidy = rm.spread_table(
            set_rows,
            map_row,
            source="laplace",
            epsilon=EPSILON,
            attributes_derived=derived,
            n_boot=BOOTSTRAP,
            seed=seed,
        )
        _write(run_dir, "metrics", tidy)
        summary = {
            "source": "laplace",
            "epsilon": EPSILON,
            "models_in_set": int(keep.sum()),
            "models": models,
            **{k: round(float(mult[k]), 4) for k in ("ambiguity", "discrepancy", "flip_share")},
            "extremes_ambiguity": round(float(tables["extremes"][S.FLIP_POSSIBLE].mean()), 4),
            "seconds": 12.5,
        }
        (d / S.SUMMARY).write_text(json.dumps(summary, indent=2))
        write_record("evaluate")

        # ---- decide --------------------------------------------------------------------------
        if "decide" in stages:
            d = run_dir / "decide"
            d.mkdir(exist_ok=True)
            splits = {
                "val": (set_pv, map_pv, y_val, g_val),
                "test": (set_pt, map_pt, y_test, g_test),
            }
            _write_decide(run_dir, cfg, splits, keep, n_train, rng)
            (d / S.SUMMARY).write_text(json.dumps({"seconds": 4.0}))
            write_record("decide")

    if "validate" in stages:
        _write_validate(run_dir / "validate", VALIDATE_FIGURES if validate is None else validate)
        _write_flags(
            run_dir / "validate", set_pt[keep], map_pt, VALIDATE_FIGURES["retrained_flags"]
        )
        write_record("validate")

    (run_dir / S.RECORDS).write_text(json.dumps(records, indent=2))
    return run_dir


def _curve(a_end: float, k_end: int, ks: np.ndarray, through: tuple[float, float] | None):
    """A power-law ambiguity curve a(k) = a_end·(k/k_end)^γ, through `through` = (k, a) when
    given (else γ = 1/2)."""
    gamma = 0.5
    if through is not None and all(np.isfinite(through)) and through[0] != k_end:
        gamma = np.log(through[1] / a_end) / np.log(through[0] / k_end)
    return a_end * (ks / k_end) ** gamma


def _write_validate(out: Path, v: dict) -> None:
    """validate/summary.json, compare.csv, ceiling.csv/.json and growth.csv from the figures `v`
    (per_patient.csv: `_write_flags`; no probs_test.npy, which only a network gives). The growth
    curves pass through the figures: the retrained one reaches the set's ambiguity at
    `retrained_models_for_ambiguity` and ends at `ambiguity_retrained` (k = T), the set's holds
    `ambiguity_matched` at k = T and ends at `ambiguity_set` (k = its models within ε)."""
    out.mkdir(exist_ok=True)
    (out / S.SUMMARY).write_text(json.dumps(v, indent=2))
    ceiling = v.get("ceiling") or {}
    pd.DataFrame([ceiling]).to_csv(out / "ceiling.csv", index=False)
    (out / "ceiling.json").write_text(json.dumps(ceiling, indent=2))
    sample = json.loads((out.parent / "sample" / S.SUMMARY).read_text())
    t, m, h = int(v["retrained_in_set"]), int(sample["models_in_set"]), int(v["matched_models"])

    def num(key: str) -> float:
        return np.nan if v.get(key) is None else float(v[key])

    # compare.csv's columns in its order (desiderata spreads and costs left out)
    columns = [
        *("set", "source", "ground_truth", "models", "models_in_set", "matched_models"),
        *("flag_recall_ratio", "flag_precision_ratio"),
        *(f"{f}_{p}" for f in FLAGS for p in ("matched", "matched_sd", "ceiling", "ceiling_sd")),
        *("flip_rate_spearman", "flip_rate_ap", "flip_rate_ap_base_rate", "ambiguity"),
        *("ambiguity_matched", "retrained_models_for_ambiguity"),
        *("flag_precision_full", "flag_recall_full", "matched_rounds", "matched_with_replacement"),
    ]
    ceiling_sd = {f"{f}_ceiling_sd": ceiling.get(f"{f}_sd") for f in FLAGS}
    cheap = {c: num(c) for c in columns} | ceiling_sd
    cheap |= {"set": "laplace", "source": "laplace", "ground_truth": False}
    cheap |= {"models": sample["models"], "models_in_set": m, "ambiguity": num("ambiguity_set")}
    cheap |= {"matched_models": h, "matched_rounds": int(v["matched_rounds"])}
    cheap["matched_with_replacement"] = bool(v["matched_with_replacement"])
    # the retrained row: its halves against each other are its matched figures (ratios 1), it
    # flags what it flags (flip-rate ρ, AP and full-size figures 1)
    truth = {c: 1.0 for c in columns} | ceiling_sd
    truth |= {"set": "retrained", "source": "retrain", "ground_truth": True}
    truth |= {"models": v["retrained"], "models_in_set": t, "matched_models": h}
    for f in FLAGS:
        truth[f"{f}_matched"] = truth[f"{f}_ceiling"] = num(f"{f}_ceiling")
        truth[f"{f}_matched_sd"] = ceiling.get(f"{f}_sd")
    truth["flip_rate_ap_base_rate"] = num("flip_rate_ap_base_rate")
    truth["ambiguity"] = truth["ambiguity_matched"] = num("ambiguity_retrained")
    truth["retrained_models_for_ambiguity"] = t
    truth |= {"matched_rounds": int(v["matched_rounds"]), "matched_with_replacement": False}
    compare = pd.DataFrame([cheap, truth], columns=columns)
    compare["run_dir"] = str(out.parent)
    compare.to_csv(out / "compare.csv", index=False)

    truth_k = np.arange(1, t + 1)
    reach = (num("retrained_models_for_ambiguity"), num("ambiguity_set"))
    truth_a = _curve(num("ambiguity_retrained"), t, truth_k, reach)
    set_k = np.unique(np.r_[np.round(np.geomspace(1, m, 40)).astype(int), t // 2, t])
    set_k = set_k[set_k <= m]
    set_a = _curve(num("ambiguity_set"), m, set_k, (t, num("ambiguity_matched")))
    curves = [
        pd.DataFrame({"set": name, "ground_truth": truth, "k": k, "ambiguity": a})
        for name, truth, k, a in (
            ("laplace", False, set_k, set_a),
            ("retrained", True, truth_k, truth_a),
        )
    ]
    growth = pd.concat(curves, ignore_index=True)
    growth["ambiguity_p05"] = 0.7 * growth["ambiguity"]
    growth["ambiguity_p95"] = np.minimum(1.3 * growth["ambiguity"], 1.0)
    growth.to_csv(out / "growth.csv", index=False)


def _write_flags(out: Path, kept_pt: np.ndarray, map_pt: np.ndarray, truth_flags: int) -> None:
    """validate/per_patient.csv: the set's per-patient columns from the simulation, the
    retrained networks' flagging the `truth_flags` patients the set flips most often."""
    from rashomon import metrics as rm

    preds = kept_pt.argmax(-1)
    ref = map_pt.argmax(-1)
    rate = (preds != ref[None]).mean(axis=0)
    truth = np.zeros(len(ref), bool)
    truth[np.argsort(-rate, kind="stable")[:truth_flags]] = True
    table = {S.SAMPLE: np.arange(len(ref))}
    table["disagreement:laplace"] = rm.disagreement(preds, num_classes=2)
    table[f"{S.FLIP_RATE}:laplace"] = rate
    table["arbitrary:laplace"] = rate > 0
    table["disagreement:retrained"] = np.where(truth, 0.3, 0.0)
    table[f"{S.FLIP_RATE}:retrained"] = np.where(truth, 0.08, 0.0)
    table["arbitrary:retrained"] = truth
    pd.DataFrame(table).to_csv(out / "per_patient.csv", index=False)


def _extremes_table(kept_pt, map_pt, rng) -> pd.DataFrame:
    p_map = map_pt[:, 1]
    widen = rng.uniform(0.0, 0.05, len(p_map))
    p_min = np.clip(np.minimum(kept_pt[..., 1].min(0), p_map) - widen, 0.0, 1.0)
    p_max = np.clip(np.maximum(kept_pt[..., 1].max(0), p_map) + widen, 0.0, 1.0)
    flip = np.where(p_map >= 0.5, p_min < 0.5, p_max >= 0.5)
    return pd.DataFrame(
        {
            S.SAMPLE: np.arange(len(p_map)),
            S.P_MAP: p_map,
            S.P_MIN: p_min,
            S.P_MAX: p_max,
            S.FLIP_POSSIBLE: flip,
        }
    )


def _robustness_table(kept_pt, map_pt, idx, y, rng) -> pd.DataFrame:
    """Accuracy under corruptions and attacks for the MAP model and the first models of the set:
    the margin shrinks and gets noisier with severity, attacks push it towards the boundary."""
    rows = []

    def add(model, family, corruption, severity, epsilon, mode, value):
        rows.append(
            {
                S.MODEL: model,
                S.IS_MAP: model == -1,
                S.FAMILY: family,
                S.CORRUPTION: corruption,
                S.SEVERITY: severity,
                S.EPSILON: epsilon,
                S.MODE: mode,
                S.METRIC: "accuracy",
                S.VALUE: value,
            }
        )

    for j in range(-1, min(ROBUSTNESS_MODELS, len(kept_pt))):
        p = map_pt if j == -1 else kept_pt[j]
        model = -1 if j == -1 else int(idx[j])
        margin = np.log(p[:, 1] / p[:, 0])
        add(model, "clean", "clean", 0, np.nan, "", float(((margin > 0) == y).mean()))
        for c_i, corr in enumerate(CORRUPTIONS):
            for sev in range(1, 6):
                shrink = 1.0 - 0.13 * sev * (1 + 0.3 * c_i)
                noisy = margin * shrink + rng.normal(0, 0.35 * sev, len(y)) - 0.2 * sev
                add(model, "corruption", corr, sev, np.nan, "", float(((noisy > 0) == y).mean()))
        for a_i, attack in enumerate(ATTACKS):
            for eps in ATTACK_EPSILONS:
                push = eps * 255 * (0.9 + 0.4 * a_i)
                adv = margin - np.sign(margin) * push * rng.uniform(0.8, 1.2)
                mode = "whitebox" if model == -1 else "transfer"
                add(model, "attack", attack, np.nan, eps, mode, float(((adv > 0) == y).mean()))
    return pd.DataFrame(rows, columns=S.TABLES["robustness"].columns)


def _write_decide(run_dir, cfg, splits, keep, n_train, rng) -> None:
    """The decide stage's own tables (`decide_all` on the simulated probabilities; `splits`:
    split -> set probabilities, MAP probabilities, labels, groups) and an LSI table whose values
    are simulated: heavy-tailed LSI, disagreement rising with it."""
    from rashomon.decide import decide_all
    from rashomon.decide.postprocess import threshold_frame
    from rashomon.lsi import lsi_vs_multiplicity

    set_pv, map_pv, y_val, g_val = splits["val"]
    set_pt, map_pt, y_test, g_test = splits["test"]
    out = decide_all(
        val_probs=set_pv,
        val_y=y_val,
        test_probs=set_pt,
        test_y=y_test,
        map_val_probs=map_pv,
        map_test_probs=map_pt,
        val_groups=g_val,
        test_groups=g_test,
        rashomon_mask=keep,
        ensemble_sizes=cfg.decide.ensemble_sizes,
        taus=cfg.decide.agreement,
        alphas=[cfg.decide.alpha],
        pareto_epsilon=cfg.decide.pareto_epsilon,
        n_boot=BOOTSTRAP,
        seed=cfg.seed,
    )
    lsi = np.exp(rng.normal(-1.0, 1.0, n_train))
    dis = np.clip(
        0.15 * np.log1p(lsi) * rng.uniform(0.2, 1.8, n_train) + rng.normal(0, 0.02, n_train), 0, 1
    )
    top = np.zeros(n_train, bool)
    top[np.argsort(-lsi, kind="stable")[:16]] = True
    out["lsi"] = pd.DataFrame(
        {
            S.SAMPLE: np.arange(n_train),
            S.LSI: lsi,
            S.TOP_LSI: top,
            S.DISAGREEMENT: dis,
            S.FLIP_RATE: (1 - np.sqrt(1 - dis)) / 2,  # the minority share giving 4·p·(1−p)
        }
    )
    out["lsi_summary"] = lsi_vs_multiplicity(lsi, dis)
    ids = np.flatnonzero(keep)[:5]
    attribute = sorted(g_val)[0]
    out["postprocess"] = threshold_frame(
        map_pv, map_pt, set_pv[ids], set_pt[ids], ids, y_val, y_test,
        g_val[attribute], g_test[attribute], attribute, seed=cfg.seed,
    )  # fmt: skip
    for key, table in out.items():
        _write(run_dir, key, table)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fake")
    root = os.environ.get("RASHOMON_DATA")
    task = None
    if root:
        from rashomon.api import load_task

        task = load_task("pneumoniamnist", root=root)
    write_fake_run(out, task, data_root=root)
    print(out)
